"""Where the per-voxel stage loses to the forest: the classifier or the features (not run by CI).

On the painted voxels of one volume at K planes per axis, three per-voxel classifiers, scored
like :mod:`.run` (mean foreground Dice on the unpainted voxels):

- ``mlp``: the perceptron first stage (the engine's filter bank, the perceptron, its training);
- ``trees``: the engine's boosted trees (its default first stage since 2026-12-05) on its features;
- ``forest_on_engine_features``: the benchmark's forest (100 trees) on the engine's features;
- ``mlp_on_forest_features``: the engine's classifier on the forest's 22 features.

Beside :mod:`.forest` (the forest on its own features) this separates the two causes::

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.classifier_gap --dataset spm-t1 --k 2
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier

from napari_sparseseg.core import trainer
from napari_sparseseg.core.config import preset
from napari_sparseseg.core.model import pointwise_classifier
from napari_sparseseg.core.pointwise import per_voxel, train_pointwise
from napari_sparseseg.core.sampling import annotation_to_target
from napari_sparseseg.core.trees import TreeClassifier

from . import data, protocol
from .forest import filter_bank


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=data.NAMES, default="spm-t1")
    parser.add_argument("--k", type=int, default=2)
    args = parser.parse_args(argv)
    dataset = data.load(args.dataset)
    annotation = protocol.paint(dataset.truth, args.k)
    p = preset("fast")
    segmenter, images, annotations = trainer.prepare([dataset.image], [annotation], p.model, p.train,
                                                     dataset.spacing)
    rng = np.random.default_rng(0)
    ours = trainer.training_inputs(segmenter, images, [annotation_to_target(a) for a in annotations], rng)[0]
    ours = ours.reshape(ours.shape[0], -1).T.astype(np.float32)
    theirs = filter_bank(dataset.image, dataset.spacing)
    painted = np.flatnonzero(annotation.ravel() > 0)
    classes = annotation.ravel()[painted].astype(np.int64) - 1  # 0 = background
    forest = RandomForestClassifier(100, n_jobs=2, random_state=0).fit(ours[painted], classes)
    trees = TreeClassifier(segmenter.n_classes, p.model.trees)
    list(trees.fit(ours[painted], classes))
    found = {"mlp": _mlp(segmenter, ours, painted, classes), "trees": trees.rows(ours).argmax(1),
             "forest_on_engine_features": forest.predict(ours),
             "mlp_on_forest_features": _mlp(segmenter, _standardized(theirs, painted), painted, classes)}
    unpainted = annotation == 0
    scores = {name: protocol.score(labels.reshape(dataset.truth.shape).astype(np.uint8), dataset.truth,
                                   unpainted, dataset.class_names)["mean_fg_dice"]
              for name, labels in found.items()}
    print(json.dumps({"dataset": args.dataset, "k": args.k, **scores}))


def _standardized(features: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """Features shifted and scaled by their painted voxels' mean and spread (as the engine's bank)."""
    mean, std = features[painted].mean(0), features[painted].std(0) + 1e-6
    return (features - mean) / std


def _mlp(segmenter, features: np.ndarray, painted, classes) -> np.ndarray:
    """The engine's classifier (new weights, its defaults) trained on ``features`` of the painted
    voxels; the class of every voxel."""
    x = torch.from_numpy(np.ascontiguousarray(features, np.float32))
    head = pointwise_classifier(x.shape[1], 64, segmenter.n_classes)  # 22 inputs for the forest's
    train, rng = preset("fast").train, np.random.default_rng(0)
    steps = train_pointwise(head, x[painted], torch.from_numpy(classes), train.pointwise_steps,
                            train.pointwise_seconds, train.pointwise_learning_rate, rng)
    for _ in steps:
        pass
    head.eval()
    with torch.no_grad():
        return torch.cat([per_voxel(head, x[i : i + (1 << 16)]).argmax(1)
                          for i in range(0, len(x), 1 << 16)]).numpy()


if __name__ == "__main__":
    main()
