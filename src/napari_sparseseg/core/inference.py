"""Sliding-window prediction with Gaussian blending.

:func:`sliding_window` works with any predictor callable mapping a batch of windows
``(B, C, z, y, x)`` to class probabilities ``(B, K, z, y, x)``; :func:`predict`
applies a trained :class:`~.checkpoint.Segmenter` to a volume.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from . import device as dev
from .checkpoint import Segmenter
from .config import InferConfig
from .sampling import fit_patch
from .validate import check_image

Predictor = Callable[[np.ndarray], np.ndarray]
_FLIPS = ((2,), (3,), (4,))


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


def sliding_window(
    volume: np.ndarray,
    predictor: Predictor,
    window,
    overlap: float = 0.25,
    batch_size: int = 2,
    blend: str = "gaussian",
) -> np.ndarray:
    """Blend ``predictor`` outputs over overlapping windows of ``volume``.

    Parameters
    ----------
    volume : ndarray (C, Z, Y, X) or (Z, Y, X)
    predictor : callable
        ``(B, C, *window) float32 -> (B, K, *window)`` probabilities (or any per-voxel scores).
    window : (int, int, int)
        Window size; a volume smaller than it is zero-padded, then cropped back.
    overlap : float in [0, 1)
    batch_size : int
    blend : {'gaussian', 'constant'}

    Returns
    -------
    ndarray (K, Z, Y, X) float32
        Weighted mean of the window outputs at each voxel.
    """
    volume, window = _check_args(volume, window, overlap, batch_size, blend)
    shape = volume.shape[1:]
    padded = _pad(volume, window)
    weight = gaussian_importance(window) if blend == "gaussian" else np.ones(window, np.float32)
    corners = [
        (z, y, x)
        for z in window_starts(padded.shape[1], window[0], overlap)
        for y in window_starts(padded.shape[2], window[1], overlap)
        for x in window_starts(padded.shape[3], window[2], overlap)
    ]
    total, norm = None, np.zeros(padded.shape[1:], np.float32)
    for first in range(0, len(corners), batch_size):
        group = corners[first : first + batch_size]
        regions = [tuple(slice(c, c + w) for c, w in zip(corner, window)) for corner in group]
        out = np.asarray(predictor(np.stack([padded[(slice(None),) + r] for r in regions])))
        if total is None:
            total = np.zeros((out.shape[1],) + padded.shape[1:], np.float32)
        for scores, region in zip(out, regions):
            total[(slice(None),) + region] += scores * weight
            norm[region] += weight
    total /= norm
    return total[:, : shape[0], : shape[1], : shape[2]]


def _check_args(volume, window, overlap, batch_size, blend):
    volume = np.asarray(volume, dtype=np.float32)
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
    """Wrap ``net`` (logits) as a numpy predictor returning softmax probabilities."""
    fmt = dev.memory_format(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        with dev.autocast(device):
            return net(x).float().softmax(dim=1)

    def predict(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).contiguous(memory_format=fmt)
        with torch.inference_mode():
            probs = run(x)
            if flip_tta:
                for axes in _FLIPS:
                    probs += run(x.flip(axes)).flip(axes)
                probs /= 1 + len(_FLIPS)
        return probs.cpu().numpy()

    return predict


def predict(segmenter: Segmenter, image: np.ndarray, config: InferConfig | None = None) -> Prediction:
    """Dense prediction of ``image`` (Z, Y, X) with a trained segmenter."""
    config = config or InferConfig()
    image = check_image(image)
    if segmenter.config.in_channels != 1:
        raise ValueError(
            f"The model expects {segmenter.config.in_channels} input channels but the image has 1."
        )
    device = dev.resolve_device(config.device)
    net = dev.prepare(segmenter.net, device).eval()
    window = fit_patch(config.window, image.shape, segmenter.config.total_pool)
    probs = sliding_window(
        segmenter.normalization.apply(image)[None],
        torch_predictor(net, device, config.flip_tta),
        window,
        config.overlap,
        config.batch_size,
    )
    return Prediction(_argmax_uint8(probs), _to_uint8(probs))


def _argmax_uint8(probs: np.ndarray, slab: int = 8) -> np.ndarray:
    """Class index per voxel, computed in z-slabs so no int64 volume is ever allocated."""
    labels = np.empty(probs.shape[1:], np.uint8)
    for z in range(0, probs.shape[1], slab):
        labels[z : z + slab] = probs[:, z : z + slab].argmax(axis=0)
    return labels


def _to_uint8(probs: np.ndarray) -> np.ndarray:
    """Probabilities 0..1 to 0..255, in place on the float buffer before the cast."""
    np.multiply(probs, 255, out=probs)
    np.rint(probs, out=probs)
    return probs.astype(np.uint8)
