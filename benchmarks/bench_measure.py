"""Time `measure` on a 512³ mask with 1,000 objects (issue target: a few seconds on 2 cores).

The mask holds 1,000 random ellipsoids (radii 3–12 voxels, two classes, spacing 1 × 0.5 × 0.5)
placed without overlap. The per-class table, the per-object table (6-connected) and the CSV are
timed separately; the result goes to docs/benchmarks.md.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_measure.py --docs
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _docs import replace_section
from _machine import describe, wait_quiet
from napari_sparseseg.core import measure

HEADING = "## Measuring a 512³ mask"
SHAPE, SPACING, OBJECTS = (512, 512, 512), (1.0, 0.5, 0.5), 1000


def make_mask(seed: int = 0) -> np.ndarray:
    """A uint8 mask with OBJECTS separate ellipsoids of classes 1 and 2."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(SHAPE, np.uint8)
    placed = 0
    while placed < OBJECTS:
        radii = rng.uniform(3, 12, 3)
        centre = [int(rng.integers(int(r) + 2, n - int(r) - 2)) for r, n in zip(radii, SHAPE)]
        box = tuple(slice(c - int(r) - 1, c + int(r) + 2) for c, r in zip(centre, radii))
        if mask[box].any():
            continue
        grid = np.ogrid[tuple(slice(-int(r) - 1, int(r) + 2) for r in radii)]
        inside = sum((g / r) ** 2 for g, r in zip(grid, radii)) <= 1
        mask[box][inside] = 1 + placed % 2
        placed += 1
    return mask


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", action="store_true")
    parser.add_argument("--max-wait", type=float, default=120.0)
    args = parser.parse_args(argv)
    mask = make_mask()
    quiet = wait_quiet(max_wait=args.max_wait)["quiet"]
    times, cpu = {}, time.process_time()
    start = time.perf_counter()
    classes = measure.class_table(mask, SPACING)
    times["per class"] = time.perf_counter() - start
    start = time.perf_counter()
    objects = measure.object_table(mask, SPACING)
    times["per object"] = time.perf_counter() - start
    start = time.perf_counter()
    measure.csv_text(objects)
    times["CSV text"] = time.perf_counter() - start
    wall = sum(times.values())
    ratio = (time.process_time() - cpu) / wall
    lines = [f"- {k}: {v:.2f} s" for k, v in times.items()]
    print("\n".join(lines), f"\nobjects: {len(objects)}, classes: {len(classes)}, CPU s / wall s {ratio:.2f}")
    assert len(objects) == OBJECTS, len(objects)
    if args.docs:
        replace_section(HEADING, "\n".join([
            HEADING, "", "```bash", "PYTHONPATH=src .venv/bin/python benchmarks/bench_measure.py --docs",
            "```", "",
            "- Machine: " + ", ".join(f"{k} {v}" for k, v in describe().items()) + f"; quiet CPUs: {quiet}.",
            f"- Mask: {SHAPE[0]}³ uint8, {OBJECTS} ellipsoids (radii 3–12 voxels) in 2 classes, spacing "
            f"{SPACING}; CPU s ÷ wall s {ratio:.2f}.", *lines,
            f"- Total {wall:.1f} s (target: a few seconds on 2 cores).",
        ]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
