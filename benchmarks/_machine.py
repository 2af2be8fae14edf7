"""Machine description and a guard against timing while other processes load the CPU.

On a small shared machine (2 cores) a second busy process does not just halve our
speed: torch's OpenMP threads wait for each other at every parallel region, so one
descheduled thread stalls the other and a training step can become ~10x slower. Timings
are therefore taken only after :func:`wait_quiet` saw the CPUs idle.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time

import torch

# Longest wait for idle CPUs before a timing; scripts set 0 for smoke runs.
MAX_WAIT_S = 300.0


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return idle, sum(values)


def idle_fraction(seconds: float = 0.5) -> float:
    """Share of all CPU time that was idle during the next ``seconds`` (1.0 if unknown)."""
    try:
        idle0, total0 = _cpu_times()
        time.sleep(seconds)
        idle1, total1 = _cpu_times()
    except OSError:
        return 1.0
    return (idle1 - idle0) / max(total1 - total0, 1)


def wait_quiet(min_idle: float = 0.85, max_wait: float | None = None, verbose: bool = True) -> bool:
    """Block until the CPUs are at least ``min_idle`` idle; False if ``max_wait`` ran out."""
    deadline = time.monotonic() + (MAX_WAIT_S if max_wait is None else max_wait)
    warned = False
    while time.monotonic() < deadline:
        if idle_fraction() >= min_idle:
            return True
        if verbose and not warned:
            print(
                f"# waiting for other processes to leave the CPU (load {os.getloadavg()[0]:.1f})", flush=True
            )
            warned = True
        time.sleep(2.0)
    return False


@contextlib.contextmanager
def foreign_load():
    """Measure the CPU share used by *other* processes while the ``with`` body runs.

    Yields a dict whose ``"share"`` is set on exit: (all busy CPU time - this process's CPU
    time) / (wall time x cores), 0 = nobody else ran, 1 = every core was taken by others.
    """
    result = {"share": float("nan")}
    tick = os.sysconf("SC_CLK_TCK")
    idle0, total0 = _cpu_times()
    own0, wall0 = time.process_time(), time.perf_counter()
    try:
        yield result
    finally:
        idle1, total1 = _cpu_times()
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


def describe() -> dict:
    """Machine facts worth printing next to every number."""
    flags = cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "isa": ", ".join(isa) or "unknown",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
