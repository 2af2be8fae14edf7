"""Which filter scales the first stage needs: the engine's trees alone with other σ sets (not run by CI).

On the painted voxels of one volume at K planes per axis, the engine's features with each scale set
feed the engine's boosted trees (no U-Net), scored like :mod:`.run` (mean foreground Dice on the
unpainted voxels). This is the screen that moved the default from σ 1, 2.5, 5 to σ 1 … 40::

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.scales colin ct --k 3

Each row is appended to ``benchmarks/results/accuracy/scales.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from napari_sparseseg.core import trainer
from napari_sparseseg.core.config import preset, replace
from napari_sparseseg.core.sampling import annotation_to_target
from napari_sparseseg.core.trees import TreeClassifier

from . import data, protocol
from .run import RESULTS, machine

LOG = RESULTS / "scales.jsonl"
SETS = {
    "σ 1, 2.5, 5": (1.0, 2.5, 5.0),
    "σ to 10": (1.0, 2.5, 5.0, 10.0),
    "σ to 20": (1.0, 2.5, 5.0, 10.0, 20.0),
    "σ to 40 (default)": (1.0, 2.5, 5.0, 10.0, 20.0, 40.0),
}


def run(name: str, scales: str, k: int = 3) -> dict:
    """The engine's trees on the features with scale set ``scales``, dataset ``name``, K planes per axis."""
    dataset = data.load(name)
    annotation = protocol.paint(dataset.truth, k)
    p = preset("fast")
    model = replace(p.model, filters=SETS[scales])
    start = time.perf_counter()
    segmenter, images, annotations = trainer.prepare([dataset.image], [annotation], model, p.train,
                                                     dataset.spacing)
    targets = [annotation_to_target(a) for a in annotations]
    features = trainer.training_inputs(segmenter, images, targets, np.random.default_rng(0))[0]
    features = features.reshape(features.shape[0], -1).T.astype(np.float32)
    painted = np.flatnonzero(annotation.ravel() > 0)
    trees = TreeClassifier(segmenter.n_classes, model.trees)
    list(trees.fit(features[painted], annotation.ravel()[painted].astype(np.int64) - 1))
    labels = trees.rows(features).argmax(1).reshape(dataset.truth.shape).astype(np.uint8)
    score = protocol.score(labels, dataset.truth, annotation == 0, dataset.class_names)
    return {"dataset": name, "scales": scales, "k": k, "features": features.shape[1],
            "seconds": round(time.perf_counter() - start, 1), **score, "date": machine()["date"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", choices=data.NAMES)
    parser.add_argument("--scales", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--k", type=int, default=3, help="painted planes per axis")
    args = parser.parse_args(argv)
    return screen(run, LOG, args.datasets, args.scales, args.k)


def screen(run, log, datasets, scale_sets, k: int) -> int:
    """``run(dataset, scales, k)`` for every pair; each row printed and appended to ``log``."""
    for name in datasets:
        for scales in scale_sets:
            row = run(name, scales, k)
            print(json.dumps(row), flush=True)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
