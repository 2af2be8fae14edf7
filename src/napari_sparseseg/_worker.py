"""Jobs in a child process, so napari's interpreter stays free: process management only.

The GUI owns a :class:`Worker`. It submits a request from :mod:`.core.events` and polls the
events the job sends with :meth:`Worker.poll` from a Qt timer. The child (started with ``spawn``,
at lower priority) runs :func:`.core.jobs.run` and imports torch; the GUI process never does.
The dock starts the child when it opens (:meth:`Worker.warm`): it imports the engine while the
user paints, so the first Train answers as soon as later ones. A
crash or out-of-memory in the child ends only the child: ``poll`` reports it as :class:`Failed`,
and the GUI keeps its annotations and the last model bytes it received. Nothing here touches Qt
or napari.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import sys

from .core.events import Failed, Finished


class Worker:
    """Owns the child process and the queues to and from it."""

    def __init__(self):
        self._ctx = mp.get_context("spawn")
        self._process = None
        self.busy = False

    def submit(self, request) -> None:
        """Start ``request`` in the child (starting the child if needed)."""
        if self.busy:
            raise ValueError("The model is still busy; press Stop or wait for it to finish.")
        self._ensure_child()
        self._stop.clear()
        self._commands.put(request)
        self.busy = True

    def warm(self) -> None:
        """Start the child now, without a job: it imports the engine (:func:`serve`) before the first
        request arrives, which then starts seconds sooner. While a job runs this does nothing: a
        child that died meanwhile is for :meth:`poll` to report, not to be replaced unseen."""
        if not self.busy:
            self._ensure_child()

    def set_view(self, axis: int, index: int) -> None:
        """Tell a training child which plane to preview next."""
        if self.busy:
            self._commands.put(("view", int(axis), int(index)))

    def stop(self) -> None:
        """Ask the running job to stop after its current iteration."""
        if self._process is not None:
            self._stop.set()

    def poll(self, limit: int = 100) -> list:
        """Events that arrived since the last call (never blocks)."""
        events = []
        while self._process is not None and len(events) < limit:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            events.append(event)
            if isinstance(event, Finished):
                self.busy = False
        if self.busy and not self._process.is_alive() and not events:
            events += self._crashed()
        return events

    def close(self, timeout: float = 5.0) -> None:
        """Stop any job and end the child process: a running job is asked to stop first; an idle
        child (maybe still importing the engine) holds nothing and is ended at once."""
        if self._process is None:
            return
        self._stop.set()
        if self.busy and self._process.is_alive():
            self._commands.put(None)
            self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout)
        self._forget_child()

    def _ensure_child(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        self._commands, self._events = self._ctx.Queue(), self._ctx.Queue()
        self._stop = self._ctx.Event()
        self._process = self._ctx.Process(
            target=serve, args=(self._commands, self._events, self._stop), daemon=True,
            name="sparseseg-worker",
        )
        with _main_module_hidden():
            self._process.start()

    def _forget_child(self) -> None:
        # A request the dead child never read would keep the queue's feeder thread writing into a
        # full pipe, and Python would wait for that thread forever when it exits.
        for channel in (self._commands, self._events):
            channel.cancel_join_thread()
            channel.close()
        self._process, self.busy = None, False

    def _crashed(self) -> list:
        code = self._process.exitcode
        self._forget_child()
        hint = " (probably out of memory)" if code in (-9, 137) else ""
        message = (f"The training process ended unexpectedly with exit code {code}{hint}; "
                   "your annotations and the last finished model are kept.")
        return [Failed(message), Finished()]


@contextlib.contextmanager
def _main_module_hidden():
    """Start a child that does not import napari's main module. ``spawn`` runs it again in the
    child (as ``__mp_main__``) unless it has neither a ``__spec__`` nor a ``__file__``: a script
    that opens napari without ``if __name__ == "__main__":`` ran again there and the child's start
    failed (every Train ended "unexpectedly"), and the ``napari`` command's main module made the
    child import napari (52 MB more resident).
    The child needs nothing from it: :func:`serve` and the requests live in this package."""
    names = vars(sys.modules["__main__"])
    saved = {name: names[name] for name in ("__spec__", "__file__") if name in names}
    names["__spec__"] = None  # spawn reads it whether or not it is there
    names.pop("__file__", None)
    try:
        yield
    finally:
        names.pop("__spec__")
        names.update(saved)


# ------------------------------------------------------------------ child side


def serve(commands, events, stop) -> None:
    """Child main loop: run jobs until ``None`` arrives or napari's process is gone."""
    _lower_priority()
    _import_engine()
    parent = mp.parent_process()

    def should_stop() -> bool:
        return stop.is_set() or not parent.is_alive()

    while (job := _next_job(commands, parent)) is not None:
        try:
            run_job(job, commands, events.put, should_stop)
        except MemoryError:
            events.put(Failed("Out of memory; use a smaller preset or crop the image."))
        except ValueError as err:
            events.put(Failed(str(err)))
        except Exception as err:  # report, keep the child alive for the next job
            events.put(Failed(f"{type(err).__name__}: {err}"))
        events.put(Finished())


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.nice(19)  # the GUI wins the CPU whenever it needs it (measured: +5 was not enough)


def _import_engine() -> None:
    """Import what every training job needs before the first job, instead of during it: torch and
    LightGBM (about 3 s on 2 cores), and what torch imports when a job builds its first optimiser
    (torch._dynamo, 1.5 s of the U-Net's time budget). One that fails (an ImportError, or an OSError
    from a library that does not load) is left to the job that needs it to report."""
    with contextlib.suppress(Exception):  # the engine first: LightGBM's library may fail to load alone
        import torch

        from .core import inference, jobs, trainer  # noqa: F401

        torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
        import lightgbm  # noqa: F401


def _next_job(commands, parent):
    while parent.is_alive():
        try:
            job = commands.get(timeout=1.0)
        except queue.Empty:
            continue
        if not (isinstance(job, tuple) and job[:1] == ("view",)):
            return job
    return None


def run_job(job, commands, send, should_stop) -> None:
    """:func:`.core.jobs.run` with the plane to preview taken from ``("view", axis, index)`` commands."""
    from .core import jobs

    current = [getattr(job, "view", None)]

    def view():
        current[0] = _latest_view(commands, current[0])
        return current[0]

    jobs.run(job, send, should_stop, view)


def _latest_view(commands, view):
    while commands is not None:
        try:
            message = commands.get_nowait()
        except queue.Empty:
            return view
        if isinstance(message, tuple) and message[:1] == ("view",):
            view = message[1:]
        else:  # a shutdown request: leave it for the main loop
            commands.put(message)
            return view
    return view
