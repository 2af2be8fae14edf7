"""Dice of one saved model under different sliding-window settings (window, overlap, TTA).

A diagnostic: with per-window statistics (instance norm) the prediction of a voxel depends on
the window around it, so the same model can score differently with other windows.

    .venv/bin/sparseseg train IMAGE ANNOTATIONS --output model.pt --iterations 60
    nice -n 10 .venv/bin/python -m benchmarks.accuracy.windows model.pt --dataset nuclei --k 3
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from napari_sparseseg.core import checkpoint
from napari_sparseseg.core.config import InferConfig
from napari_sparseseg.core.inference import predict

from . import data, protocol
from .run import RESULTS

SETTINGS = (
    ("32x64x64, overlap 0.25 (default)", (32, 64, 64), 0.25, False),
    ("32x64x64, overlap 0.5", (32, 64, 64), 0.5, False),
    ("32x64x64, overlap 0.25, mirror TTA", (32, 64, 64), 0.25, True),
    ("64x128x128, overlap 0.25", (64, 128, 128), 0.25, False),
    ("whole volume in one window", (512, 512, 512), 0.0, False),
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--dataset", choices=data.NAMES, default="nuclei")
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args(argv)
    dataset = data.load(args.dataset)
    unpainted = protocol.paint(dataset.truth, args.k) == 0
    segmenter = checkpoint.load(args.model)
    rows = []
    for label, window, overlap, tta in SETTINGS:
        config = replace(InferConfig(), window=window, overlap=overlap, flip_tta=tta)
        start = time.perf_counter()
        labels = predict(segmenter, dataset.image, config).labels
        seconds = round(time.perf_counter() - start, 1)
        score = protocol.score(labels, dataset.truth, unpainted, dataset.class_names)
        rows.append({"setting": label, "seconds": seconds, **score})
        print(f"{label:38s} {seconds:6.1f} s  mean fg Dice {score['mean_fg_dice']:.4f}", flush=True)
    out = RESULTS / f"windows_{args.dataset}_{Path(args.model).name.split('.')[0]}.json"
    out.write_text(json.dumps({"model": str(args.model), "k": args.k, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
