"""Sparse loss: cross-entropy and Dice restricted to painted voxels.

Targets use -1 for unlabeled voxels (annotation 0) and ``k`` for class ``k``
(annotation ``k + 1``). The cross-entropy is torch's own with ``ignore_index``;
the Dice term multiplies by the painted mask. A patch without any painted voxel
gives a loss of exactly zero (no NaN).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = -1


def class_weights(annotations, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights over the painted voxels, mean 1 over painted classes.

    Frequent background is weighted down and rare structures up, as in Çiçek et al.;
    classes with no painted voxel get weight 0.
    """
    counts = np.zeros(n_classes, np.float64)
    for ann in annotations:
        counts += np.bincount(np.asarray(ann).ravel(), minlength=n_classes + 1)[1 : n_classes + 1]
    present = counts > 0
    weights = np.zeros(n_classes, np.float64)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def masked_cross_entropy(logits, target, weight=None) -> torch.Tensor:
    """Class-weighted CE averaged over painted voxels (weight-normalised); 0 if none."""
    total = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=IGNORE, reduction="sum")
    valid = target != IGNORE
    if weight is None:
        norm = valid.sum()
    else:
        norm = weight[target.clamp(min=0)][valid].sum()
    return total / norm.clamp(min=1e-6)


def masked_dice(logits, target) -> torch.Tensor:
    """1 - mean soft Dice over the classes painted in this batch; 0 if nothing is painted."""
    probs = logits.float().softmax(dim=1)
    valid = (target != IGNORE).unsqueeze(1)
    onehot = F.one_hot(target.clamp(min=0), probs.shape[1]).movedim(-1, 1) * valid
    probs = probs * valid
    dims = (0, 2, 3, 4)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    painted = onehot.sum(dims) > 0
    if not painted.any():
        return probs.sum() * 0.0
    dice = (2 * inter[painted] + 1e-5) / (denom[painted] + 1e-5)
    return 1.0 - dice.mean()


def sparse_loss(logits, target, weight=None, dice_weight: float = 0.5) -> torch.Tensor:
    """``alpha * Dice + (1 - alpha) * CE`` on painted voxels; ``alpha = dice_weight``.

    Parameters
    ----------
    logits : Tensor (B, K, Z, Y, X)
    target : LongTensor (B, Z, Y, X) with -1 for unlabeled voxels
    weight : Tensor (K,) or None
        Per-class CE weights, e.g. from :func:`class_weights`.
    """
    ce = masked_cross_entropy(logits, target, weight)
    if dice_weight == 0:
        return ce
    return dice_weight * masked_dice(logits, target) + (1 - dice_weight) * ce
