"""Where to paint next: voxel uncertainty and slice ranking.

A plane counts as *painted* along an axis when some painted voxel lies in it and in no plane
of another axis that holds more painted voxels (see :func:`painted_planes`).
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


def painted_planes(annotation: np.ndarray) -> list[list[int]]:
    """Indices of painted planes along each axis (z, y, x).

    Each painted voxel belongs to the one of its three planes (z, y and x) that holds the most
    painted voxels (ties: the lower axis): a brush stroke on an xy plane also lies in xz and yz
    planes, but only as a line, and the lines that a painted plane draws through the orthogonal
    planes belong to that plane. A plane is painted when a voxel belongs to it.
    """
    index = np.nonzero(annotation)
    if not index[0].size:
        return [[], [], []]
    counts = [np.bincount(i, minlength=n) for i, n in zip(index, annotation.shape)]
    owner = np.argmax(np.stack([c[i] for c, i in zip(counts, index)]), axis=0)
    return [np.unique(index[axis][owner == axis]).tolist() for axis in range(3)]


def border_margin(length: int) -> int:
    """Planes this close to either end of an axis are never suggested: the model is unsure there only
    because it sees no context beyond the volume, and a plane there teaches it little."""
    return length // 16


def spread(length: int) -> int:
    """Planes this close to a painted plane of the same axis come after all others: the model is often
    most unsure right beside what it was shown, and a neighbour of a painted plane adds little that
    is new (measured: benchmarks/accuracy/next_slice.py; without this rule three suggested planes in
    a row were neighbours, and evenly spaced planes beat them)."""
    return max(2, length // 8)


def rank_slices(uncertainty: np.ndarray, annotation: np.ndarray, top: int = 5):
    """Unpainted planes holding the most uncertainty, best first, away from the borders and spread
    out: planes near a painted plane of the same axis come last.

    A plane's weight is its total uncertainty (mean × voxels), not its mean: painting a plane
    teaches the model every voxel in it, so in a volume with few thick slices a large xy plane
    can teach more than a small xz plane of the same mean uncertainty.

    Returns
    -------
    list of (axis, index, score)
        Across all three axes, best first; ``score`` is the plane's mean uncertainty (0..1).
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
        margin = border_margin(means.size)
        inside = range(margin, means.size - margin)
        done = np.asarray(painted[axis])
        near = [bool(done.size) and int(np.abs(done - i).min()) < spread(means.size) for i in inside]
        area = uncertainty.size // means.size
        ranked += [(n, -means[i] * area, axis, i, float(means[i]))
                   for n, i in zip(near, inside) if i not in painted[axis]]
    ranked.sort(key=lambda item: item[:2])
    return [item[2:] for item in ranked[:top]]
