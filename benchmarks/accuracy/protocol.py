"""The simulated user: paint K evenly spaced full slices per axis, score what was not painted.

Annotation values follow the engine: 0 unlabeled, 1 background, k+1 class k. A painted slice
carries the truth (``truth + 1``) over the whole plane, in the xy (axis 0), xz (axis 1) and yz
(axis 2) planes alike. Scores are the engine's own metrics on the voxels left unpainted.
"""

from __future__ import annotations

import numpy as np

from napari_sparseseg.core.metrics import evaluate


def slice_positions(length: int, k: int) -> np.ndarray:
    """``k`` evenly spaced plane indices in ``range(length)``, each in the middle of its share."""
    if not 1 <= k <= length:
        raise ValueError(f"cannot paint {k} slices along an axis of length {length}")
    return np.floor((np.arange(k) + 0.5) * length / k).astype(np.int64)


def paint(truth: np.ndarray, k: int) -> np.ndarray:
    """Annotation with ``k`` full slices per axis painted with the truth, 0 elsewhere."""
    annotation = np.zeros(truth.shape, np.uint8)
    for axis in range(3):
        for index in slice_positions(truth.shape[axis], k):
            plane = (slice(None),) * axis + (int(index),)
            annotation[plane] = truth[plane] + 1
    return annotation


def dense(truth: np.ndarray) -> np.ndarray:
    """Every voxel painted: the upper-bound annotation."""
    return (truth + 1).astype(np.uint8)


def painted_fraction(annotation: np.ndarray) -> float:
    """Share of voxels the user painted."""
    return float(np.count_nonzero(annotation)) / annotation.size


def score(pred: np.ndarray, truth: np.ndarray, unpainted: np.ndarray, class_names) -> dict:
    """Dice per class and the foreground mean on the ``unpainted`` voxels."""
    result = evaluate(pred, truth, n_classes=len(class_names), mask=unpainted, class_names=class_names)
    dice = {name: round(values["dice"], 5) for name, values in result["classes"].items()}
    return {
        "dice": dice,
        "mean_fg_dice": round(result["mean_foreground"]["dice"], 5),
        "scored_voxels": result["n_voxels"],
    }
