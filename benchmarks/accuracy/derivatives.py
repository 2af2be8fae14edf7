"""The filter bank's second derivatives: the first stage alone with each stencil (not run by CI).

On each volume at K planes per axis, the default's boosted trees are fitted to the painted voxels'
filter features with the Hessian's diagonal taken as the three-point second difference
(``compact``, the default since 2026-12-06) or as the central difference applied twice (``wide``,
before), once per tree seed, and scored like :mod:`.run` (mean foreground Dice on the unpainted
voxels)::

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.derivatives nuclei mni --k 3 --seeds 0 1 2 --docs

Each (dataset, K, seed) appends one JSON line to ``benchmarks/results/accuracy/derivatives.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from napari_sparseseg.core import trainer
from napari_sparseseg.core.config import DERIVATIVES, preset, replace
from napari_sparseseg.core.sampling import annotation_to_target
from napari_sparseseg.core.trees import TreeClassifier

from .. import _docs
from . import data, protocol
from .run import RESULTS, engine

LOG = RESULTS / "derivatives.jsonl"
HEADING = "## The filter bank's second derivatives: the trees alone (in-process)"
INTRO = ("Reproduce with `PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.derivatives DATASET --k K "
         "--seeds 0 1 2 --docs` (2-core CPU). The default's first stage alone (boosted trees on the filter "
         "features of the painted voxels, no U-Net), mean foreground Dice on the unpainted voxels, with the "
         "Hessian's diagonal as the three-point second difference (*compact*, the default since 2026-12-06) "
         "or the central difference applied twice (*wide*, before); mean over the tree seeds, and the "
         "smallest and largest difference of one seed. *both* (rows since 2026-12-07) is the compact bank "
         "with the wide stencil's Laplacian and Hessian eigenvalues added at σ 1 (`derivatives='both'`).")


def first_stage(dataset, annotation, derivatives: str, seed: int) -> float:
    """Mean foreground Dice of the default's trees alone, with the bank's ``derivatives`` (no tensors)."""
    model = replace(preset("fast").model, derivatives=derivatives, tensors=())
    segmenter, _, features, painted, classes = bank_features(dataset, annotation, model)
    return trees_dice(features.T, painted, classes, segmenter, dataset, annotation, seed)


def bank_features(dataset, annotation, model):
    """A new segmenter of ``model`` for ``dataset``, its images, the bank's stored features (C, N) of the
    first, the painted voxels (flat indices) and their classes (0 = background)."""
    chosen = preset("fast")
    segmenter, images, annotations = trainer.prepare([dataset.image], [annotation], model, chosen.train,
                                                     dataset.spacing)
    targets = [annotation_to_target(a) for a in annotations]
    features = trainer.training_inputs(segmenter, images, targets, np.random.default_rng(0))[0]
    painted = np.flatnonzero(annotation.ravel() > 0)
    classes = annotation.ravel()[painted].astype(np.int64) - 1
    return segmenter, images, features.reshape(features.shape[0], -1), painted, classes


def trees_dice(features, painted, classes, segmenter, dataset, annotation, seed: int) -> float:
    """Mean foreground Dice on the unpainted voxels of the segmenter's trees fitted to the painted rows
    of ``features`` (N, C) and scored on every row."""
    trees = TreeClassifier(segmenter.n_classes, segmenter.config.trees)
    list(trees.fit(np.asarray(features[painted], np.float32), classes, seed=seed))
    labels = trees.rows(features).argmax(1).reshape(dataset.truth.shape).astype(np.uint8)
    return protocol.score(labels, dataset.truth, annotation == 0, dataset.class_names)["mean_fg_dice"]


def record(names, k: int, seeds, log, measure) -> None:
    """For each volume and seed, a row with ``measure(dataset, annotation, seed)`` (a dict), to ``log``."""
    for name in names:
        dataset = data.load(name)
        annotation = protocol.paint(dataset.truth, k)
        for seed in seeds:
            row = {"dataset": name, "k": k, "seed": seed, "engine": engine(),
                   "date": time.strftime("%Y-%m-%d %H:%M")}
            row.update(measure(dataset, annotation, seed))
            print(json.dumps(row), flush=True)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")


def render(log, heading: str, intro: str, table) -> None:
    """Write ``table`` of every row of ``log`` under ``heading`` in docs/benchmarks.md."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    _docs.replace_section(heading, "\n".join([heading, "", intro, "", *table(rows)]))


def table(rows: list[dict]) -> list[str]:
    """Per (K, dataset): both stencils' mean Dice over the latest row of each seed, and the spread."""
    latest = {(r["k"], r["dataset"], r["seed"]): r for r in rows}
    groups: dict[tuple, list[dict]] = {}
    for (k, name, _), r in sorted(latest.items()):
        groups.setdefault((k, name), []).append(r)
    lines = ["| dataset | K | seeds | wide | compact | compact − wide | per seed (min … max) | "
             "both − compact | engine |", "|---" * 9 + "|"]
    for (k, name), group in groups.items():
        wide, compact = (np.mean([r[d] for r in group]) for d in ("wide", "compact"))
        gains = [r["compact"] - r["wide"] for r in group]
        both = [r["both"] - r["compact"] for r in group if "both" in r]
        both = f"{np.mean(both):+.4f} ({len(both)} seeds)" if both else "–"
        lines.append(f"| {name} | {k} | {len(group)} | {wide:.4f} | {compact:.4f} | {compact - wide:+.4f} | "
                     f"{min(gains):+.4f} … {max(gains):+.4f} | {both} | `{group[-1]['engine']}` |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help=f"any of {', '.join(data.NAMES)}; none: only render")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--docs", action="store_true")
    args = parser.parse_args(argv)
    record(args.datasets, args.k, args.seeds, LOG,
           lambda dataset, annotation, seed: {d: round(first_stage(dataset, annotation, d, seed), 4)
                                              for d in DERIVATIVES})
    if args.docs:
        render(LOG, HEADING, INTRO, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
