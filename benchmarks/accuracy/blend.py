"""Would a share of the U-Net's correction beat all or none of it? (not in CI)

The judge (:mod:`napari_sparseseg.core.judge`) keeps the U-Net's correction or drops it. This trains
the default once per dataset with the correction always kept, then scales the U-Net's last layer by
``alpha`` (0: the trees alone, 1: the shipped answer) and scores each on the unpainted voxels
against the truth; it also counts, on the painted voxels of the last quarter's batches, what a
judge choosing ``alpha`` would see::

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.blend mni nuclei synthetic --budgets 120 --docs

Each (dataset, budget) appends one JSON line to ``benchmarks/results/accuracy/blend.jsonl``.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_sparseseg.core import inference, judge, trainer
from napari_sparseseg.core.metrics import from_confusion

from . import inprocess, protocol
from .run import RESULTS, engine, machine

LOG = RESULTS / "blend.jsonl"
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
HEADING = "## A share of the U-Net's correction (in-process)"
INTRO = ("Reproduce with `PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.blend DATASET --budgets 120 "
         "--docs` (2-core CPU, quiet). One default trained with its correction always kept; at prediction "
         "the U-Net's last layer is scaled by alpha (0 = the trees alone, 1 = the shipped answer): mean "
         "foreground Dice on the unpainted voxels, and *judged* on the painted voxels of the last quarter "
         "of its batches (what a judge choosing alpha would count).")


def run(name: str, budget: float, k: int = 3, seed: int = 0) -> dict | None:
    """Train the default on ``name`` for ``budget`` s and score its correction scaled by each alpha;
    None if the budget left the U-Net no iteration."""
    dataset, annotation, chosen, config, (segmenter, images, annotations) = inprocess.default_round(
        name, budget, k, seed)
    weights = segmenter.net.config.prior_weight, segmenter.net.config.predict_prior_weight
    counts, add, keep = [], judge.Judge.add, judge.Judge.improves

    def counted(self, logits, start, y):
        add(self, logits, start, y)
        counts.append(_blends(logits, start, y, segmenter.n_classes, *weights))

    judge.Judge.add, judge.Judge.improves, trainer.LAST = counted, lambda self: True, 1.0  # every batch
    try:
        last = list(trainer.train(segmenter, images, annotations, config))[-1]
    finally:
        judge.Judge.add, judge.Judge.improves, trainer.LAST = add, keep, judge.LAST
    if not counts:  # the budget skipped the U-Net
        return None
    tail = np.sum(counts[len(counts) - max(1, len(counts) // 4):], axis=0)  # the judge's last quarter
    head = segmenter.net.head
    trained = [p.detach().clone() for p in (head.weight, head.bias)]
    dice = []
    for alpha in ALPHAS:
        with torch.no_grad():
            for p, value in zip((head.weight, head.bias), trained):
                p.copy_(value * alpha)
        labels = inference.predict(segmenter, dataset.image, chosen.infer).labels
        scored = protocol.score(labels, dataset.truth, annotation == 0, dataset.class_names)
        dice.append(scored["mean_fg_dice"])
    return {"dataset": name, "budget_s": budget, "k": k, "seed": seed, "iterations": last.iteration,
            "alphas": ALPHAS, "dice": dice,
            "judged": [round(from_confusion(c)["mean_foreground"]["dice"], 4) for c in tail],
            "date": machine()["date"], "cpu": machine().get("cpu", ""), "engine": engine()}


def _blends(logits, start, y, n: int, train_weight: float, predict_weight: float | None) -> np.ndarray:
    """Confusion counts (alpha, predicted, true) on a batch's painted voxels of the trees' prior
    weighted as when predicting plus alpha times the U-Net's correction."""
    painted = y >= 0
    truth = y[painted].long()
    prior = torch.log_softmax(start.float(), 1)
    correction = logits.detach().float() - train_weight * prior
    weight = train_weight if predict_weight is None else predict_weight
    counts = np.zeros((len(ALPHAS), n, n), np.int64)
    for i, alpha in enumerate(ALPHAS):
        guess = (weight * prior + alpha * correction).argmax(1)[painted].long()
        counts[i] = torch.bincount(guess * n + truth, minlength=n * n).reshape(n, n).numpy()
    return counts


def table(rows: list[dict]) -> list[str]:
    lines = ["| dataset | budget s | seed | U-Net iterations | " + " | ".join(f"α {a:g}" for a in ALPHAS)
             + " | judged, α 0 … 1 | CPU | engine, date |", "|" + "---|" * (len(ALPHAS) + 7)]
    for r in rows:
        best = max(r["dice"])
        cells = [f"**{d:.4f}**" if d == best else f"{d:.4f}" for d in r["dice"]]
        lines.append(f"| {r['dataset']} | {r['budget_s']:g} | {r['seed']} | {r['iterations']} | "
                     + " | ".join(cells) + f" | {' / '.join(f'{j:.4f}' for j in r['judged'])} | "
                     f"{r.get('cpu', '–')} | `{r['engine']}`, {r['date']} |")
    return lines


def main(argv=None) -> int:
    return inprocess.main(argv, __doc__.splitlines()[0], run, LOG, HEADING, INTRO, table, [120.0])


if __name__ == "__main__":
    raise SystemExit(main())
