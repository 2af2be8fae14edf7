"""Where to paint next: voxel uncertainty and slice ranking.

A plane counts as *painted* along an axis when it holds clearly more painted voxels
than its neighbours get from the lines that orthogonal painted planes draw through it.
"""

from __future__ import annotations

import numpy as np

AXIS_PLANES = ("xy", "xz", "yz")  # plane shown when slicing along axis 0, 1, 2


def entropy(probabilities: np.ndarray, slab: int = 8) -> np.ndarray:
    """Normalised entropy (0 sure .. 255 uniform) of uint8 probabilities ``(K, Z, Y, X)``."""
    k = probabilities.shape[0]
    out = np.empty(probabilities.shape[1:], np.uint8)
    for z in range(0, probabilities.shape[1], slab):
        p = probabilities[:, z : z + slab].astype(np.float32) / 255.0
        h = -(p * np.log(np.clip(p, 1e-6, 1.0))).sum(axis=0) / np.log(k)
        out[z : z + slab] = np.rint(np.clip(h, 0, 1) * 255)
    return out


def painted_planes(annotation: np.ndarray, ratio: float = 3.0) -> list[list[int]]:
    """Indices of painted planes along each axis (z, y, x).

    A plane is painted when its painted-voxel count is above zero and at least
    ``ratio`` times the median count of the planes along that axis.
    """
    painted = annotation != 0
    result = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        counts = np.count_nonzero(painted, axis=others)
        floor = ratio * np.median(counts)
        result.append([int(i) for i in np.flatnonzero((counts > 0) & (counts >= floor))])
    return result


def rank_slices(uncertainty: np.ndarray, annotation: np.ndarray, top: int = 5):
    """Unpainted planes with the highest mean uncertainty, best first.

    Returns
    -------
    list of (axis, index, score)
        Across all three axes, sorted by score (mean uncertainty 0..1) descending.
    """
    if uncertainty.shape != annotation.shape:
        raise ValueError(
            f"Uncertainty {uncertainty.shape} and annotations {annotation.shape} differ in shape."
        )
    painted = painted_planes(annotation)
    ranked = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        means = uncertainty.mean(axis=others, dtype=np.float64) / 255.0
        ranked += [(axis, int(i), float(means[i])) for i in range(means.size) if i not in painted[axis]]
    ranked.sort(key=lambda item: -item[2])
    return ranked[:top]
