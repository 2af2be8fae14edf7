"""Patches centred on painted voxels, with anisotropy-aware augmentation.

Targets are int16 volumes holding -1 where nothing is painted and the class index
elsewhere (annotation - 1). Every batch draws each patch's class uniformly among the
painted classes, so a rare class is seen as often as background.
"""

from __future__ import annotations

import math

import numpy as np

_MAX_CENTRES = 1_000_000


def fit_patch(patch, shape, multiple) -> tuple[int, int, int]:
    """Shrink ``patch`` to the volume (rounded up to ``multiple``); keep multiples."""
    out = []
    for p, s, m in zip(patch, shape, multiple):
        p = math.ceil(p / m) * m
        out.append(min(p, math.ceil(s / m) * m))
    return tuple(out)


def annotation_to_target(annotation: np.ndarray) -> np.ndarray:
    """Map annotation (0 unlabeled, k+1 class k) to target (-1 unlabeled, k class k)."""
    return annotation.astype(np.int16) - 1


class PatchSampler:
    """Draw training batches from one or more normalised (image, target) pairs.

    Parameters
    ----------
    images : list of float32 (C, Z, Y, X) or (Z, Y, X) arrays, already normalised (or filter features)
    targets : list of int16 (Z, Y, X) arrays, -1 where unlabeled
    patch : (int, int, int)
        Patch size; volumes smaller than it are padded (image with 0, target with -1).
    spacing : (float, float, float)
        Voxel spacing; in-plane 90 degree rotations are used only where it is isotropic.
    rng : numpy Generator
    augment : bool
        Random flips and right-angle turns.
    n_classes : int, optional
    intensity : float
        Random intensity scale in [1 - intensity, 1 + intensity] and shift in
        [-intensity, intensity]; 0 keeps intensities as they are.
    """

    def __init__(self, images, targets, patch, spacing, rng, augment=True, n_classes=None, intensity=0.0):
        self.patch, self.rng, self.augment, self.intensity = tuple(patch), rng, augment, intensity
        images = [im if im.ndim == 4 else im[None] for im in images]
        self.images = [_pad_to(im, (im.shape[0], *self.patch), 0.0) for im in images]
        self.targets = [_pad_to(t, self.patch, -1) for t in targets]
        self.n_classes = n_classes or int(max(t.max() for t in self.targets)) + 1
        self.centres = self._index_centres()
        self.rotate90 = math.isclose(spacing[1], spacing[2], rel_tol=0.05) and patch[1] == patch[2]

    def _index_centres(self) -> list[tuple[np.ndarray, np.ndarray]]:
        centres = []
        for k in range(self.n_classes):
            which, flat = [], []
            for i, t in enumerate(self.targets):
                idx = np.flatnonzero(t == k)
                which.append(np.full(idx.size, i, np.int32))
                flat.append(idx)
            which, flat = np.concatenate(which), np.concatenate(flat)
            if flat.size > _MAX_CENTRES:
                keep = self.rng.choice(flat.size, _MAX_CENTRES, replace=False)
                which, flat = which[keep], flat[keep]
            if flat.size:
                centres.append((which, flat))
        return centres

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Return images (B, C, *patch) float32 and targets (B, *patch) int64."""
        xs, ys = zip(*(self._one() for _ in range(batch_size)))
        return np.stack(xs), np.stack(ys).astype(np.int64)

    def _one(self) -> tuple[np.ndarray, np.ndarray]:
        which, flat = self.centres[self.rng.integers(len(self.centres))]
        pick = self.rng.integers(flat.size)
        i = int(which[pick])
        image, target = self.images[i], self.targets[i]
        centre = np.unravel_index(flat[pick], target.shape)
        region = tuple(self._window(c, p, s) for c, p, s in zip(centre, self.patch, target.shape))
        x, y = image[(slice(None), *region)].copy(), target[region].copy()
        return self._augment(x, y) if self.augment else (x, y)

    def _window(self, centre: int, size: int, extent: int) -> slice:
        jitter = int(self.rng.integers(-(size // 4), size // 4 + 1))
        start = int(np.clip(centre + jitter - size // 2, 0, extent - size))
        return slice(start, start + size)

    def _augment(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        for axis in range(3):
            if rng.random() < 0.5:
                x, y = np.flip(x, axis + 1), np.flip(y, axis)
        k = int(rng.integers(4)) if self.rotate90 else 2 * int(rng.integers(2))
        x, y = np.rot90(x, k, axes=(2, 3)), np.rot90(y, k, axes=(1, 2))
        if self.intensity:
            a = self.intensity
            x = x * np.float32(rng.uniform(1 - a, 1 + a)) + np.float32(rng.uniform(-a, a))
        return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y)


def _pad_to(volume: np.ndarray, patch, value) -> np.ndarray:
    pad = [(0, max(0, p - s)) for p, s in zip(patch, volume.shape)]
    if not any(after for _, after in pad):
        return volume
    return np.pad(volume, pad, constant_values=value)
