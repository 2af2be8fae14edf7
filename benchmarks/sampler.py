"""Milliseconds to draw one training batch of the default preset's shape, by share of turned patches.

The default trained on 40 float16 channels (37 filter features and three classes' tree logits;
55 since the structure tensors of 2026-12-07, not measured here);
every batch holds two 32×64×64 patches, half of them turned by a free yx angle and scaled, which
resamples a box of every channel. This times the sampler alone on random features of a
160 × 192 × 160 volume (MNI's size) with K = 3 painted planes per axis, beside the bf16 matmul of
the same run:

    PYTHONPATH=src .venv/bin/python benchmarks/sampler.py
"""

from __future__ import annotations

import time

import numpy as np

from accuracy.protocol import paint
from bench_core import matmul_gflops
from napari_sparseseg.core.sampling import PatchSampler, annotation_to_target

SHAPE, CHANNELS, PATCH, BATCHES = (160, 192, 160), 40, (32, 64, 64), 60


def _painted(k: int = 3) -> np.ndarray:
    """Targets of a two-class volume with ``k`` planes per axis painted as the accuracy runs paint."""
    truth = np.zeros(SHAPE, np.uint8)
    truth[:, :, SHAPE[2] // 2 :] = 1
    return annotation_to_target(paint(truth, k))


def batch_ms(features: np.ndarray, target: np.ndarray, rotate: float, elastic: float = 0.0) -> float:
    """Mean milliseconds per batch of two over :data:`BATCHES` batches (after one to warm up): with
    a share of turned patches a batch holds none, one or two of them, so the mean is what training
    pays."""
    sampler = PatchSampler([features], [target], PATCH, (1.0, 1.0, 1.0), np.random.default_rng(0),
                           rotate=rotate, elastic=elastic)
    sampler.sample(2)
    times = []
    for _ in range(BATCHES):
        start = time.perf_counter()
        sampler.sample(2)
        times.append(time.perf_counter() - start)
    return float(np.mean(times) * 1000)


def main() -> None:
    features = np.random.default_rng(0).standard_normal((CHANNELS, *SHAPE), np.float32).astype(np.float16)
    target = _painted()
    print(f"bf16 matmul: {matmul_gflops():.0f} GFLOP/s")
    for rotate in (0.0, 0.5, 1.0):
        print(f"turned share {rotate}: {batch_ms(features, target, rotate):.0f} ms per batch of two")


if __name__ == "__main__":
    main()
