"""Synthetic Xenopus-like kidney tubule volumes and simulated sparse slice annotations.

The volumes imitate the confocal data of Çiçek et al. (2016): curved tubules with a bright
wall around a dimmer lumen on a dark, unevenly lit background. Arrays are in (z, y, x) order;
z voxels are ``z_anisotropy`` times longer than the in-plane ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TUBULE_CLASSES = ("background", "tubule lumen", "tubule wall")

_LEVELS = np.array([0.1, 0.35, 1.0], dtype=np.float32)  # background, lumen, wall
_WIGGLES = 3  # sinusoidal harmonics bending each tube


@dataclass(frozen=True)
class Sample:
    """A synthetic volume with its dense truth and a simulated sparse annotation."""

    image: np.ndarray  # float32 (z, y, x)
    truth: np.ndarray  # uint8 (z, y, x): 0 background, 1 tubule lumen, 2 tubule wall
    annotation: np.ndarray  # uint8 (z, y, x): 0 unlabeled, truth + 1 on painted voxels
    spacing: tuple[float, float, float]  # voxel size (z, y, x)
    class_names: tuple[str, ...] = TUBULE_CLASSES  # name of each mask value


def _check_shape(shape) -> tuple[int, int, int]:
    try:
        valid = len(shape) == 3 and all(int(s) == s and s >= 1 for s in shape)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"shape must be three positive integers (z, y, x), got {shape!r}.")
    return tuple(int(s) for s in shape)


def _tube_path(rng, extent: np.ndarray, reach: float, step: float) -> np.ndarray:
    """Densely sampled smooth random curve (physical units) crossing a box of size ``extent``."""
    direction = rng.normal(size=3) * (0.5, 1.0, 1.0)  # tubules run mostly in-plane
    direction /= np.linalg.norm(direction)
    anchor = extent * rng.uniform(0.25, 0.75, size=3)
    amp = rng.normal(size=(_WIGGLES, 3)) * 0.1 * max(float(extent[1:].min()), 1.0)
    amp /= np.arange(1, _WIGGLES + 1)[:, None]
    # long enough that both ends lie outside the box (no visible tube caps)
    half = 0.75 * float(np.linalg.norm(extent)) + reach + float(np.abs(amp).sum())
    phase = rng.uniform(0, 2 * np.pi, size=_WIGGLES)

    def curve(t: np.ndarray) -> np.ndarray:
        freq = np.pi * np.arange(1, _WIGGLES + 1)[None, :] * (t[:, None] + 1)
        return anchor + t[:, None] * half * direction + np.sin(freq + phase) @ amp

    coarse = curve(np.linspace(-1, 1, 512))
    length = float(np.linalg.norm(np.diff(coarse, axis=0), axis=1).sum())
    return curve(np.linspace(-1, 1, math.ceil(length / step) + 2))


def _tube_distance(points, coarse_shape, pad, k, fine_dz):
    """Physical distance to a centreline around it, on the padded coarse grid.

    ``points`` are in fine-grid voxels, whose plane ``k * z`` is coarse plane ``z``. Returns
    the distances in a box reaching ``pad`` fine voxels beyond the centreline and the box's
    slices into the padded coarse grid, or None when the centreline misses the grid.
    """
    fine = np.array([(coarse_shape[0] - 1) * k + 1, *coarse_shape[1:]])
    idx = np.rint(points).astype(np.int64)
    idx = idx[np.all((idx >= 0) & (idx < fine), axis=1)]
    if len(idx) == 0:
        return None
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    lo[0] -= lo[0] % k  # start the box on a coarse plane
    hi = np.minimum(idx.max(axis=0) + pad + 1, fine)
    line = np.ones(tuple(hi - lo), dtype=bool)
    line[tuple((idx - lo).T)] = False
    sub = ndimage.distance_transform_edt(line, sampling=(fine_dz, 1.0, 1.0))[::k]
    z0 = lo[0] // k
    return sub, (slice(z0, z0 + len(sub)), slice(lo[1], hi[1]), slice(lo[2], hi[2]))


def _tubule_truth(shape, n_tubes, z_anisotropy, rng) -> np.ndarray:
    """Rasterise ``n_tubes`` random tubes into a uint8 mask (0 background, 1 lumen, 2 wall)."""
    nz, ny, nx = shape
    scale = min(max(min(ny, nx) / 64.0, 0.3), 3.0)  # tube calibre follows the field of view
    k = max(1, round(z_anisotropy))  # fine z grid keeps the centreline smooth along z
    fine_dz = z_anisotropy / k
    outer = np.maximum(rng.uniform(5.0, 9.0, n_tubes) * scale, 1.5)
    inner = outer - np.maximum(rng.uniform(1.5, 3.0, n_tubes) * scale, 0.75)
    reach = float(outer.max(initial=0.0)) + 1.0
    margin = np.array([math.ceil(reach / z_anisotropy), math.ceil(reach), math.ceil(reach)])
    padded = tuple(int(s) for s in np.array(shape) + 2 * margin)
    extent = np.array([(nz - 1) * z_anisotropy, ny - 1, nx - 1], dtype=float)
    lumen = np.zeros(padded, dtype=bool)
    tube = np.zeros(padded, dtype=bool)
    for r_out, r_in in zip(outer, inner, strict=True):
        path = _tube_path(rng, extent, reach, step=0.5 * min(fine_dz, 1.0))
        points = path / (fine_dz, 1.0, 1.0) + margin * (k, 1, 1)
        found = _tube_distance(points, padded, margin * (k, 1, 1), k, fine_dz)
        if found is not None:
            dist, box = found
            lumen[box] |= dist < r_in
            tube[box] |= dist < r_out
    crop = tuple(slice(m, m + s) for m, s in zip(margin, shape, strict=True))
    truth = np.where(tube[crop], 2, 0).astype(np.uint8)
    truth[lumen[crop]] = 1
    return truth


def _smooth_field(shape, rng, n_waves: int = 3) -> np.ndarray:
    """Slowly varying multiplicative illumination around 1 (about ±15 %)."""
    grids = np.ogrid[tuple(slice(0, 1, complex(0, s)) for s in shape)]
    field = np.zeros(shape, dtype=np.float32)
    for _ in range(n_waves):
        freq = rng.uniform(0.3, 1.5, size=3)
        arg = sum(2 * np.pi * f * g for f, g in zip(freq, grids, strict=True))
        field += np.cos(arg + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    return 1.0 + 0.15 * field / n_waves


def _render(truth, z_anisotropy, noise, blur, rng) -> np.ndarray:
    """Turn a mask into a blurred, unevenly lit, noisy float32 image."""
    image = _LEVELS[truth] * _smooth_field(truth.shape, rng)
    if blur > 0:
        image = ndimage.gaussian_filter(image, sigma=(blur / z_anisotropy, blur, blur))
    grids = np.ogrid[tuple(slice(-0.5, 0.5, complex(0, s)) for s in truth.shape)]
    tilt = rng.normal(size=3)
    ramp = sum(t * g for t, g in zip(tilt / np.linalg.norm(tilt), grids, strict=True))
    image = image * (1.0 + 0.4 * ramp) + 0.05 * ramp
    image = image + noise * rng.standard_normal(truth.shape, dtype=np.float32)
    return image.astype(np.float32)


def make_tubules(
    shape=(24, 64, 64), n_tubes=5, z_anisotropy=2.0, noise=0.08, blur=1.0, seed=0
) -> tuple[np.ndarray, np.ndarray]:
    """Make a synthetic kidney-tubule volume and its dense ground truth.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (z, y, x); any positive sizes work, even tiny odd ones.
    n_tubes : int
        Number of random curved tubes crossing the volume.
    z_anisotropy : float
        z voxel size relative to the in-plane size; the sample spacing is
        ``(z_anisotropy, 1.0, 1.0)``.
    noise : float
        Standard deviation of the additive Gaussian noise.
    blur : float
        Gaussian blur sigma in in-plane voxels (the same physical blur along z).
    seed : int
        Seed; the same arguments always give the same volume.

    Returns
    -------
    image : np.ndarray
        float32 (z, y, x): wall bright (~1.0), lumen mid (~0.35), background dark (~0.1),
        with uneven illumination, blur and noise.
    truth : np.ndarray
        uint8 (z, y, x): 0 background, 1 tubule lumen, 2 tubule wall.

    Notes
    -----
    Tube outer radii are 5–9 in-plane voxels and walls 1.5–3 voxels thick for a 64-voxel
    field of view; both scale with ``min(y, x) / 64`` (clipped to 0.3–3) so that the class
    fractions stay similar for larger or smaller volumes.
    """
    shape = _check_shape(shape)
    if int(n_tubes) != n_tubes or n_tubes < 0:
        raise ValueError(f"n_tubes must be a non-negative integer, got {n_tubes!r}.")
    if not z_anisotropy > 0:
        raise ValueError(f"z_anisotropy must be positive, got {z_anisotropy!r}.")
    if not (noise >= 0 and blur >= 0):
        raise ValueError(f"noise and blur must be non-negative, got {noise!r} and {blur!r}.")
    rng = np.random.default_rng(seed)
    truth = _tubule_truth(shape, int(n_tubes), float(z_anisotropy), rng)
    image = _render(truth, float(z_anisotropy), float(noise), float(blur), rng)
    return image, truth


def _is_count(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def _slice_counts(slices_per_axis, shape) -> tuple[int, int, int]:
    counts = slices_per_axis
    if np.isscalar(counts):
        counts = (counts, counts, counts)
    counts = tuple(counts)
    if len(counts) != 3 or not all(_is_count(c) for c in counts):
        raise ValueError(
            "slices_per_axis must be a non-negative integer or three of them, "
            f"got {slices_per_axis!r}."
        )
    if any(c > s for c, s in zip(counts, shape, strict=True)):
        raise ValueError(f"slices_per_axis {counts} asks for more slices than the shape {shape}.")
    return tuple(int(c) for c in counts)


def _slice_positions(length: int, count: int, rng) -> np.ndarray:
    """``count`` distinct, evenly spaced indices in ``range(length)`` with a small random shift."""
    gap = length / count
    shift = rng.uniform(-0.25, 0.25) * gap
    return np.floor((np.arange(count) + 0.5) * gap + shift).astype(np.int64)


def _partial_window(plane_shape, rng) -> tuple[slice, slice]:
    """A random rectangle covering about half of a plane."""
    window = []
    for size in plane_shape:
        side = max(1, round(size * math.sqrt(0.5)))
        start = int(rng.integers(0, size - side + 1))
        window.append(slice(start, start + side))
    return tuple(window)


def sparse_annotation(truth, slices_per_axis=1, partial=False, seed=0) -> np.ndarray:
    """Simulate a user painting a few full (or partial) slices of the truth.

    Parameters
    ----------
    truth : np.ndarray
        3D integer mask (z, y, x), 0 background, k class k (values up to 254).
    slices_per_axis : int or tuple of int
        Slices painted in the xy (axis 0), xz (axis 1) and yz (axis 2) planes; an int
        applies to all three axes, a 3-tuple such as ``(2, 0, 1)`` sets each axis.
        Slices are evenly spaced with a small random offset drawn from ``seed``.
    partial : bool
        If True, paint only a random rectangle of about half of each slice.
    seed : int
        Seed for the slice offsets and the partial rectangles.

    Returns
    -------
    np.ndarray
        uint8 annotation: ``truth + 1`` on painted voxels, 0 (unlabeled) elsewhere.
    """
    truth = np.asarray(truth)
    if truth.ndim != 3 or not (np.issubdtype(truth.dtype, np.integer) or truth.dtype == bool):
        raise ValueError(f"truth must be a 3D integer array, got {truth.ndim}D {truth.dtype}.")
    if truth.size and (truth.min() < 0 or truth.max() > 254):
        raise ValueError("truth values must lie between 0 and 254.")
    counts = _slice_counts(slices_per_axis, truth.shape)
    rng = np.random.default_rng(seed)
    annotation = np.zeros(truth.shape, dtype=np.uint8)
    for axis, count in enumerate(counts):
        if count == 0:
            continue
        plane_shape = tuple(s for a, s in enumerate(truth.shape) if a != axis)
        for index in _slice_positions(truth.shape[axis], count, rng):
            window = _partial_window(plane_shape, rng) if partial else (slice(None),) * 2
            region = window[:axis] + (int(index),) + window[axis:]
            annotation[region] = truth[region].astype(np.uint8) + 1
    return annotation


DEMO = {"shape": (32, 96, 96), "slices_per_axis": 2, "seed": 0}  # the demo and napari's sample


def demo_sample() -> Sample:
    """The demo volume (``sparseseg demo``, napari's File > Open Sample): :data:`DEMO`."""
    return make_sample(**DEMO)


def make_sample(shape=(24, 64, 64), slices_per_axis=1, seed=0, partial=False, **kwargs) -> Sample:
    """Make a synthetic volume, its truth and a sparse slice annotation.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (z, y, x).
    slices_per_axis : int or tuple of int
        Painted slices per axis, see `sparse_annotation`.
    seed : int
        Seed for both the volume and the annotation.
    partial : bool
        Paint only part of each slice, see `sparse_annotation`.
    **kwargs
        Passed to `make_tubules` (``n_tubes``, ``z_anisotropy``, ``noise``, ``blur``).

    Returns
    -------
    Sample
        Image, truth, annotation, spacing ``(z_anisotropy, 1.0, 1.0)`` and class names.
    """
    image, truth = make_tubules(shape=shape, seed=seed, **kwargs)
    annotation = sparse_annotation(truth, slices_per_axis, partial=partial, seed=seed)
    spacing = (float(kwargs.get("z_anisotropy", 2.0)), 1.0, 1.0)
    return Sample(image=image, truth=truth, annotation=annotation, spacing=spacing)
