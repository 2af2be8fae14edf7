"""Run each method as a user would, as one command from files to a mask on disk, and time it.

The wall time covers the whole command (interpreter and torch start, reading, training,
prediction, writing); peak RAM is the child's maximum resident set size and ``cpu_s`` its user +
system CPU time, both from ``os.wait4``. ``cpu_s / wall_s`` near the thread count means the
command had the cores to itself; far below it means another process took them (on 2 cores a
second busy process makes torch's OpenMP threads wait for each other, ~10x slower steps).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from napari_sparseseg.core.events import KEPT_FIRST

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "sparseseg"
# the installed command, or the package run as a module where it is only on PYTHONPATH (benchmarks/gpu.sh)
SPARSESEG = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "napari_sparseseg"]
_PREDICTED = re.compile(r"predicted ([\d,]+) voxels in ([\d.]+) s")
_ITERATION = re.compile(r"it (\d+)\s+loss \S+\s+(\d+) s")


def timed(command: list[str]) -> dict:
    """Run ``command``; return wall seconds, peak RSS (MiB), exit code, stdout and stderr."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {
            "wall_s": round(wall, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
            "returncode": proc.returncode,
            "stdout": out.read(),
            "stderr": err.read(),
        }


def _usage(run: dict) -> dict:
    return {key: run[key] for key in ("wall_s", "cpu_s", "peak_rss_mib")}


def _check(run: dict, command: list[str]) -> None:
    if run["returncode"] != 0:
        tail = run["stderr"][-2000:]
        raise RuntimeError(f"{' '.join(command)} exited {run['returncode']}:\n{tail}")


def net(
    image: Path,
    annotations: Path,
    output: Path,
    max_time: float,
    preset: str = "fast",
    extra: tuple[str, ...] = (),
) -> dict:
    """``sparseseg segment IMAGE ANNOTATIONS --output MASK --max-time T --preset P``, timed."""
    command = [
        *SPARSESEG,
        "segment",
        str(image),
        str(annotations),
        "--output",
        str(output),
        "--max-time",
        f"{max_time:g}",
        "--preset",
        preset,
        *extra,
    ]
    run = timed(command)
    _check(run, command)
    found = {"command": " ".join(command[1:]), **_usage(run)}
    predicted = _PREDICTED.findall(run["stderr"])
    if predicted:
        voxels, seconds = int(predicted[-1][0].replace(",", "")), float(predicted[-1][1])
        found.update(infer_s=seconds, infer_vox_per_s=round(voxels / max(seconds, 1e-3)))
    iterations = _ITERATION.findall(run["stderr"])
    if iterations:
        found.update(iterations=int(iterations[-1][0]), train_s=float(iterations[-1][1]))
    found["kept_trees"] = KEPT_FIRST in run["stderr"]  # the U-Net's correction was dropped (core.judge)
    return found


def forest(image: Path, annotations: Path, output: Path, trees: int = 100, jobs: int = 2) -> dict:
    """``python -m benchmarks.accuracy.forest IMAGE ANNOTATIONS --output MASK``, timed."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.accuracy.forest",
        str(image),
        str(annotations),
        "--output",
        str(output),
        "--trees",
        str(trees),
        "--jobs",
        str(jobs),
    ]
    run = timed(command)
    _check(run, command)
    stages = json.loads(run["stdout"].strip().splitlines()[-1])
    found = {"command": " ".join(command[2:]), **_usage(run)}
    found.update({k: round(v, 2) if isinstance(v, float) else v for k, v in stages.items()})
    return found
