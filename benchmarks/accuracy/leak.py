"""Would a judge without the context leak pick the better answer? (a diagnostic, not in CI)

The judge (:mod:`napari_sparseseg.core.judge`) compares the U-Net and the trees' out-of-fold answer
on painted voxels, but around a painted plane the U-Net's context is the final trees' answer, which
learnt that plane. Here the default trains once with its correction kept (as :mod:`.judged`), the
fold boosters are kept, and each fold's painted voxels are judged leak-free: the whole volume is
predicted with that fold's trees in place of the final ones (the prediction's prior weight, sliding
windows), so neither answer has seen the fold's planes. Beside it, the two answers' Dice on the
unpainted voxels (with the final trees)::

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.leak colin spm-t1 ct --budgets 120

Each (dataset, budget) appends one JSON line to ``benchmarks/results/accuracy/leak.jsonl``.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_sparseseg.core import inference, judge, trainer, trees
from napari_sparseseg.core.sampling import annotation_to_target

from . import inprocess, protocol
from .judged import right
from .run import RESULTS, engine, machine

LOG = RESULTS / "leak.jsonl"
HEADING = "## A judge without the context leak (in-process, a diagnostic)"
INTRO = ('Reproduce with `PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.leak DATASET --budgets '
         "SECONDS --docs` (2-core CPU, quiet). One trained default with its U-Net's correction kept; *with"
         ' the U-Net* and *trees alone* = mean foreground Dice on the unpainted voxels (final trees); '
         "*leak-free* = the U-Net's Dice minus the trees' on each fold's painted voxels, both answering "
         "with the trees that never saw that fold's planes (the whole volume predicted once per fold); "
         "*today's judge* = the margin on the last quarter's batches as the judge counts it "
         "(docs/accuracy.md, 'Does the answer keep improving after the first?').")


def run(name: str, budget: float, k: int = 3, seed: int = 0) -> dict | None:
    """Train the default on ``name``, keep the fold boosters, judge each fold leak-free."""
    dataset, annotation, chosen, config, (segmenter, images, annotations) = inprocess.default_round(
        name, budget, k, seed)
    boosters, counted, boost, improves = [], [], trees.boost, judge.Judge.improves

    def keeping(*args, **kwargs):
        booster = yield from boost(*args, **kwargs)
        boosters.append(booster)
        return booster

    def recorded(self):
        counted.append(self.margin() if self.counts.any() else float("nan"))
        return True

    trees.boost, judge.Judge.improves = keeping, recorded
    try:
        last = list(trainer.train(segmenter, images, annotations, config))[-1]
    finally:
        trees.boost, judge.Judge.improves = boost, improves
    net = segmenter.net
    if not net.corrects or len(boosters) < 3:
        return None
    final = net.pointwise
    margin = _leak_free(segmenter, dataset.image, annotation, boosters[1:], chosen.infer)
    score = {}
    net.pointwise = final
    for answer in ("U-Net", "trees"):
        if answer == "trees":
            net.drop_correction()
        labels = inference.predict(segmenter, dataset.image, chosen.infer).labels
        scored = protocol.score(labels, dataset.truth, annotation == 0, dataset.class_names)
        score[answer] = scored["mean_fg_dice"]
    return {"dataset": name, "budget_s": budget, "k": k, "seed": seed, "iterations": last.iteration,
            "unet": score["U-Net"], "trees": score["trees"], "leak_free": round(margin, 4),
            "judged": round(counted[-1], 4), "folds": len(boosters) - 1, "date": machine()["date"],
            "engine": engine()}


def _leak_free(segmenter, image, annotation, folds, infer) -> float:
    """The U-Net's mean foreground Dice minus the trees' on the painted voxels, each fold's voxels
    answered with the trees of that fold (``folds``: boosters in fold order)."""
    target = annotation_to_target(annotation)
    painted = np.flatnonzero(target.ravel() >= 0)
    fold = trees.plane_folds(target, painted)
    truth = target.ravel()[painted].astype(np.int64)
    n, net = segmenter.n_classes, segmenter.net
    counts = judge.Judge(n)
    for f, booster in enumerate(folds):
        chosen = painted[fold == f]
        net.pointwise = _trees(booster, net.pointwise)
        unet = inference.predict(segmenter, image, infer).labels.ravel()[chosen]
        inputs = inference.model_inputs(segmenter, segmenter.normalization.apply(image))  # logits kept
        alone = inputs[net.stem.out_channels :].reshape(n, -1)[:, chosen].argmax(0)
        for row, guess in zip(counts.counts, (unet, alone)):
            row += np.bincount(guess.astype(np.int64) * n + truth[fold == f], minlength=n * n).reshape(n, n)
    return counts.margin()


def _trees(booster, like: trees.TreeClassifier) -> trees.TreeClassifier:
    """A tree classifier answering with ``booster``, otherwise as ``like``."""
    made = trees.TreeClassifier(like.n_classes, like.rounds, like.margin)
    made.model = torch.frombuffer(bytearray(booster.model_to_string().encode()), dtype=torch.uint8)
    return made


def main(argv=None) -> int:
    return inprocess.main(argv, __doc__.splitlines()[0], run, LOG, HEADING, INTRO, table, [120.0])


def table(rows: list[dict]) -> list[str]:
    """The latest row of each (K, budget, dataset, seed): both answers, the two margins, their verdicts."""
    latest = {(r["k"], r["budget_s"], r["dataset"], r["seed"]): r for r in rows}
    lines = ["| dataset | budget s | K | seed | U-Net iterations | with the U-Net | trees alone | "
             "difference | today's judge | leak-free | right: today / leak-free | date |", "|---" * 12 + "|"]
    for (k, budget, name, seed), r in sorted(latest.items()):
        difference = r["unet"] - r["trees"]
        verdicts = " / ".join(right(r, m > 0) for m in (r["judged"], r["leak_free"]))
        lines.append(f"| {name} | {budget:g} | {k} | {seed} | {r['iterations']} | {r['unet']:.4f} | "
                     f"{r['trees']:.4f} | {difference:+.4f} | {r['judged']:+.4f} | {r['leak_free']:+.4f} | "
                     f"{verdicts} | {r['date']} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
