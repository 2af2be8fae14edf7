"""The trees alone after their first 25, 50, 75 and 100 rounds: Dice and time to score every voxel.

The default's trees (100 rounds) are fitted on the painted voxels of K = 3 planes per axis, as
training fits them; the same booster then scores the whole volume with only its first n rounds.
This chose the share of rounds a new model's early answer scores with (``trees.EARLY``). Each row
is one JSON line in ``results/accuracy/tree_rounds.jsonl``.

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.tree_rounds mni nuclei
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

LOG = RESULTS / "tree_rounds.jsonl"
ROUNDS = (25, 50, 75, 100)


def run(name: str, k: int = 3, seed: int = 0) -> list[dict]:
    dataset = data.load(name)
    annotation = protocol.paint(dataset.truth, k)
    chosen = preset("fast")
    segmenter, images, annotations = trainer.prepare([dataset.image], [annotation], chosen.model,
                                                     chosen.train, dataset.spacing)
    rng = np.random.default_rng(seed)
    targets = [annotation_to_target(a) for a in annotations]
    started = time.perf_counter()
    volume = trainer.training_inputs(segmenter, images, targets, rng)[0]
    features_s = time.perf_counter() - started
    index = painted_index(targets, rng)
    features, labels = (t.numpy() for t in painted_samples([volume], targets, rng, index=index))
    fitted = trees.TreeClassifier(segmenter.n_classes, max(ROUNDS))
    started = time.perf_counter()
    list(fitted.fit(features, labels, seed))
    fit_s = time.perf_counter() - started
    rows = []
    for n in ROUNDS:
        fitted._scoring = n  # what TreeClassifier.early sets for its share of the rounds
        started = time.perf_counter()
        labels = fitted.volume(volume).argmax(0)
        score = protocol.score(labels, dataset.truth, annotation == 0, dataset.class_names)
        rows.append({"dataset": name, "k": k, "rounds": n, "mean_fg_dice": score["mean_fg_dice"],
                     "score_s": round(time.perf_counter() - started, 2), "fit_s": round(fit_s, 2),
                     "features_s": round(features_s, 2), "voxels": int(volume[0].size),
                     "classes": segmenter.n_classes, "date": machine()["date"], "engine": engine()})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="all, or some of: " + ", ".join(data.NAMES))
    args = parser.parse_args(argv)
    for name in data.NAMES if "all" in args.datasets else args.datasets:
        with LOG.open("a") as log:
            for row in run(name):
                print(row, flush=True)
                log.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
