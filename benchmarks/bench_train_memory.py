"""Peak memory of training the default preset on one volume, against the check made before it.

Training keeps the network's inputs of every voxel (52 filter features and the trees' logits per
class). :func:`napari_sparseseg.core.memory.check_memory` refuses a run whose estimate
(:func:`~napari_sparseseg.core.memory.training_bytes`) exceeds the free memory; this measures
the real peak of a run in a fresh process, so the estimate can be compared with it (not run by
CI)::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_train_memory.py --shape 160,256,256

The image is noise with three painted planes per axis of three classes (the trees and the U-Net
do the same work on any data); training stops after a few U-Net iterations, when everything the
run keeps has been allocated.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import psutil

from napari_sparseseg.core import memory, trainer
from napari_sparseseg.core.config import preset, replace

GB = 1e9


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="160,256,256", help="volume z,y,x")
    args = parser.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split(","))
    before = psutil.Process().memory_info().rss  # the estimate counts the image and its annotation
    rng = np.random.default_rng(0)
    image = rng.normal(size=shape).astype(np.float32)
    annotation = np.zeros(shape, np.uint8)
    for axis in range(3):
        for k in (1, 2, 3):
            plane = [slice(None)] * 3
            plane[axis] = shape[axis] * k // 4
            annotation[tuple(plane)] = rng.integers(1, 4, annotation[tuple(plane)].shape)
    p = preset("fast")
    config = replace(p.train, iterations=3, max_time=None)
    segmenter, images, annotations = trainer.prepare([image], [annotation], p.model, config)
    estimate = memory.training_bytes(segmenter, images)
    started = time.perf_counter()
    list(trainer.train(segmenter, images, annotations, config))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    used = peak - before
    print(json.dumps({
        "shape": shape, "voxels": image.size, "channels": segmenter.net.stage_channels,
        "rss_before_gb": round(before / GB, 2), "peak_rss_gb": round(peak / GB, 2),
        "training_gb": round(used / GB, 2), "bytes_per_voxel": round(used / image.size),
        "estimate_gb": round(estimate / GB, 2), "estimate_over_training": round(estimate / used, 2),
        "seconds": round(seconds, 1),
    }))


if __name__ == "__main__":
    main()
