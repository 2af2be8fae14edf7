"""What a job is asked to do (requests) and what it reports back (events), as plain data.

:func:`.jobs.run` takes one request and calls ``send`` with events as it goes. The command line
turns them into a progress bar and messages; the napari worker puts them on a queue for the dock
widget. Nothing here imports torch, Qt or napari, so the napari process can use these types
without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import InferConfig, ModelConfig, TrainConfig

# ------------------------------------------------------------------ requests


@dataclass(frozen=True)
class Outputs:
    """Files a job writes once it has its result; none by default (the caller takes the events).

    ``like`` is an :class:`.io.Volume` whose spacing, unit and header the mask takes. ``first``
    receives a training job's first answer (the first stage's mask, written while the U-Net
    trains), for a look before the final ``mask``.
    """

    mask: Path | None = None
    probabilities: Path | None = None
    model: Path | None = None
    like: object | None = None
    first: Path | None = None


@dataclass(frozen=True)
class TrainRequest:
    """Train a new model (or continue ``init``) on painted volumes; then predict the first one.

    ``annotations`` use 0 for unpainted, 1 for background and k+1 for class k. ``infer_config`` is
    stored with a new model (its preset's window and overlap); ``infer_overrides`` (e.g. device)
    apply to this job's predictions only. ``init`` is model bytes or a model file. ``names`` are
    (image, annotations) names per pair for messages. ``early_answer`` sends a complete
    prediction as soon as the pointwise stage ends; ``view`` is the (axis, index) plane to
    preview every ``preview_every`` seconds while training.
    """

    images: tuple[np.ndarray, ...]
    annotations: tuple[np.ndarray, ...]
    spacing: tuple[float, float, float]
    class_names: tuple[str, ...] | None
    model_config: ModelConfig
    train_config: TrainConfig
    infer_config: InferConfig = field(default_factory=InferConfig)
    init: bytes | Path | None = None
    names: tuple[tuple[str, str], ...] | None = None
    predict_after: bool = True
    early_answer: bool = False
    uncertainty: bool = False
    view: tuple[int, int] | None = None
    preview_every: float = 3.0
    infer_overrides: dict = field(default_factory=dict)
    outputs: Outputs = field(default_factory=Outputs)


@dataclass(frozen=True)
class PredictRequest:
    """Apply ``model`` (bytes or a model file) to an in-memory ``image`` with its own settings."""

    image: np.ndarray
    model: bytes | Path
    infer_overrides: dict = field(default_factory=dict)
    uncertainty: bool = False
    outputs: Outputs = field(default_factory=Outputs)


@dataclass(frozen=True)
class ChunkedPredictRequest:
    """Apply ``model`` to a lazy ``image`` of any size chunk by chunk; write OME-Zarr ``output``.

    ``scheduler``, ``cluster`` and ``workers`` choose where the chunks run (:func:`.cluster.runner`;
    default: local threads); ``source`` names the input in messages.
    """

    image: object
    model: bytes | Path
    output: Path
    probabilities: Path | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    unit: str | None = None
    chunks: tuple[int, int, int] | None = None
    infer_overrides: dict = field(default_factory=dict)
    scheduler: str | None = None
    cluster: str | None = None
    workers: int | None = None
    source: str = "the image"


@dataclass(frozen=True)
class DescribeRequest:
    """Check that ``model`` (checkpoint bytes read from ``name``) loads; answer with a ModelReady."""

    model: bytes
    name: str = "model"


# ------------------------------------------------------------------ events


# what to tell the user when the U-Net's correction was dropped (Progress.kept_first)
KEPT_FIRST = ("The U-Net did not yet label the painted slices better than the trees alone, so this answer "
              "is the trees': train longer (a larger time budget, or continue training this model) for the "
              "U-Net to improve on it.")
# what to tell the user when training ended before its budget for one of these reasons
ENDED_EARLY = {"passes": "Every painted voxel has been learnt many times over, so more training would only "
                         "fit the painted slices closer: paint or correct more slices to improve it."}


def advice(reason: str | None, kept_first: bool) -> list[str]:
    """What to tell the user when training ended for ``reason`` (ENDED_EARLY's) and whether the
    trees' answer was kept (KEPT_FIRST)."""
    said = [ENDED_EARLY[reason]] if reason in ENDED_EARLY else []
    return [*said, KEPT_FIRST] if kept_first else said


@dataclass(frozen=True)
class Progress:
    """One training step. ``done`` is set on the last event with the ``reason``; ``first_answer``
    on the event that ends the pointwise stage, when the model gives a complete answer before the
    U-Net trains."""

    iteration: int
    loss: float
    elapsed: float
    voxels_per_s: float
    total_iterations: int | None = None
    max_time: float | None = None
    done: bool = False
    reason: str = ""
    first_answer: bool = False
    passes: float = 0.0  # average coverage of each painted voxel by the U-Net's patches so far
    max_passes: float | None = None
    kept_first: bool = False  # the U-Net did not improve on its first stage: the answer is that stage's

    @property
    def fraction(self) -> float:
        """Share of the budget used, 0..1 (the largest of iterations, time and passes)."""
        parts = [0.0]
        if self.total_iterations:
            parts.append(self.iteration / self.total_iterations)
        if self.max_time:
            parts.append(self.elapsed / self.max_time)
        if self.max_passes:
            parts.append(self.passes / self.max_passes)
        return min(1.0, max(parts))


@dataclass(frozen=True)
class Preview:
    """Prediction of plane ``index`` along ``axis`` with the current weights."""

    axis: int
    index: int
    labels: np.ndarray
    iteration: int


@dataclass(frozen=True)
class ModelReady:
    """Checkpoint bytes after a training round (``reason`` "loaded" after a DescribeRequest)."""

    model: bytes
    class_names: tuple[str, ...]
    iterations: int
    reason: str
    kept_first: bool = False  # as Progress.kept_first: the answer is the first stage's


@dataclass(frozen=True)
class PredictionReady:
    """Dense result: labels (Z, Y, X), probabilities (K, Z, Y, X), uncertainty (Z, Y, X) or None, uint8.

    ``early``: a training job's early answer (the trees', scored with early stopping): its labels
    are the trees' but its probabilities are flatter than the model's, so it has no uncertainty and
    should not replace the model's probabilities or uncertainty."""

    labels: np.ndarray
    probabilities: np.ndarray
    uncertainty: np.ndarray | None
    class_names: tuple[str, ...] = ()
    early: bool = False


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
class Message:
    """A line for the user about the job (what runs where, how long it took)."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Note(Message):
    """A sentence about the result the user should read, not only log: napari shows it as a warning."""


@dataclass(frozen=True)
class Written:
    """``what`` (e.g. "mask (values: 0 background, 1 nuclei)") was written to ``path``."""

    path: str
    what: str

    def __str__(self) -> str:
        name, _, detail = self.what.partition(" (")
        return f"{name} written to {self.path}" + (f" ({detail}" if detail else "")


@dataclass(frozen=True)
class Failed:
    """The job failed; ``message`` is meant for the user."""

    message: str


@dataclass(frozen=True)
class Finished:
    """The job is over (after its last result or a Failed)."""
