"""Does the judge (:mod:`napari_sparseseg.core.judge`) keep the U-Net where it helps? (not in CI)

Trains the default once per dataset and budget with the U-Net's correction always kept, counting
on every batch how the U-Net and the trees' out-of-fold answer label its painted voxels (what
:class:`~napari_sparseseg.core.judge.Judge` counts over the last quarter). Then scores, on the
unpainted voxels against the truth, the model with its correction and the trees alone (the last
layer zeroed): the judge is right where it picks the better of the two::

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.judged nuclei mni --budgets 60 120 [--k 2] --docs

Each (dataset, budget) of a command (its K and seed) appends one JSON line to
``benchmarks/results/accuracy/judged.jsonl``.
"""

from __future__ import annotations

import argparse
import functools

import numpy as np

from napari_sparseseg.core import inference, judge, trainer
from napari_sparseseg.core.config import replace

from . import inprocess, protocol
from .run import RESULTS, engine, machine

LOG = RESULTS / "judged.jsonl"
HEADING = "## Keeping the trees' answer until the U-Net improves on it (in-process)"
INTRO = ("Reproduce with `PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.judged DATASET --budgets "
         "SECONDS --k K --seed S --docs` (2-core CPU, quiet). Mean foreground Dice on the unpainted voxels "
         "of one trained default with its U-Net's correction and without it (the trees alone); *judged* = "
         "the U-Net's Dice minus the trees' out-of-fold Dice on the painted voxels of the batches of the "
         "last quarter of its iterations, before each step learnt from them; *judged 5–95 %* = its 5th and "
         "95th percentiles over 1000 bootstrap resamples of those batches (recorded since the K = 1, 2, 5 "
         "rows of 2026-12-06 17:45). The judge keeps the correction where *judged* > 0. Budgets whose "
         "U-Net was skipped (too short for the folds or its warm-up) have no row. The rows of engine "
         "`888b84960a` (2026-12-06 13:16–13:44) came from this script's first version, which counted the "
         "same batches by wrapping the loss before the judge was built; the nuclei's 120 s row shared the "
         "CPU with a test run for about two minutes. The K = 1, 2, 5 rows (17:45–18:56) ran with engine "
         "`f5d4a058af`, the K = 3 rows from 18:59 with `e8886fecb8`: the same computation (only where the "
         "end-of-training advice is composed moved).")


def run(name: str, budget: float, k: int = 3, seed: int = 0, holdout: float = 0.0,
        from_trees: bool = False) -> dict | None:
    """Train the default on ``name`` for ``budget`` s, judging every batch; None if the U-Net was skipped.
    With ``holdout`` (``TrainConfig.judge_holdout``) the batches are also counted as the judge
    without it would count them (the voxels the U-Net learns from); ``from_trees`` holds them out of
    the trees too (``TrainConfig.judge_holdout_trees``)."""
    dataset, annotation, chosen, config, (segmenter, images, annotations) = inprocess.default_round(
        name, budget, k, seed)
    config = replace(config, judge_holdout=holdout, judge_holdout_trees=from_trees)
    batches, learnt, add, keep, last_share = [], [], judge.Judge.add, judge.Judge.improves, trainer.LAST

    def counted(self, *batch):
        before = self.counts.copy()
        add(self, *batch)
        batches.append(self.counts - before)
        if self.held_out:
            other = judge.Judge(self.counts.shape[1])
            add(other, *batch)
            learnt.append(other.counts)

    judge.Judge.add, judge.Judge.improves, trainer.LAST = counted, lambda self: True, 1.0
    try:
        last = list(trainer.train(segmenter, images, annotations, config))[-1]
    finally:
        judge.Judge.add, judge.Judge.improves, trainer.LAST = add, keep, last_share
    if not segmenter.net.corrects:
        return None
    score = {}
    for answer in ("U-Net", "trees"):
        if answer == "trees":
            segmenter.net.drop_correction()
        labels = inference.predict(segmenter, dataset.image, chosen.infer).labels
        scored = protocol.score(labels, dataset.truth, annotation == 0, dataset.class_names)
        score[answer] = scored["mean_fg_dice"]
    judged = np.array(batches[len(batches) - max(1, len(batches) // 4):])
    low, high = np.percentile([margin(judged[draw]) for draw in resamples(len(judged))], [5, 95])
    extra = {"holdout": holdout, "judged_learnt": round(margin(np.array(learnt[-len(judged):])), 4),
             **({"holdout_trees": True} if from_trees else {})}
    return {"dataset": name, "budget_s": budget, "k": k, "seed": seed, "iterations": last.iteration,
            "passes": round(last.passes, 1), "unet": score["U-Net"], "trees": score["trees"],
            "judged": round(margin(judged), 4), "judged_5": round(low, 4), "judged_95": round(high, 4),
            "batches": len(judged), **(extra if holdout else {}), "date": machine()["date"],
            "engine": engine()}


def margin(batches: np.ndarray) -> float:
    """The judge's margin over these batches' confusion counts."""
    counted = judge.Judge(batches.shape[-1])
    counted.counts = batches.sum(0)
    return counted.margin()


def resamples(n: int, draws: int = 1000) -> np.ndarray:
    """Bootstrap draws of ``n`` batch indices (the judged margin's spread over its batches)."""
    return np.random.default_rng(0).integers(0, n, (draws, n))


def main(argv=None) -> int:
    """``--holdout H`` (before the other arguments' parsing) runs the judge on held-out voxels."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--holdout", type=float, default=0.0)
    parser.add_argument("--holdout-trees", action="store_true")
    known, rest = parser.parse_known_args(argv)
    chosen = functools.partial(run, holdout=known.holdout, from_trees=known.holdout_trees)
    return inprocess.main(rest, __doc__.splitlines()[0], chosen, LOG, HEADING, INTRO, table, [60.0, 120.0])


def table(rows: list[dict]) -> list[str]:
    """The latest row of each (K, budget, dataset, seed): both answers, the judged difference, the choice;
    then the rows with a holdout (``--holdout``), judged both ways."""
    latest = {(r["k"], r["budget_s"], r["dataset"], r["seed"]): r for r in rows if "holdout" not in r}
    lines = ["| dataset | budget s | K | seed | U-Net iterations | passes | with the U-Net | trees alone | "
             "difference | judged | judged 5–95 % | kept | better or level | date |", "|---" * 14 + "|"]
    for (k, budget, name, seed), r in sorted(latest.items()):
        kept = "U-Net" if r["judged"] > 0 else "trees"
        spread = f"{r['judged_5']:+.4f} … {r['judged_95']:+.4f}" if "judged_5" in r else "–"
        lines.append(f"| {name} | {budget:g} | {k} | {seed} | {r['iterations']} | {r['passes']:g} | "
                     f"{r['unet']:.4f} | {r['trees']:.4f} | {r['unet'] - r['trees']:+.4f} | "
                     f"{r['judged']:+.4f} | {spread} | {kept} | {right(r, r['judged'] > 0)} | {r['date']} |")
    held = {(r["holdout"], r.get("holdout_trees", False), r["k"], r["budget_s"], r["dataset"], r["seed"]): r
            for r in rows if "holdout" in r}
    if not held:
        return lines
    lines += ["", "With a share of the painted voxels held out of the U-Net's loss (`--holdout`, "
              "`TrainConfig.judge_holdout`): *learnt* = judged on the other painted voxels (today's judge), "
              "*held out* = judged on the held-out ones; *5 % > 0* keeps the U-Net only where the 5th "
              "percentile of the held-out margin is above 0; *trees too* = held out of the trees as well "
              "(`--holdout-trees`: the judge's rival is then the final trees, not the out-of-fold ones).", "",
              "| dataset | budget s | K | seed | held out | trees too | U-Net iterations | with the U-Net | "
              "trees alone | difference | judged, learnt | judged, held out (5–95 %) | "
              "right: learnt / held out / 5 % > 0 | date |", "|---" * 14 + "|"]
    for (share, too, k, budget, name, seed), r in sorted(held.items()):
        verdicts = " / ".join(right(r, m > 0) for m in (r["judged_learnt"], r["judged"], r["judged_5"]))
        lines.append(f"| {name} | {budget:g} | {k} | {seed} | {share:g} | {'yes' if too else 'no'} | "
                     f"{r['iterations']} | "
                     f"{r['unet']:.4f} | {r['trees']:.4f} | {r['unet'] - r['trees']:+.4f} | "
                     f"{r['judged_learnt']:+.4f} | {r['judged']:+.4f} ({r['judged_5']:+.4f} … "
                     f"{r['judged_95']:+.4f}) | {verdicts} | {r['date']} |")
    return lines


def right(row: dict, kept_unet: bool) -> str:
    """Whether keeping (or dropping) the U-Net's correction gave the better of the two answers."""
    difference = row["unet"] - row["trees"]
    return "yes" if (difference >= 0) == kept_unet or abs(difference) < 1e-4 else "**no**"


if __name__ == "__main__":
    raise SystemExit(main())
