"""How much the forest gains from larger filter scales: the fair baseline for large-σ engines (not run by CI).

The engine's filter bank reaches σ 40 since 2026-12-05. The benchmark's forest (:mod:`.forest`) keeps
σ 1, 2.5, 5; ilastik lets a user tick scales up to σ 10 (its largest preset). This scores the forest
in-process with other scale sets on the same painted planes, so a table can say how much of the
engine's lead comes from the scales and how much from the trees and the U-Net::

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.forest_scales mni colin --k 3

Each row is appended to ``benchmarks/results/accuracy/forest_scales.jsonl``.
"""

from __future__ import annotations

import argparse
import time

from . import data, protocol
from .forest import filter_bank, fit_predict
from .run import RESULTS, machine
from .scales import screen

LOG = RESULTS / "forest_scales.jsonl"
SCALES = {
    "σ 1, 2.5, 5 (benchmark forest)": (1.0, 2.5, 5.0),
    "σ 0.7 … 10 (ilastik's presets)": (0.7, 1.0, 1.6, 3.5, 5.0, 10.0),
    "σ 1 … 40 (the engine's)": (1.0, 2.5, 5.0, 10.0, 20.0, 40.0),
}


def run(name: str, scales: str, k: int = 3) -> dict:
    """Forest with the scale set ``scales`` on dataset ``name``, K planes per axis; scored as :mod:`.run`."""
    dataset = data.load(name)
    annotation = protocol.paint(dataset.truth, k)
    start = time.perf_counter()
    features = filter_bank(dataset.image, dataset.spacing, SCALES[scales])
    labels, timing = fit_predict(features, annotation)
    score = protocol.score(labels, dataset.truth, annotation == 0, dataset.class_names)
    return {"dataset": name, "scales": scales, "k": k, "seconds": round(time.perf_counter() - start, 1),
            "fit_s": round(timing["fit_s"], 1), **score, "date": machine()["date"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", choices=data.NAMES)
    parser.add_argument("--scales", nargs="+", choices=list(SCALES), default=list(SCALES)[1:],
                        help="default: the larger sets (the benchmark forest's is the v2 rows' forest)")
    parser.add_argument("--k", type=int, default=3, help="painted planes per axis")
    args = parser.parse_args(argv)
    return screen(run, LOG, args.datasets, args.scales, args.k)


if __name__ == "__main__":
    raise SystemExit(main())
