"""Sliding-window prediction with Gaussian blending.

:func:`sliding_window` works with any predictor callable mapping a batch of windows
``(B, C, z, y, x)`` to class probabilities ``(B, K, z, y, x)``; :func:`predict`
applies a trained :class:`~.checkpoint.Segmenter` to a volume.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from . import device as dev
from .checkpoint import Segmenter
from .config import InferConfig
from .filters import STORED
from .sampling import fit_patch
from .trees import TreeClassifier
from .validate import check_image

Predictor = Callable[[np.ndarray], np.ndarray]
_FLIPS = ((2,), (3,), (4,))
MAX_FEATURE_BYTES = 2 << 30  # whole-volume filter features above this: predict chunk by chunk
SLAB_VOXELS = 2 * 32 * 64 * 64  # a voxel-by-voxel model's slab: the voxels of the default's batch of windows


@dataclass(frozen=True)
class Prediction:
    """Labels (Z, Y, X) uint8 (0 background, k class k) and probabilities (K, Z, Y, X) uint8 (0..255)."""

    labels: np.ndarray
    probabilities: np.ndarray


def gaussian_importance(window, sigma_scale: float = 0.125) -> np.ndarray:
    """Gaussian weight map over a window, peak 1, never below 1e-3 (nnU-Net's choice)."""
    grids = []
    for size in window:
        coords = np.arange(size, dtype=np.float32) - (size - 1) / 2
        sigma = max(size * sigma_scale, 1e-3)
        grids.append(np.exp(-0.5 * (coords / sigma) ** 2))
    weight = grids[0][:, None, None] * grids[1][None, :, None] * grids[2][None, None, :]
    return np.maximum(weight / weight.max(), 1e-3).astype(np.float32)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Evenly spread window starts that cover ``size``, the last one flush with the end."""
    if size <= window:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    count = math.ceil((size - window) / step) + 1
    return [round(i * (size - window) / (count - 1)) for i in range(count)]


def window_grid(shape, window, overlap: float) -> tuple[list[int], list[int], list[int]]:
    """Window starts along each axis that :func:`sliding_window` uses for a volume of ``shape``.

    An axis shorter than its window is padded up to the window, so it gets the single start 0.
    Any part of the volume (a dask chunk, say) reproduces the whole-volume result by blending
    the windows of this grid that touch it.
    """
    return tuple(window_starts(max(s, w), w, overlap) for s, w in zip(shape, window))


def sliding_window(
    volume: np.ndarray,
    predictor: Predictor,
    window,
    overlap: float = 0.25,
    batch_size: int = 2,
    blend: str = "gaussian",
    per_voxel: bool = False,
) -> np.ndarray:
    """Blend ``predictor`` outputs over overlapping windows of ``volume``.

    Parameters
    ----------
    volume : ndarray (C, Z, Y, X) or (Z, Y, X)
        Float32, or float16 as filter features are stored (kept as it is, not copied).
    predictor : callable
        ``(B, C, *window) -> (B, K, *window)`` probabilities (or any per-voxel scores).
    window : (int, int, int)
        Window size; a volume smaller than it is zero-padded, then cropped back.
    overlap : float in [0, 1)
    batch_size : int
    blend : {'gaussian', 'constant'}
    per_voxel : bool
        Whether the predictor's output at a voxel depends on that voxel's input alone (see
        :func:`answers_per_voxel`): then every window gives a voxel the same output, and the
        volume is predicted slab by slab without windows.

    Returns
    -------
    ndarray (K, Z, Y, X) float32
        Weighted mean of the window outputs at each voxel.
    """
    volume, window = _check_args(volume, window, overlap, batch_size, blend)
    shape = volume.shape[1:]
    starts = window_grid(shape, window, overlap)
    core = [(0, s) for s in shape]
    return blend_windows(_pad(volume, window), predictor, window, starts, core, batch_size, blend, per_voxel)


def blend_windows(source, predictor, window, starts, core, batch_size=2, blend="gaussian",
                  per_voxel=False) -> np.ndarray:
    """Weighted mean over the box ``core`` of ``predictor`` outputs on the windows that touch it.

    Parameters
    ----------
    source : ndarray (C, Z, Y, X) float32 or float16
        Input that holds every window touching ``core`` in full.
    predictor : callable
        As in :func:`sliding_window`.
    window : (int, int, int)
    starts : three sequences of int
        Window starts along each axis, in ``source`` coordinates (see :func:`window_grid`);
        windows that do not touch ``core`` are skipped.
    core : three (start, stop) pairs
        The box to return, in ``source`` coordinates.
    batch_size : int
    blend : {'gaussian', 'constant'}
    per_voxel : bool
        As in :func:`sliding_window`: ``predictor`` runs on ``core`` itself, slab by slab.

    Returns
    -------
    ndarray (K, *core shape) float32
    """
    if per_voxel:
        return _slab_by_slab(source, predictor, core)
    weight = gaussian_importance(window) if blend == "gaussian" else np.ones(window, np.float32)
    touching = [[s for s in axis if s < hi and s + w > lo] for axis, w, (lo, hi) in zip(starts, window, core)]
    corners = list(itertools.product(*touching))
    total, norm = None, np.zeros([hi - lo for lo, hi in core], np.float32)
    for first in range(0, len(corners), batch_size):
        group = corners[first : first + batch_size]
        regions = [tuple(slice(c, c + w) for c, w in zip(corner, window)) for corner in group]
        out = np.asarray(predictor(np.stack([source[(slice(None),) + r] for r in regions])))
        if total is None:
            total = np.zeros((out.shape[1],) + norm.shape, np.float32)
        for scores, corner in zip(out, group):
            inside, target = _clip_window(corner, window, core)
            total[(slice(None),) + target] += scores[(slice(None),) + inside] * weight[inside]
            norm[target] += weight[inside]
    total /= norm
    return total


def _slab_by_slab(source, predictor, core) -> np.ndarray:
    """``predictor`` on the box ``core`` of ``source``, a slab of z-planes of at most
    :data:`SLAB_VOXELS` at a time. For a model that answers voxel by voxel this is what blending its
    windows gives (a weighted mean of equal outputs), without computing each voxel once per window
    that holds it (1.3 s of MNI's early answer, 2 cores)."""
    (z0, z1), (y0, y1), (x0, x1) = core
    slab, total = max(1, SLAB_VOXELS // max(1, (y1 - y0) * (x1 - x0))), None
    for z in range(z0, z1, slab):
        out = np.asarray(predictor(source[None, :, z : min(z + slab, z1), y0:y1, x0:x1]))[0]
        if total is None:
            total = np.empty((out.shape[0], z1 - z0, y1 - y0, x1 - x0), np.float32)
        total[:, z - z0 : z - z0 + out.shape[1]] = out
    return total


def _clip_window(corner, window, core) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """The part of a window inside ``core``: (slices in the window, slices in the core box)."""
    inside, target = [], []
    for c, w, (lo, hi) in zip(corner, window, core):
        first, last = max(c, lo), min(c + w, hi)
        inside.append(slice(first - c, last - c))
        target.append(slice(first - lo, last - lo))
    return tuple(inside), tuple(target)


def _check_args(volume, window, overlap, batch_size, blend):
    volume = np.asarray(volume)
    volume = volume if volume.dtype == STORED else volume.astype(np.float32, copy=False)
    if volume.ndim == 3:
        volume = volume[None]
    if volume.ndim != 4:
        raise ValueError(f"volume must be (Z, Y, X) or (C, Z, Y, X), got shape {volume.shape}.")
    window = tuple(int(w) for w in window)
    if len(window) != 3 or min(window) < 1:
        raise ValueError(f"window must be three positive sizes, got {window}.")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if blend not in ("gaussian", "constant"):
        raise ValueError(f"blend must be 'gaussian' or 'constant', got {blend!r}.")
    return volume, window


def _pad(volume: np.ndarray, window) -> np.ndarray:
    pad = [(0, 0)] + [(0, max(0, w - s)) for w, s in zip(window, volume.shape[1:])]
    return np.pad(volume, pad) if any(after for _, after in pad) else volume


def torch_predictor(net: torch.nn.Module, device: torch.device, flip_tta: bool = False) -> Predictor:
    """Wrap ``net`` (logits) as a numpy predictor returning softmax probabilities.

    A :class:`~.model.UNet3D` gets its inputs as :func:`model_inputs` makes them (its
    ``from_features``); any other module gets the window as it is.
    """
    fmt = dev.memory_format(device)
    forward = getattr(net, "from_features", net)

    def run(x: torch.Tensor) -> torch.Tensor:
        with dev.autocast(device):
            return forward(x).float().softmax(dim=1)

    def predict(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).float().contiguous(memory_format=fmt)
        with torch.inference_mode():
            probs = run(x)
            if flip_tta:
                for axes in _FLIPS:
                    probs += run(x.flip(axes)).flip(axes)
                probs /= 1 + len(_FLIPS)
        return probs.cpu().numpy()

    return predict


def predict(segmenter: Segmenter, image: np.ndarray, config: InferConfig | None = None,
            early: bool = False) -> Prediction:
    """Dense prediction of ``image`` (Z, Y, X) with a trained segmenter.

    ``config`` defaults to the inference settings stored with the model (``segmenter.infer``).
    ``early`` scores boosted trees with early stopping (napari's early answer, see
    :meth:`.trees.TreeClassifier.rows`): the labels come sooner and nearly all as they would, but
    the probabilities are flatter than the model's, so nothing that needs them should use it.

    For volumes larger than memory, see :func:`.chunked.predict_dask`: it gives the same result
    chunk by chunk. A model with a filter-bank stem whose whole-volume inputs would pass
    :data:`MAX_FEATURE_BYTES` (float16: the default's 52 features per voxel and one per class) is
    predicted that way here too.
    """
    config = config or segmenter.infer
    image = check_image(image)
    check_channels(segmenter)
    stem = segmenter.net.stem
    if stem is not None and image.size * segmenter.net.stage_channels * STORED().itemsize > MAX_FEATURE_BYTES:
        return _predict_in_chunks(segmenter, image, config, early)
    probs = sliding_window(
        model_inputs(segmenter, segmenter.normalization.apply(image), early=early),
        segmenter_predictor(segmenter, config),
        prediction_window(segmenter, config, image.shape),
        config.overlap,
        config.batch_size,
        per_voxel=answers_per_voxel(segmenter),
    )
    return Prediction(labels_uint8(probs), probabilities_uint8(probs))


def _predict_in_chunks(segmenter: Segmenter, image: np.ndarray, config: InferConfig,
                       early: bool = False) -> Prediction:
    import dask

    from .chunked import predict_dask

    lazy = predict_dask(image, segmenter, config, early=early)
    labels, probabilities = dask.compute(lazy.labels, lazy.probabilities, scheduler="threads", num_workers=1)
    return Prediction(labels, probabilities)


def model_inputs(segmenter: Segmenter, volume: np.ndarray, crop=None, early: bool = False) -> np.ndarray:
    """What the network's windows read: the normalised ``volume`` (Z, Y, X) as (1, Z, Y, X), or its
    filter features (C, Z, Y, X) when the model has a filter-bank stem, followed by the trees'
    logits when its first stage is boosted trees (scored once per voxel, not once per window;
    ``early`` as in :func:`predict`). ``crop`` (three slices) keeps only that part; filters still
    see the whole ``volume``."""
    stem = segmenter.net.stem
    if stem is None:
        return volume[None] if crop is None else volume[(None, *crop)]
    first = segmenter.net.pointwise
    if not isinstance(first, TreeClassifier):
        return stem.volume(volume, crop=crop)
    inputs = stem.volume(volume, extra=first.n_classes, crop=crop)
    inputs[stem.out_channels :] = first.volume(inputs[: stem.out_channels], early=early)
    return inputs


def answers_per_voxel(segmenter: Segmenter) -> bool:
    """Whether the model's answer at a voxel depends on that voxel's inputs alone: a first stage
    (trees or perceptron on the filter features) whose U-Net adds nothing yet, or no longer (the
    early answer, and a round whose U-Net did not improve on its first stage)."""
    net = segmenter.net
    return net.stem is not None and net.pointwise is not None and not net.corrects


def check_channels(segmenter: Segmenter) -> None:
    """Raise a ValueError unless the model takes the single channel of a (Z, Y, X) image."""
    if segmenter.config.in_channels != 1:
        raise ValueError(
            f"The model expects {segmenter.config.in_channels} input channels but the image has 1."
        )


def prediction_window(segmenter: Segmenter, config: InferConfig, shape) -> tuple[int, int, int]:
    """The window :func:`predict` uses for a volume of ``shape``: shrunk to it, multiples of the pooling."""
    return fit_patch(config.window, shape, segmenter.config.total_pool)


def segmenter_predictor(segmenter: Segmenter, config: InferConfig) -> Predictor:
    """The segmenter's network on the configured device, as a numpy predictor in eval mode."""
    device = dev.resolve_device(config.device)
    net = dev.prepare(segmenter.net, device).eval()
    return torch_predictor(net, device, config.flip_tta)


def labels_uint8(probs: np.ndarray, slab: int = 8) -> np.ndarray:
    """Class index per voxel of ``probs`` (K, Z, Y, X), in z-slabs so no int64 volume is allocated."""
    labels = np.empty(probs.shape[1:], np.uint8)
    for z in range(0, probs.shape[1], slab):
        labels[z : z + slab] = probs[:, z : z + slab].argmax(axis=0)
    return labels


def probabilities_uint8(probs: np.ndarray) -> np.ndarray:
    """Probabilities 0..1 to 0..255, in place on the float buffer before the cast."""
    np.multiply(probs, 255, out=probs)
    np.rint(probs, out=probs)
    return probs.astype(np.uint8)
