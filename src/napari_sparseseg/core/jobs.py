"""How a job runs: train, predict (in memory or chunk by chunk) and write, reporting events.

:func:`run` is the one pipeline behind the ``sparseseg`` command (``send`` draws a progress bar),
the napari worker process (``send`` puts events on a queue) and Python scripts::

    from napari_sparseseg.core import jobs
    from napari_sparseseg.core.config import resolve
    from napari_sparseseg.core.events import Outputs, TrainRequest

    chosen = resolve("fast", max_time=60)
    request = TrainRequest((image,), (annotations,), (1.0, 1.0, 1.0), None, chosen.model,
                           chosen.train, chosen.infer, outputs=Outputs(mask=Path("mask.tif")))
    jobs.run(request, print)

Requests and events are plain data (:mod:`.events`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import checkpoint, files, io
from .config import override
from .events import (
    ChunkedPredictionReady,
    ChunkedPredictRequest,
    ChunkProgress,
    DescribeRequest,
    Failed,
    Message,
    ModelReady,
    Note,
    Outputs,
    PredictionReady,
    PredictRequest,
    Preview,
    TrainRequest,
    Written,
)
from .labels import legend

PROGRESS_INTERVAL = 1.0  # seconds between progress events (the last one is always sent)
PREVIEW_SHARE = 9  # wait at least 9x a preview's cost before the next: previews take <= 10 %


def run(job, send: Callable, should_stop: Callable[[], bool] = lambda: False,
        view: Callable[[], tuple[int, int] | None] | None = None) -> None:
    """Run one request, calling ``send`` with every event; errors for the user are ValueErrors.

    ``should_stop()`` ends training after the current iteration (the model so far is kept) and a
    chunked prediction between tasks (nothing is written); ``view()`` returns the plane a
    training job previews next (default: the request's ``view``).
    """
    if isinstance(job, TrainRequest):
        _train(job, send, should_stop, view or (lambda: job.view))
    elif isinstance(job, PredictRequest):
        segmenter = load(job.model)
        _check_space(job.outputs, job.image.size, segmenter.n_classes)
        with files.all_or_nothing():
            written = _predict(segmenter, job.image, job, send)
        for event in written:
            send(event)
    elif isinstance(job, ChunkedPredictRequest):
        _predict_chunked(job, send, should_stop)
    elif isinstance(job, DescribeRequest):
        segmenter = checkpoint.from_bytes(job.model, job.name)
        send(ModelReady(job.model, segmenter.class_names, 0, "loaded"))
    else:
        raise TypeError(f"Unknown job {type(job).__name__}.")


def load(model: bytes | Path) -> checkpoint.Segmenter:
    """A segmenter from checkpoint bytes or a model file."""
    if isinstance(model, bytes):
        return checkpoint.from_bytes(model)
    return checkpoint.load(model)


def infer_settings(segmenter, job):
    """The model's own inference settings with the job's overrides (e.g. device, flip TTA)."""
    return override(segmenter.infer, **{k: v for k, v in job.infer_overrides.items() if v is not None})


def _train(job: TrainRequest, send, should_stop, view) -> None:
    from . import trainer

    init = load(job.init) if job.init is not None else None
    segmenter, images, annotations = trainer.prepare(
        list(job.images), list(job.annotations), job.model_config, job.train_config, job.spacing, init,
        job.class_names, job.names, job.infer_config,
    )
    first = job.outputs.first
    staged = job.predict_after and segmenter.net.pointwise is not None  # an answer before the U-Net's
    if first is not None and not staged:
        why = ("this model has no first stage (filters and trees, as preset 'fast' has) to answer before "
               "its U-Net trains" if job.predict_after else "this job predicts nothing")
        raise ValueError(f"No first answer can be written to {first}: {why}; leave that output out.")
    _check_space(job.outputs, images[0].size, segmenter.n_classes)
    for note in _surprises(segmenter, images, annotations, init):
        send(Note(note))
    last_sent, last_preview, wait = 0.0, time.perf_counter(), job.preview_every
    early = staged and (job.early_answer or first is not None)
    event, stepped = None, False
    for event in trainer.train(segmenter, images, annotations, job.train_config, should_stop):
        stepped = stepped or not event.done
        if early and event.first_answer:  # the pointwise stage's complete answer (cheap: no U-Net yet)
            _first_answer(segmenter, images[0], job, send)
            early = False
        now = time.perf_counter()
        if event.done or now - last_sent >= PROGRESS_INTERVAL:
            send(event)
            last_sent = now
        plane = view()
        # no previews in the pointwise stage (iteration 0): its features stay on the CPU, and its
        # complete answer comes at the end of the stage anyway
        if plane is not None and event.iteration and not event.done and now - last_preview >= wait:
            send(_preview(segmenter, images[0], plane, infer_settings(segmenter, job), event.iteration))
            last_preview = time.perf_counter()
            wait = max(job.preview_every, PREVIEW_SHARE * (last_preview - now))
    if early and first is not None:
        send(Message(f"No first answer was written to {first}: training stopped before the first stage "
                     "answered."))
    if not (stepped and trainer.ready(segmenter)):  # an untrained model must not replace a good one
        send(Failed("Stopped before the first training step; nothing was trained or written."))
        return
    send(ModelReady(checkpoint.to_bytes(segmenter), segmenter.class_names, event.iteration, event.reason,
                    event.kept_first))
    written = []
    with files.all_or_nothing():  # model, mask and probabilities appear together, or none of them
        if job.outputs.model is not None:
            checkpoint.save(segmenter, job.outputs.model)
            written.append(Written(str(job.outputs.model), "model"))
        if job.predict_after:
            written += _predict(segmenter, images[0], job, send)
    for done in written:
        send(done)


def _first_answer(segmenter, image: np.ndarray, job: TrainRequest, send) -> None:
    """Predict and send the first stage's answer while training waits; write it to ``outputs.first``.

    A new model's trees are scored with early stopping (a trained U-Net reads every round of them).
    A file that cannot be written (a disk filled since the start) is said; training goes on. Without
    a file, an error fails the job as any prediction's does."""
    alone = not segmenter.net.corrects
    outputs = Outputs(mask=job.outputs.first, like=job.outputs.like)
    try:
        for done in _predict(segmenter, image, replace(job, outputs=outputs), send, alone, "first answer"):
            send(done)
    except ValueError as err:
        if job.outputs.first is None:  # napari's early answer writes nothing: a real failure
            raise
        send(Message(f"The first answer was not written: {err} Training goes on."))
    segmenter.net.train()


def _surprises(segmenter, images, annotations, init) -> list[str]:
    """What the user would not expect from the result: a constant image, classes not painted."""
    notes = [f"Image {k + 1} is constant ({float(image.flat[0]):g} everywhere): nothing tells the classes "
             "apart, so the mask will be one class." for k, image in enumerate(images)
             if image.size and image.min() == image.max()]
    if init is not None:
        painted = {int(v) - 1 for a in annotations for v in np.unique(a) if v > 0}
        kept = [name for k, name in enumerate(segmenter.class_names) if k not in painted]
        if kept:
            notes.append(f"The model keeps class(es) {', '.join(kept)} from before; they are not painted "
                         "now and may still appear in the mask.")
    return notes


def _check_space(outputs: Outputs, voxels: int, n_classes: int) -> None:
    """Before long work: room for the mask (<= 2 bytes a voxel), probabilities and the model."""
    files.check_space({outputs.mask: 2 * voxels, outputs.probabilities: 4 * n_classes * voxels,
                    outputs.model: 20e6, outputs.first: 2 * voxels})


def _preview(segmenter, image, view, infer_config, iteration) -> Preview:
    """Predict a slab around one plane and return that plane; training resumes after."""
    from .inference import predict

    axis, index = view
    size = image.shape[axis]
    index = int(np.clip(index, 0, size - 1))
    depth = min(size, infer_config.window[axis])
    start = int(np.clip(index - depth // 2, 0, size - depth))
    slab = np.take(image, range(start, start + depth), axis=axis)
    labels = predict(segmenter, slab, infer_config).labels
    segmenter.net.train()
    return Preview(axis, index, np.take(labels, index - start, axis=axis), iteration)


def _predict(segmenter, image: np.ndarray, job, send, early: bool = False,
             name: str = "mask") -> list[Written]:
    """Predict ``image`` whole, send the result, write the job's mask and probabilities files.

    ``early``: napari's early answer, scored fast (see :func:`.inference.predict`); its flatter
    probabilities give no uncertainty. ``name`` is what the mask is called when it is said to be
    written. Returns the :class:`Written` events, for the caller to send once the files are in place."""
    from .inference import predict, prediction_window
    from .uncertainty import entropy

    config = infer_settings(segmenter, job)
    started = time.perf_counter()
    result = predict(segmenter, image, config, early=early)
    window = "×".join(str(w) for w in prediction_window(segmenter, config, image.shape))
    send(Message(f"predicted {image.size:,} voxels in {time.perf_counter() - started:.1f} s "
                 f"(window {window}{', flip TTA' if config.flip_tta else ''})"))
    uncertainty = entropy(result.probabilities) if job.uncertainty and not early else None
    send(PredictionReady(result.labels, result.probabilities, uncertainty, segmenter.class_names, early))
    outputs, written = job.outputs, []
    if outputs.mask is not None:
        io.write_volume(outputs.mask, result.labels, like=outputs.like)
        written.append(Written(str(outputs.mask), f"{name} (values: {legend(segmenter.class_names)})"))
    if outputs.probabilities is not None:
        io.write_probabilities(outputs.probabilities, result.probabilities, like=outputs.like)
        written.append(Written(str(outputs.probabilities), "probabilities (0..255)"))
    return written


def _predict_chunked(job: ChunkedPredictRequest, send, should_stop) -> None:
    """Whole-volume prediction chunk by chunk into OME-Zarr stores; nothing is written if stopped."""
    from . import zarr_io
    from .chunked import overhead, plan_chunks, predict_dask
    from .cluster import Stopped, runner
    from .inference import prediction_window

    for out in (job.output, job.probabilities):
        if out is not None:
            zarr_io.check_zarr_output(Path(out))
    segmenter = load(job.model)
    config = infer_settings(segmenter, job)
    shape = tuple(job.image.shape)
    grid = plan_chunks(shape, segmenter, config, job.chunks)
    extra = overhead(grid, prediction_window(segmenter, config, shape))
    with runner(job.scheduler, job.cluster, job.workers) as where:
        send(Message(f"predicting {job.source} {shape} in {np.prod([len(c) for c in grid])} chunks of "
                     f"{tuple(c[0] for c in grid)} on {where.description} "
                     f"(window work x{extra:.2f} at borders)"))
        prediction = predict_dask(job.image, segmenter, config, job.chunks)
        started = time.perf_counter()
        try:
            zarr_io.store_prediction(
                prediction, job.output, job.probabilities, spacing=job.spacing, unit=job.unit,
                class_names=segmenter.class_names,
                compute=lambda store: where.compute(store, _throttled(send), should_stop),
            )
        except Stopped:
            send(Failed(f"Prediction stopped; {job.output} was not written."))
            return
    seconds = max(time.perf_counter() - started, 1e-9)
    send(Message(f"predicted {np.prod(shape):,} voxels in {seconds:.1f} s "
                 f"({np.prod(shape) / seconds / 1e6:.2f} Mvox/s)"))
    send(Written(str(job.output), f"mask (OME-Zarr, values: {legend(segmenter.class_names)})"))
    if job.probabilities is not None:
        send(Written(str(job.probabilities), "probabilities (0..255)"))
    send(ChunkedPredictionReady(str(job.output)))


def _throttled(send) -> Callable[[int, int], None]:
    """``on_progress(done, total)`` sending a :class:`ChunkProgress` at most every PROGRESS_INTERVAL."""
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - last[0] >= PROGRESS_INTERVAL:
            send(ChunkProgress(done, total))
            last[0] = now

    return progress
