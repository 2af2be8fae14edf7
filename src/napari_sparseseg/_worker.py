"""Training and prediction in a child process, so napari's interpreter stays free.

The GUI owns a :class:`Worker`. It submits a :class:`TrainRequest` or
:class:`PredictRequest` and polls small events from a Qt timer with :meth:`Worker.poll`.
The child (started with ``spawn``, at lower priority) imports torch; the GUI process
never has to. A crash or out-of-memory in the child ends only the child: ``poll``
reports it as :class:`Failed`, and the GUI keeps its annotations and the last model
bytes it received. Nothing here touches Qt or napari.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import time
from dataclasses import dataclass

import numpy as np

from .core.config import InferConfig, ModelConfig, TrainConfig

PROGRESS_INTERVAL = 0.2  # seconds between progress events sent to the GUI
PREVIEW_SHARE = 9  # wait at least 9x a preview's cost before the next: previews take <= 10 %


@dataclass(frozen=True)
class TrainRequest:
    """Train (or continue training ``init``) on one image; then predict it if asked."""

    image: np.ndarray
    annotation: np.ndarray
    spacing: tuple[float, float, float]
    class_names: tuple[str, ...]
    model_config: ModelConfig
    train_config: TrainConfig
    infer_config: InferConfig
    init: bytes | None = None
    predict_after: bool = True
    view: tuple[int, int] | None = None
    preview_every: float = 3.0


@dataclass(frozen=True)
class PredictRequest:
    """Apply checkpoint bytes ``model`` to ``image``."""

    image: np.ndarray
    model: bytes
    infer_config: InferConfig


@dataclass(frozen=True)
class ChunkedPredictRequest:
    """Apply ``model`` to a lazy (dask) ``image`` of any size; write the mask to OME-Zarr ``output``."""

    image: object
    model: bytes
    infer_config: InferConfig
    output: str
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    chunks: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class ChunkProgress:
    """``done`` of ``total`` dask tasks of a chunked prediction have finished."""

    done: int
    total: int


@dataclass(frozen=True)
class ChunkedPredictionReady:
    """The mask is complete in the OME-Zarr store at ``path``."""

    path: str


@dataclass(frozen=True)
class Preview:
    """Prediction of plane ``index`` along ``axis`` with the current weights."""

    axis: int
    index: int
    labels: np.ndarray
    iteration: int


@dataclass(frozen=True)
class ModelReady:
    """Checkpoint bytes after a training round."""

    model: bytes
    class_names: tuple[str, ...]
    iterations: int
    reason: str


@dataclass(frozen=True)
class PredictionReady:
    """Dense result: labels (Z, Y, X), probabilities (K, Z, Y, X), uncertainty (Z, Y, X), all uint8."""

    labels: np.ndarray
    probabilities: np.ndarray
    uncertainty: np.ndarray


@dataclass(frozen=True)
class Failed:
    """The job failed; ``message`` is meant for the user."""

    message: str


@dataclass(frozen=True)
class Finished:
    """The job is over (after its last result or a Failed)."""


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
        """Stop any job and end the child process."""
        if self._process is None:
            return
        self._stop.set()
        if self._process.is_alive():
            self._commands.put(None)
            self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout)
        self._process, self.busy = None, False

    def _ensure_child(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        self._commands, self._events = self._ctx.Queue(), self._ctx.Queue()
        self._stop = self._ctx.Event()
        self._process = self._ctx.Process(
            target=serve, args=(self._commands, self._events, self._stop), daemon=True,
            name="sparseseg-worker",
        )
        self._process.start()

    def _crashed(self) -> list:
        code = self._process.exitcode
        self._process, self.busy = None, False
        hint = " (probably out of memory)" if code in (-9, 137) else ""
        message = (f"The training process ended unexpectedly with exit code {code}{hint}; "
                   "your annotations and the last finished model are kept.")
        return [Failed(message), Finished()]


# ------------------------------------------------------------------ child side


def serve(commands, events, stop) -> None:
    """Child main loop: run jobs until ``None`` arrives or napari's process is gone."""
    _lower_priority()
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
    """Run one request, sending events through ``send`` (also used in-process by tests)."""
    if isinstance(job, PredictRequest):
        from .core import checkpoint

        _send_prediction(checkpoint.from_bytes(job.model), job.image, job.infer_config, send)
    elif isinstance(job, TrainRequest):
        _train(job, commands, send, should_stop)
    elif isinstance(job, ChunkedPredictRequest):
        _predict_chunked(job, send, should_stop)
    else:
        raise TypeError(f"Unknown job {type(job).__name__}.")


def _train(job: TrainRequest, commands, send, should_stop) -> None:
    from .core import checkpoint, trainer

    init = checkpoint.from_bytes(job.init) if job.init else None
    segmenter, images, annotations = trainer.prepare(
        [job.image], [job.annotation], job.model_config, job.train_config, job.spacing, init,
        job.class_names, [("image", "annotations")],
    )
    view, last_sent, last_preview, wait = job.view, 0.0, time.perf_counter(), job.preview_every
    early = job.predict_after and segmenter.net.pointwise is not None
    for event in trainer.train(segmenter, images, annotations, job.train_config, should_stop):
        view = _latest_view(commands, view)
        if early and event.iteration == 1 and not event.done:  # the pointwise stage's complete answer
            send(event)
            _send_prediction(segmenter, images[0], job.infer_config, send)
            segmenter.net.train()
            early = False
        now = time.perf_counter()
        if event.done or now - last_sent >= PROGRESS_INTERVAL:
            send(event)
            last_sent = now
        # no previews in the pointwise stage (iteration 0): its features stay on the CPU, and its
        # complete answer comes at the end of the stage anyway
        if view is not None and event.iteration and not event.done and now - last_preview >= wait:
            send(_preview(segmenter, images[0], view, job.infer_config, event.iteration))
            last_preview = time.perf_counter()
            wait = max(job.preview_every, PREVIEW_SHARE * (last_preview - now))
    send(ModelReady(checkpoint.to_bytes(segmenter), segmenter.class_names, event.iteration, event.reason))
    if job.predict_after:
        _send_prediction(segmenter, images[0], job.infer_config, send)


def _latest_view(commands, view):
    while True:
        try:
            message = commands.get_nowait()
        except queue.Empty:
            return view
        if isinstance(message, tuple) and message[:1] == ("view",):
            view = message[1:]
        else:  # a shutdown request: leave it for the main loop
            commands.put(message)
            return view


def _preview(segmenter, image, view, infer_config, iteration) -> Preview:
    """Predict a slab around one plane and return that plane; training resumes after."""
    from .core.inference import predict

    axis, index = view
    size = image.shape[axis]
    index = int(np.clip(index, 0, size - 1))
    depth = min(size, infer_config.window[axis])
    start = int(np.clip(index - depth // 2, 0, size - depth))
    slab = np.take(image, range(start, start + depth), axis=axis)
    labels = predict(segmenter, slab, infer_config).labels
    segmenter.net.train()
    return Preview(axis, index, np.take(labels, index - start, axis=axis), iteration)


def _send_prediction(segmenter, image, infer_config, send) -> None:
    from .core.inference import predict
    from .core.uncertainty import entropy

    result = predict(segmenter, image, infer_config)
    send(PredictionReady(result.labels, result.probabilities, entropy(result.probabilities)))


def _predict_chunked(job: ChunkedPredictRequest, send, should_stop) -> None:
    """Whole-volume prediction chunk by chunk on local threads (the same code as the CLI)."""
    from .core import checkpoint, zarr_io
    from .core.chunked import predict_dask
    from .core.cluster import Runner, Stopped, available_cpus

    segmenter = checkpoint.from_bytes(job.model)
    prediction = predict_dask(job.image, segmenter, job.infer_config, job.chunks)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - last[0] >= PROGRESS_INTERVAL:
            send(ChunkProgress(done, total))
            last[0] = now

    def compute(store):
        return Runner(None, available_cpus(), progress=False).compute(store, progress, should_stop)

    try:
        zarr_io.store_prediction(prediction, job.output, spacing=job.spacing,
                                 class_names=segmenter.class_names, compute=compute)
    except Stopped:
        send(Failed(f"Prediction stopped; {job.output} was not written."))
        return
    send(ChunkedPredictionReady(str(job.output)))
