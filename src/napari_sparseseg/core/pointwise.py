"""The first training stage: the per-voxel classifier on filter features of every painted voxel.

A patch of 32x64x64 supervises only the few percent of its voxels that are painted; here every
sample is a painted voxel, so a few seconds of training see each painted voxel many times and give
an answer at the level of a random forest on the same features. The U-Net stage then starts from
that answer (its last layer starts at zero), sees the classifier's probabilities as inputs and
learns the spatial corrections (:class:`.model.UNet3D`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from . import device as dev

MAX_VOXELS = 1_000_000  # painted voxels kept for this stage (a random subset beyond)
BATCH = 2048  # many small steps beat few large ones per second (measured on CT and MNI)


def painted_index(targets, rng, max_voxels: int = MAX_VOXELS) -> list[np.ndarray]:
    """Flat indices of (a random subset of at most ``max_voxels``) painted voxels per target
    (Z, Y, X), -1 where unpainted; the same share of every target."""
    index = [np.flatnonzero(t.ravel() >= 0) for t in targets]
    keep = min(1.0, max_voxels / max(1, sum(i.size for i in index)))
    if keep < 1.0:
        index = [np.sort(rng.choice(i, int(i.size * keep), replace=False)) for i in index]
    return index


def painted_samples(volumes, targets, rng, max_voxels: int = MAX_VOXELS, index=None):
    """Features (N, C) float32 and classes (N,) int64 of (a subset of) the painted voxels.

    ``volumes`` are (C, Z, Y, X) feature volumes, ``targets`` (Z, Y, X) with -1 where unpainted;
    ``index`` the voxels to take (default: :func:`painted_index`).
    """
    index = painted_index(targets, rng, max_voxels) if index is None else index
    feats = [v.reshape(v.shape[0], -1)[:, i].T.astype(np.float32) for v, i in zip(volumes, index)]
    labels = [t.ravel()[i].astype(np.int64) for t, i in zip(targets, index)]
    return tuple(torch.from_numpy(np.concatenate(a)) for a in (feats, labels))


def per_voxel(head, x: torch.Tensor) -> torch.Tensor:
    """``head`` (1x1x1 convolutions and ReLUs) applied to rows ``x`` (N, C) as matrix products:
    the same numbers as the convolutions, at about twice the steps per second."""
    for layer in head:
        conv = isinstance(layer, torch.nn.Conv3d)
        x = F.linear(x, layer.weight.flatten(1), layer.bias) if conv else F.relu(x)
    return x


@torch.no_grad()
def volume_logits(head, volume: np.ndarray, device: torch.device, rows: int = 1 << 16) -> np.ndarray:
    """``head``'s logits (K, Z, Y, X) float32 for a feature volume (C, Z, Y, X), ``rows`` voxels
    at a time, with the autocast the U-Net stage uses."""
    flat = volume.reshape(volume.shape[0], -1)
    out = np.empty((head[-1].out_channels, flat.shape[1]), np.float32)
    for lo in range(0, flat.shape[1], rows):
        x = torch.from_numpy(flat[:, lo : lo + rows].T).to(device).float()
        with dev.autocast(device):
            out[:, lo : lo + rows] = per_voxel(head, x).float().T.cpu().numpy()
    return out.reshape(-1, *volume.shape[1:])


def train_pointwise(head, features, labels, steps: int, seconds: float, learning_rate: float,
                    rng) -> Iterator[float]:
    """Fit the 1x1x1-convolution classifier ``head`` on ``features`` (N, C); yield every step's loss.

    The layers run as matrix products on the rows (:func:`per_voxel`) with a fused AdamW: about
    2.5 times the steps per second of 1x1x1 convolutions, and the classifier is still learning
    at 25 s (abdominal CT). Batches draw painted voxels uniformly, so classes keep the proportions
    the user painted (as a random forest sees them). The learning rate follows a cosine from
    ``learning_rate`` to zero over ``steps`` or ``seconds``, whichever runs out first.
    """
    head.requires_grad_(True)  # the U-Net stage of an earlier round froze it
    optim = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=1e-4, fused=True)
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    head.train()
    start, step, used = time.perf_counter(), 0, 0.0
    while used < 1.0:
        for group in optim.param_groups:
            group["lr"] = learning_rate * 0.5 * (1 + math.cos(math.pi * used))
        pick = torch.randint(labels.numel(), (BATCH,), generator=gen)
        loss = F.cross_entropy(per_voxel(head, features[pick]), labels[pick])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        step += 1
        used = max(step / steps, (time.perf_counter() - start) / seconds)
        yield float(loss.detach())
