"""Whether the U-Net has begun to improve on its first stage, judged on the voxels it learns from.

A model with a first stage (the trees) starts its U-Net at the trees' answer (the last layer is
zero) and trains a correction. A budget that ends early can leave the correction still worse than
no correction: at 60 s (K = 3) the nuclei ended at 0.9875 against their trees' 0.9898 and MNI at
0.9794 against 0.9806. No truth outside the painted voxels is known while training, but each
iteration scores a batch of painted voxels before it learns from them. Over the last quarter of
the U-Net's stage, :class:`Judge` counts how the U-Net and the first stage label those voxels (the
first stage's answer there is out-of-fold: trees that never saw those planes). Where the U-Net's
mean foreground Dice is not above the first stage's, the round keeps the first stage's answer
(docs/accuracy.md, "Keeping the trees' answer until the U-Net improves on it").

The U-Net has seen most of those voxels in earlier batches, so the judge favours it: it keeps the
trees only where the U-Net does not improve on them even there. With ``TrainConfig.judge_holdout``
the U-Net never learns from a share of the painted voxels, and the judge counts those alone.
"""

from __future__ import annotations

import numpy as np
import torch

from .metrics import from_confusion
from .sampling import held_apart

LAST = 0.25  # the judged share of the U-Net's stage: its last quarter


class Judge:
    """Confusion counts (rows predicted, columns true) of the U-Net's and the first stage's answers
    on the painted voxels of the judged batches."""

    def __init__(self, n_classes: int, held_out: bool = False):
        self.counts = np.zeros((2, n_classes, n_classes), np.int64)
        self.held_out = held_out  # whether it counts voxels held out of the U-Net's loss

    def add(self, logits: torch.Tensor, start: torch.Tensor, y: torch.Tensor) -> None:
        """Count a batch: the U-Net's ``logits`` and the first stage's ``start`` (B, K, Z, Y, X)
        against targets ``y`` (B, Z, Y, X), -1 where unpainted, k + K where class k is held out
        (:meth:`.sampling.PatchSampler.hold_out`): only those if :attr:`held_out`, else the rest."""
        n = self.counts.shape[1]
        y = held_apart(y, n)[1 if self.held_out else 0]
        painted = y >= 0
        truth = y[painted].long()
        for row, answer in zip(self.counts, (logits, start)):
            guess = answer.detach().argmax(1)[painted].long()
            row += torch.bincount(guess * n + truth, minlength=n * n).reshape(n, n).cpu().numpy()

    def margin(self) -> float:
        """The U-Net's mean foreground Dice minus the first stage's on the judged voxels."""
        net, first = (from_confusion(c)["mean_foreground"]["dice"] for c in self.counts)
        return net - first

    def improves(self) -> bool:
        """Whether the U-Net's Dice beats the first stage's (True when nothing was judged: then
        there is no evidence against the U-Net)."""
        return not self.counts.any() or self.margin() > 0
