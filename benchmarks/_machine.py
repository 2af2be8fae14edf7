"""Machine description and a guard against timing while other processes load the CPU.

On a small shared machine (2 cores) a second busy process does not just halve our
speed: torch's OpenMP threads wait for each other at every parallel region, so one
descheduled thread stalls the other and a training step can become ~10x slower. Timings
are therefore taken only after :func:`wait_quiet` saw the CPUs idle. The one set of helpers
for every benchmark (the accuracy package imports it as ``benchmarks._machine``); it does not
import torch, so the GUI benchmark's napari process can use it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version

# Longest wait for idle CPUs before a timing; scripts set 0 for smoke runs.
MAX_WAIT_S = 300.0


def cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return idle, sum(values)


def idle_fraction(seconds: float = 0.5) -> float:
    """Share of all CPU time that was idle during the next ``seconds`` (1.0 if unknown)."""
    try:
        idle0, total0 = cpu_times()
        time.sleep(seconds)
        idle1, total1 = cpu_times()
    except OSError:
        return 1.0
    return (idle1 - idle0) / max(total1 - total0, 1)


def wait_quiet(min_idle: float = 0.85, max_wait: float | None = None, verbose: bool = True) -> dict:
    """Block until the CPUs are at least ``min_idle`` idle or ``max_wait`` s ran out.

    Returns ``{"quiet": bool, "waited_s": …, "idle_before": …}`` (the idle share last seen).
    """
    start = time.monotonic()
    deadline = start + (MAX_WAIT_S if max_wait is None else max_wait)
    idle = idle_fraction()
    if verbose and idle < min_idle < 1 and time.monotonic() < deadline:
        print(f"# waiting for other processes to leave the CPU (load {os.getloadavg()[0]:.1f})", flush=True)
    while idle < min_idle and time.monotonic() < deadline:
        time.sleep(2.0)
        idle = idle_fraction()
    return {"quiet": idle >= min_idle, "waited_s": round(time.monotonic() - start, 1),
            "idle_before": round(idle, 2)}


@contextlib.contextmanager
def foreign_load():
    """Measure the CPU share used by *other* processes while the ``with`` body runs.

    Yields a dict whose ``"share"`` is set on exit: (all busy CPU time - this process's CPU
    time) / (wall time x cores), 0 = nobody else ran, 1 = every core was taken by others.
    """
    result = {"share": float("nan")}
    tick = os.sysconf("SC_CLK_TCK")
    idle0, total0 = cpu_times()
    own0, wall0 = time.process_time(), time.perf_counter()
    try:
        yield result
    finally:
        idle1, total1 = cpu_times()
        busy = ((total1 - total0) - (idle1 - idle0)) / tick
        wall = time.perf_counter() - wall0
        own = time.process_time() - own0
        result["share"] = max(0.0, busy - own) / max(wall * (os.cpu_count() or 1), 1e-9)


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty when unknown)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def describe(packages=("torch",)) -> dict:
    """Machine facts worth printing next to every number, with the versions of ``packages``.

    Torch is not imported for it: ``threads`` is torch's thread count when torch is loaded, else
    the number of cores (torch's default).
    """
    flags = cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    torch = sys.modules.get("torch")
    return {
        "cpu": cpu_model(),
        "gpu": gpu_model(),
        "cores": os.cpu_count(),
        "isa": ", ".join(isa) or "unknown",
        "torch": package_version("torch"),
        "threads": torch.get_num_threads() if torch else os.cpu_count(),
        "python": platform.python_version(),
        "packages": {name: package_version(name) for name in packages},
        "nice": os.nice(0),
        "load": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def gpu_model() -> str:
    """The first NVIDIA GPU's name from ``nvidia-smi``, or 'none'."""
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    return found.splitlines()[0] if found else "none"


def package_version(name: str) -> str:
    """The installed version of ``name``, or 'missing'."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"
