"""Seconds per training iteration of the default preset by norm, precision and memory format.

The accuracy run showed the net is starved of iterations within a time budget, so this measures
what one iteration costs. Training goes through the public ``trainer.train`` generator on the
synthetic sample; precision and memory format are switched by replacing
``napari_sparseseg.core.device.autocast`` / ``memory_format`` for the run (a diagnostic only).
The first iterations (oneDNN warm-up) are dropped; the median of the rest is reported.

    nice -n 10 .venv/bin/python -m benchmarks.accuracy.steps --iterations 6
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from dataclasses import replace

import numpy as np
import torch

from napari_sparseseg.core import device as dev
from napari_sparseseg.core.config import preset
from napari_sparseseg.core.trainer import prepare, train

from . import data, protocol
from .run import RESULTS


def _fp32(device, enabled=True):
    return contextlib.nullcontext()


def _ncdhw(device):
    return torch.contiguous_format


MODES = {
    "bf16 channels_last_3d": (dev.autocast, dev.memory_format),
    "fp32 channels_last_3d": (_fp32, dev.memory_format),
    "fp32 NCDHW": (_fp32, _ncdhw),
}


def seconds_per_iteration(dataset, annotation, norm: str, mode: str, iterations: int) -> float:
    """Median seconds of one training iteration after two warm-up iterations."""
    chosen = preset("fast")
    model = replace(chosen.model, norm=norm)
    config = replace(chosen.train, iterations=iterations + 2, max_time=None)
    segmenter, images, annotations = prepare([dataset.image], [annotation], model, config, dataset.spacing)
    saved = dev.autocast, dev.memory_format
    dev.autocast, dev.memory_format = MODES[mode]
    try:
        times = [e.elapsed for e in train(segmenter, images, annotations, config) if not e.done]
    finally:
        dev.autocast, dev.memory_format = saved
    return float(np.median(np.diff(times)[1:]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--norms", nargs="+", default=["instance", "batch", "group"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args(argv)
    dataset = data.load("synthetic")
    annotation = protocol.paint(dataset.truth, 3)
    rows = []
    for norm in args.norms:
        for mode in args.modes:
            load = os.getloadavg()[0]
            seconds = seconds_per_iteration(dataset, annotation, norm, mode, args.iterations)
            rows.append({"norm": norm, "mode": mode, "s_per_iteration": round(seconds, 3), "load_1min": load})
            print(f"{norm:9s} {mode:22s} {seconds:6.3f} s/iteration  (load {load:.1f})", flush=True)
    (RESULTS / "steps.json").write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
