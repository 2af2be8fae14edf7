"""Peak memory of one interior chunk of the chunked prediction, default preset (not run by CI).

:mod:`bench_dask` bounds memory with a tiny plain U-Net. With the default preset every chunk
also holds its filter features (52 channels stored as float16, and the trees' logits) over the chunk plus
the windows' halo, which dominates; the filters' own halo (181 voxels for the structure tensor at
σ 20) is read and smoothed one channel at a time. This computes exactly one chunk that has neighbours on every
side (the middle one of 3 x 3 x 3) of a float32 zarr volume, in a fresh process, and reports
the process's peak RSS against its RSS before the chunk (model loaded, nothing computed)::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_chunk_memory.py --chunks 128,256,256
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import zarr

from napari_sparseseg.core import trainer
from napari_sparseseg.core.chunked import plan_chunks, probabilities_dask
from napari_sparseseg.core.config import preset
from napari_sparseseg.core.filters import STORED, n_features

GIB = 2**30


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", default="128,256,256", help="chunk edge z,y,x (the default's)")
    args = parser.parse_args(argv)
    asked = tuple(int(c) for c in args.chunks.split(","))
    p = preset("fast")
    rng = np.random.default_rng(0)
    small = rng.normal(size=(32, 64, 64)).astype(np.float32)
    segmenter = trainer.new_segmenter(p.model, [small], 3, (1.0, 1.0, 1.0))
    rows = rng.normal(size=(3000, segmenter.net.stem.out_channels)).astype(np.float32)
    list(segmenter.net.pointwise.fit(rows, rng.integers(0, 3, 3000)))  # trees of random splits: same work
    # chunks grow to at least the window plus the filters' halo
    chunk = tuple(g[0] for g in plan_chunks(tuple(4 * c for c in asked), segmenter, p.infer, asked))
    shape = tuple(3 * c for c in chunk)
    with tempfile.TemporaryDirectory() as tmp:
        store = zarr.open(str(Path(tmp) / "v.zarr"), mode="w", shape=shape, chunks=chunk, dtype="f4")
        for z in range(0, shape[0], chunk[0]):
            store[z : z + chunk[0]] = rng.normal(size=(chunk[0], *shape[1:])).astype(np.float32)
        grid = plan_chunks(shape, segmenter, p.infer, chunk)
        probs = probabilities_dask(store, segmenter, p.infer, chunk)
        before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        probs.blocks[0, 1, 1, 1].compute(scheduler="synchronous")
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    depth = [w - 1 + h for w, h in zip(p.infer.window, segmenter.net.stem.halo())]
    block = [c + 2 * d for c, d in zip(chunk, depth)]
    windows = [c + 2 * (w - 1) for c, w in zip(chunk, p.infer.window)]
    channels = n_features(p.model.filters) + segmenter.n_classes
    print(json.dumps({
        "asked": asked, "chunk": chunk, "volume": shape, "grid_ok": all(len(g) == 3 for g in grid),
        "block_with_halo": block, "features_over": windows,
        "feature_gib": round(np.prod(windows) * channels * STORED().itemsize / GIB, 2),
        "rss_before_gib": round(before / GIB, 2), "peak_rss_gib": round(peak / GIB, 2),
        "chunk_gib": round((peak - before) / GIB, 2), "seconds": round(seconds, 1),
    }))


if __name__ == "__main__":
    main()
