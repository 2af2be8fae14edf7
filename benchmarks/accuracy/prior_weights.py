"""How much to trust the final trees when predicting: one training, several prediction weights (not in CI).

The U-Net learns to correct the out-of-fold answers of trees that never saw a voxel's painted
plane, with their log-probabilities weighted by ``prior_weight`` (0.3). It predicts on the final
trees' answers, which saw every plane. This trains the default once per dataset and budget,
then predicts with each ``predict_prior_weight`` (the same trained weights, so the rows are
paired and seed noise cancels) and with the trees alone::

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.prior_weights mni nuclei --budgets 60 120 --docs

Each (dataset, budget) appends one JSON line to ``benchmarks/results/accuracy/prior_weights.jsonl``;
``--docs`` renders the latest row of each into docs/benchmarks.md.
"""

from __future__ import annotations

from napari_sparseseg.core import inference, trainer
from napari_sparseseg.core.config import replace

from . import inprocess, protocol
from .run import RESULTS, machine

LOG = RESULTS / "prior_weights.jsonl"
WEIGHTS = (0.3, 0.6, 1.0, 2.0)
TREES_ONLY = 1e6  # the trees' log-probabilities swamp the U-Net's correction: the trees' answer
HEADING = "## Prediction weight of the trees' prior (paired, in-process, K = 3)"
INTRO = ("Reproduce with `PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.prior_weights DATASET "
         "--budgets SECONDS --docs` (2-core CPU, quiet, seed 0). The default is trained once (prior weight "
         "0.3 in training) and predicts with each weight; `trees` is the trees' answer alone. The default "
         "preset's 0.6 was chosen on the 120 s rows of abdomen-mr, mni, nuclei, ct, abdomen-mr-organs and "
         "spm-t1; colin, abdomen, synthetic and abdomen-organs were run after the choice.")


def run(name: str, budget: float, k: int = 3, seed: int = 0) -> dict:
    """Train the default on ``name`` for ``budget`` s; mean foreground Dice per prediction weight."""
    dataset, annotation, chosen, config, (segmenter, images, annotations) = inprocess.default_round(
        name, budget, k, seed)
    last = list(trainer.train(segmenter, images, annotations, config))[-1]
    row = {"dataset": name, "budget_s": budget, "k": k, "seed": seed, "iterations": last.iteration}
    trained = segmenter.net.config
    for weight in (*WEIGHTS, TREES_ONLY):
        segmenter.net.config = replace(trained, predict_prior_weight=weight)
        labels = inference.predict(segmenter, dataset.image, chosen.infer).labels
        dice = protocol.score(labels, dataset.truth, annotation == 0, dataset.class_names)["mean_fg_dice"]
        row["trees" if weight == TREES_ONLY else f"{weight:g}"] = round(dice, 4)
    segmenter.net.config = trained
    return {**row, "date": machine()["date"]}


def main(argv=None) -> int:
    return inprocess.main(argv, __doc__.splitlines()[0], run, LOG, HEADING, INTRO, table, [120.0])


def table(rows: list[dict]) -> list[str]:
    """The latest row of each (dataset, budget), by budget: Dice per prediction weight."""
    latest = {(r["dataset"], r["budget_s"]): r for r in rows}
    columns = [f"{w:g}" for w in WEIGHTS]
    head = "| dataset | budget s | U-Net iterations | trees | " + " | ".join(columns)
    lines = [head + " | 0.6 − 0.3 | date |", "|---|---|---|---|" + "---|" * len(columns) + "---|---|"]
    for (name, budget), r in sorted(latest.items(), key=lambda item: -item[0][1]):
        dice = " | ".join(f"{r[c]:.4f}" for c in columns)
        lines.append(f"| {name} | {budget:g} | {r['iterations']} | {r['trees']:.4f} | {dice} | "
                     f"{r['0.6'] - r['0.3']:+.4f} | {r['date']} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
