"""Where a dask computation runs: local threads, or a dask.distributed cluster.

:func:`runner` yields a :class:`Runner` whose :meth:`~Runner.compute` runs a dask object with a
progress bar (or a progress callback) and returns its result. Torch threads are set so that
workers do not oversubscribe the cores: each dask thread gets ``cpus // dask threads on that
machine`` torch threads (at least 1), e.g. 1 each for 2 worker processes on 2 cores.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dask
from dask.callbacks import Callback
from dask.diagnostics import ProgressBar

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc malloc.h)


class Stopped(Exception):
    """The user asked to stop; raised from the scheduler between tasks."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    with contextlib.suppress(AttributeError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def limit_heap_growth(threshold: int = 8 << 20) -> bool:
    """Make glibc serve allocations above ``threshold`` bytes with mmap, always (Linux only).

    glibc raises its mmap threshold after each large free, so chunk-sized arrays then come from
    the heap and fragment it: peak RSS crept up with the number of chunks (725 -> 844 MiB from
    32 to 128 chunks here); with a fixed threshold it stayed flat (~430 MiB). Returns whether it applied.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(option, threshold) == 1 for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


def torch_threads(dask_threads: int, cpus: int | None = None) -> int:
    """Torch intra-op threads per dask thread so that together they fill, not exceed, the cores."""
    return max(1, (cpus or available_cpus()) // max(1, dask_threads))


@dataclass
class Runner:
    """Runs dask objects on local threads (``client`` None) or on a distributed client."""

    client: object | None = None
    threads: int = 1
    progress: bool = True

    @property
    def description(self) -> str:
        if self.client is None:
            return f"{self.threads} local thread(s)"
        workers = self.client.scheduler_info()["workers"]
        return f"dask.distributed at {self.client.scheduler.address} ({len(workers)} worker(s))"

    def compute(self, job, on_progress: Callable | None = None, should_stop: Callable | None = None):
        """Compute ``job``; ``on_progress(done, total)`` and ``should_stop()`` apply to local threads."""
        if self.client is not None:
            return self._distributed(job)
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(torch_threads(self.threads))
        limit_heap_growth()
        try:
            with contextlib.ExitStack() as stack:
                if on_progress or should_stop:
                    stack.enter_context(_Callbacks(on_progress, should_stop))
                elif self.progress:
                    stack.enter_context(ProgressBar(minimum=1, dt=0.5, out=sys.stderr))
                return dask.compute(job, scheduler="threads", num_workers=self.threads)[0]
        finally:
            torch.set_num_threads(before)

    def _distributed(self, job):
        from distributed import progress

        futures = self.client.compute(job)
        if self.progress:
            progress(futures)
            sys.stdout.write("\n")
        return self.client.gather(futures)


@contextlib.contextmanager
def runner(scheduler: str | None = None, cluster: str | None = None, workers: int | None = None,
           progress: bool = True) -> Iterator[Runner]:
    """A :class:`Runner` for the command line's ``--scheduler``/``--cluster``/``--workers``.

    Parameters
    ----------
    scheduler : str, optional
        ``'threads'`` (default) or the address of a running dask scheduler (``tcp://host:8786``).
    cluster : str, optional
        ``'local:N'`` starts a ``distributed.LocalCluster`` of N single-threaded worker processes.
    workers : int, optional
        Threads for the local threaded scheduler (default: all usable CPUs).
    progress : bool
        Show a progress bar on stderr/stdout.
    """
    if scheduler and cluster:
        raise ValueError("Give either --scheduler or --cluster, not both.")
    if cluster:
        with _local_cluster(cluster) as client:
            yield _attached(client, progress)
    elif scheduler and scheduler != "threads":
        with _connect(scheduler) as client:
            yield _attached(client, progress)
    else:
        if workers is not None and workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}.")
        yield Runner(None, workers or available_cpus(), progress)


def parse_cluster(spec: str) -> int:
    """``'local:N'`` -> N, or a ValueError saying what is accepted."""
    kind, _, count = spec.partition(":")
    if kind != "local" or not count.isdigit() or int(count) < 1:
        raise ValueError(f"--cluster {spec!r} is not understood; use local:N with N worker processes, "
                         "e.g. local:2.")
    return int(count)


@contextlib.contextmanager
def _local_cluster(spec: str):
    from distributed import Client, LocalCluster

    count = parse_cluster(spec)
    with LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def _connect(address: str):
    from distributed import Client

    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as err:
        raise ValueError(f"Cannot reach a dask scheduler at {address} ({str(err)[:100]}); start one "
                         "('dask scheduler' and 'dask worker') or use --cluster local:N.") from err
    with client:
        yield client


def _attached(client, progress: bool) -> Runner:
    """Set torch threads on every worker from the dask threads its machine runs; wrap the client."""
    workers = client.scheduler_info()["workers"].values()
    per_host = Counter()
    for info in workers:
        per_host[info["host"]] += info["nthreads"]
    client.run(_set_worker_threads, dict(per_host))
    return Runner(client, sum(info["nthreads"] for info in workers), progress)


def _set_worker_threads(per_host: dict, dask_worker=None) -> int:
    """Runs on each worker (``client.run``): torch threads = its CPUs / dask threads on its host."""
    import torch
    from distributed.comm import get_address_host

    threads = torch_threads(per_host.get(get_address_host(dask_worker.address), 1))
    limit_heap_growth()
    torch.set_num_threads(threads)
    return threads


class _Callbacks(Callback):
    """Task counts to ``on_progress(done, total)``; ``should_stop()`` ends the run between tasks."""

    def __init__(self, on_progress, should_stop):
        super().__init__()
        self.on_progress, self.should_stop, self.done, self.total = on_progress, should_stop, 0, 1

    def _start_state(self, dsk, state):
        self.total = max(1, sum(len(state[k]) for k in ("ready", "waiting", "running", "finished")))

    def _pretask(self, key, dsk, state):
        if self.should_stop is not None and self.should_stop():
            raise Stopped

    def _posttask(self, key, result, dsk, state, worker_id):
        self.done += 1
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)
