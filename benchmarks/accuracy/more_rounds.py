"""The trees alone with more boosting rounds: Dice after 100 (the default), 200 and 300 rounds.

One booster of 300 rounds is fitted on the painted voxels of K = 3 planes per axis as training fits
the default's trees (seed 0), then scores every voxel with its first 100, 200 and all 300 rounds;
mean foreground Dice on the unpainted voxels. The Dice does not depend on the machine's load
(fixed rounds, deterministic LightGBM); the seconds do. Each dataset appends one JSON line to
``results/accuracy/more_rounds.jsonl``::

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.more_rounds mni nuclei
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from napari_sparseseg.core import trainer, trees
from napari_sparseseg.core.config import preset
from napari_sparseseg.core.pointwise import painted_index, painted_samples
from napari_sparseseg.core.sampling import annotation_to_target

from . import data, protocol
from .run import RESULTS, engine, machine

LOG = RESULTS / "more_rounds.jsonl"
ROUNDS = (100, 200, 300)


def run(name: str, k: int = 3, seed: int = 0) -> dict:
    dataset = data.load(name)
    annotation = protocol.paint(dataset.truth, k)
    chosen = preset("fast")
    segmenter, images, annotations = trainer.prepare([dataset.image], [annotation], chosen.model,
                                                     chosen.train, dataset.spacing)
    rng = np.random.default_rng(seed)
    targets = [annotation_to_target(a) for a in annotations]
    volume = trainer.training_inputs(segmenter, images, targets, rng)[0]
    index = painted_index(targets, rng)
    features, labels = (t.numpy() for t in painted_samples([volume], targets, rng, index=index))
    started = time.perf_counter()
    fitted = trees.TreeClassifier(segmenter.n_classes, max(ROUNDS))
    list(fitted.fit(features, labels, seed))
    row = {"dataset": name, "k": k, "seed": seed, "fit_s": round(time.perf_counter() - started, 1)}
    flat = volume.reshape(volume.shape[0], -1)
    for n in ROUNDS:
        started = time.perf_counter()
        best = np.concatenate([
            fitted.booster().predict(np.ascontiguousarray(flat[:, lo : lo + trees.ROWS].T, np.float32),
                                     num_iteration=n, raw_score=True).argmax(1)
            for lo in range(0, flat.shape[1], trees.ROWS)])
        scored = protocol.score(best.reshape(volume.shape[1:]).astype(np.uint8), dataset.truth,
                                annotation == 0, dataset.class_names)
        row[f"dice_{n}"] = scored["mean_fg_dice"]
        row[f"score_{n}_s"] = round(time.perf_counter() - started, 1)
    return {**row, "date": machine()["date"], "engine": engine()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="all, or some of: " + ", ".join(data.NAMES))
    args = parser.parse_args(argv)
    for name in data.NAMES if args.datasets == ["all"] else args.datasets:
        row = run(name)
        print(json.dumps(row), flush=True)
        with LOG.open("a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
