"""Robust intensity normalisation, computed from training images and stored with the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MAX_SAMPLES = 2_000_000


@dataclass(frozen=True)
class Normalization:
    """Clip to robust percentiles, then standardise with the clipped mean and std.

    The same numbers are applied to every volume the model later predicts, as
    nnU-Net does, so a model trained on one scan sees the next one on the same scale.
    """

    low: float
    high: float
    mean: float
    std: float

    def apply(self, image: np.ndarray, in_place: bool = False) -> np.ndarray:
        """Return ``image`` clipped and standardised as float32: a copy, or ``image`` itself when
        ``in_place`` and it is a float32 array (saves a chunk-sized copy in chunked prediction)."""
        inside = in_place and isinstance(image, np.ndarray) and image.dtype == np.float32
        out = np.clip(image, self.low, self.high, out=image if inside else None)
        out = out.astype(np.float32, copy=False)
        out -= np.float32(self.mean)
        out /= np.float32(self.std)
        return out


def fit_normalization(images, annotations=None, percentiles=(0.5, 99.5), seed: int = 0
                      ) -> Normalization:
    """Estimate :class:`Normalization` from one or more images and, when given, their annotations.

    Without annotations: clip to the volume's robust percentiles, standardise with the clipped
    mean and std. With annotations that paint a structure (value >= 2), the window comes from
    the painted structures, as nnU-Net does for CT with its foreground voxels: their robust range
    widened by half its width (at least 5 % of the volume's range) on each side, so the background
    next to them stays distinct, never beyond the volume's own range; and their mean and std.
    A CT's -1000..3000 HU then no longer squeezes soft tissues that differ by tens of HU.
    At most two million voxels are sampled.
    """
    rng = np.random.default_rng(seed)
    per_image = max(1, _MAX_SAMPLES // len(images))
    samples = np.concatenate([_sample(np.asarray(im), per_image, rng) for im in images])
    low, high = np.percentile(samples, percentiles)
    painted = _painted_structures(images, annotations, per_image, rng)
    if painted.size >= 10:
        fg_low, fg_high = np.percentile(painted, percentiles)
        margin = max(0.5 * (fg_high - fg_low), 0.05 * (high - low))
        low, high = max(low, fg_low - margin), min(high, fg_high + margin)
        samples = painted
    clipped = np.clip(samples, low, high)
    std = float(clipped.std())
    return Normalization(float(low), float(high), float(clipped.mean()), std if std > 1e-8 else 1.0)


def _painted_structures(images, annotations, n: int, rng) -> np.ndarray:
    """Intensities of voxels painted as a structure (annotation >= 2), at most ``n`` per image."""
    if annotations is None:
        return np.empty(0)
    parts = []
    for image, annotation in zip(images, annotations):
        values = np.asarray(image)[np.asarray(annotation) >= 2]
        parts.append(_sample(values, n, rng))
    return np.concatenate(parts)


def _sample(image: np.ndarray, n: int, rng) -> np.ndarray:
    flat = image.reshape(-1)
    if flat.size > n:
        flat = flat[rng.integers(0, flat.size, n)]
    return flat.astype(np.float64)
