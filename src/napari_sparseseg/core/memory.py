"""What training needs in memory, checked before it starts.

Training keeps the network's inputs of every voxel of the volumes it learns from
(:func:`.trainer.training_inputs`); a volume that would not fit in the free memory is refused with
one sentence instead of being killed halfway (benchmarks/bench_train_memory.py measures the real
peak against :func:`training_bytes`).
"""

from __future__ import annotations

import numpy as np

from .filters import STORED

# bytes per voxel in training besides the network's inputs (check_memory): the image and its
# normalised copy, the targets, the filters' smoothing buffers and one scale's float32 features
TRAIN_OVERHEAD = 48
TRAIN_BASE = 1 << 30  # bytes whatever the volume: torch, the model, one slab's filter intermediates


def training_bytes(segmenter, images) -> int:
    """About the memory training needs for ``images``: the network's inputs of every voxel
    (:func:`.trainer.training_inputs`; with the default preset 52 filter features and the trees' logits per
    class, as float16), :data:`TRAIN_OVERHEAD` bytes per voxel besides and :data:`TRAIN_BASE`."""
    net, voxels = segmenter.net, sum(im.size for im in images)
    if net.stem is None:  # the normalised image, the image and the targets
        return TRAIN_BASE + voxels * (4 * net.stage_channels + 12)
    return TRAIN_BASE + voxels * (STORED().itemsize * net.stage_channels + TRAIN_OVERHEAD)


def check_memory(segmenter, images, names) -> None:
    """Raise a ValueError naming the largest image when training would need more than the free memory."""
    import psutil

    need, free = training_bytes(segmenter, images), psutil.virtual_memory().available
    if need > free:
        k = int(np.argmax([im.size for im in images]))
        shape = " × ".join(str(n) for n in images[k].shape)
        more = f" and {len(images) - 1} more image(s)" if len(images) > 1 else ""
        raise ValueError(
            f"Training on {names[k]} ({shape} voxels){more} needs about {need / 1e9:.1f} GB of memory but "
            f"{free / 1e9:.1f} GB are free: crop it to the region you paint, close other programs, or "
            "train the plain preset (the image alone, no filter features)."
        )
