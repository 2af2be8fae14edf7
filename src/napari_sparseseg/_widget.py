"""The "Sparse segmentation" dock widget: annotate, train in the background, refine, export.

Layout and wiring only. Training, prediction and model loading run in a child process
(:mod:`._worker`, :mod:`.core.jobs`); this widget sends it plain arrays and configs and turns
the events it sends back into layer updates. What it remembers between clicks (the model, the
layers it made) is a :class:`._session.Session`. Errors become napari notifications. The napari
process never imports torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from . import _layers, _lazy, _shortcuts
from ._inputs_panel import InputsPanel
from ._options import TrainingOptions
from ._qt_parts import LossPlot, SliceList, ask_path, button, notify_errors, row, scrolling
from ._requests import train_request
from ._results_panel import ResultsPanel, keep_unsaved
from ._session import Session
from ._worker import Worker
from .core import zarr_io
from .core.events import (
    ChunkedPredictionReady,
    ChunkedPredictRequest,
    ChunkProgress,
    Failed,
    Finished,
    ModelReady,
    Note,
    PredictionReady,
    PredictRequest,
    Preview,
    Progress,
    TrainRequest,
    advice,
)
from .core.uncertainty import AXIS_PLANES, painted_planes

if TYPE_CHECKING:
    import napari

POLL_MS = 50
MAX_WIDTH = 420  # px: the canvas keeps the rest of a laptop screen
FEW_ITERATIONS = 50  # fewer U-Net iterations than its learning-rate warm-up: say the answer is rough
SUMMARY_DELAY_MS = 300


class SparseSegWidget(QWidget):
    """Dock widget driving the sparse-annotation training loop for one image."""

    def __init__(self, napari_viewer: napari.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker = Worker()
        self.session = Session()
        self.own = _layers.PluginLayers(napari_viewer, self.session, self._refresh_pickers)
        self._job_image: Image | None = None
        self._request = None  # the job running or last run
        self._stopping = False
        self._sent_view = None
        self._watched: Labels | None = None
        self._build()
        self._poll_timer = QTimer(self, interval=POLL_MS, timeout=self._poll)
        self._summary_timer = QTimer(self, singleShot=True, interval=SUMMARY_DELAY_MS,
                                     timeout=self.refresh_summary)
        self.viewer.dims.events.current_step.connect(self._view_changed)
        self.viewer.dims.events.order.connect(self._view_changed)
        self.viewer.layers.events.removed.connect(lambda event: self.session.forget(event.value))
        worker, session = self.worker, self.session  # not self: the slot must outlive the Python wrapper
        self.destroyed.connect(lambda *_: (worker.close(), keep_unsaved(session)))
        self._annotation_changed()
        _shortcuts.bind(napari_viewer, self)

    def event(self, event) -> bool:
        """Shown (the dock opened): start the worker's child, which imports the engine while the user
        paints. napari's close button takes the widget out of its dock (parent None): end the job and
        child."""
        if event.type() == QEvent.Type.Show:
            self.worker.warm()
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self.worker.close()
            self._poll_timer.stop()
            _shortcuts.unbind(self.viewer)
            keep_unsaved(self.session)
            self._update_buttons()
        return super().event(event)

    # ------------------------------------------------------------ layout

    def _build(self) -> None:
        """The four sections in a scroll area, so the dock fits a laptop screen (1366×768)."""
        inner = QWidget()
        layout = QVBoxLayout(inner)
        self.inputs = InputsPanel(self.viewer, self.session, self._annotation_changed)
        self.image_combo, self.annotation_combo = self.inputs.image_combo, self.inputs.annotation_combo
        self.annotation_combo.currentIndexChanged.connect(self._annotation_changed)
        self.image_combo.currentIndexChanged.connect(lambda *_: self._update_buttons())
        for box in (self.inputs, self._slices_box(), self._training_box(), self._results_box()):
            layout.addWidget(box)
        layout.addStretch()
        scrolling(inner, self)
        self.setMaximumWidth(MAX_WIDTH)

    def _slices_box(self) -> QGroupBox:
        box, layout = QGroupBox("Paint orthogonal slices"), QVBoxLayout()
        planes = QHBoxLayout()
        for axis, plane in enumerate(AXIS_PLANES):
            key = _shortcuts.hint(f"Shift-{'ZYX'[axis]}")
            planes.addWidget(button(plane, lambda _=False, a=axis: _layers.show_plane(self.viewer, a),
                                    f"Show {plane} planes (slice along {'zyx'[axis]}) to paint them{key}"))
        layout.addLayout(planes)
        self.slice_list = SliceList()
        self.slice_list.setToolTip("Painted planes per axis: click one to go there")
        self.slice_list.jump.connect(self.go_to)
        layout.addWidget(self.slice_list)
        box.setLayout(layout)
        return box

    def _training_box(self) -> QGroupBox:
        box, form = QGroupBox("Train"), QFormLayout()
        self.options = TrainingOptions()
        form.addRow(self.options)
        key = _shortcuts.hint("Shift-T")
        self.train_button = button("Train", self.train, "Learn from the painted voxels in the background "
                                   f"(continues from the current model once there is one){key}")
        self.stop_button = button("Stop", self.stop,
                                  f"End training after this step; the model so far is kept{key}")
        form.addRow(row(self.train_button, self.stop_button))
        self.progress = QProgressBar()
        self.status = QLabel("Paint background (1) and classes (2..), then Train.")
        self.status.setWordWrap(True)
        self.loss_plot = LossPlot()
        for widget in (self.progress, self.status, self.loss_plot):
            form.addRow(widget)
        box.setLayout(form)
        return box

    def _results_box(self) -> QGroupBox:
        inputs = self.inputs
        self.results = ResultsPanel(self.viewer, self.session, inputs.image, inputs.annotations, self.go_to,
                                    self.predict, self._start,
                                    lambda message: self._on_failed(Failed(message)))
        self._update_buttons()
        return self.results

    # ------------------------------------------------------------ painted planes

    def _annotation_changed(self, *_) -> None:
        layer = self.annotation_combo.layer()
        for watched in (self._watched, layer):
            if watched is not None:
                for event in (watched.events.paint, watched.events.data):
                    event.disconnect(self._schedule_summary)
        if layer is not None:
            layer.events.paint.connect(self._schedule_summary)
            layer.events.data.connect(self._schedule_summary)
        self._watched = layer
        self.inputs.show_classes(layer)
        self.refresh_summary()

    def _schedule_summary(self, *_) -> None:
        self._summary_timer.start()

    def refresh_summary(self) -> None:
        """Recount painted planes per axis and show them."""
        layer = self.annotation_combo.layer()
        if layer is None or np.ndim(layer.data) != 3:
            self.slice_list.set_planes([[], [], []])
            return
        self.slice_list.set_planes(painted_planes(np.asarray(layer.data)))
        self.inputs.show_classes(layer)

    def go_to(self, axis: int, index: int) -> None:
        """Show plane ``index`` along ``axis`` of the annotation layer (of the image if there is none)."""
        with notify_errors():
            _layers.go_to(self.viewer, self.annotation_combo.layer() or self.inputs.image(), axis, index)

    # ------------------------------------------------------------ training

    def train(self) -> None:
        """Start (or continue) training on the painted voxels in the background."""
        with notify_errors():
            request = self._train_request()
            image = self.inputs.image()
            if not _lazy.is_lazy(image):
                self.own.empty(image, self._annotation_colors())
            self._start(request, f"Training ({request.train_config.max_time:.0f} s budget)…")
            self.loss_plot.clear()

    def _train_request(self) -> TrainRequest:
        inputs = self.inputs
        return train_request(self.viewer, inputs.image(), inputs.annotations(), self.session, self.options)

    def train_or_stop(self) -> None:
        """The Shift+T shortcut: Train when idle, Stop while a job runs."""
        self.stop() if self.worker.busy else self.train()

    def stop(self) -> None:
        """Stop training after the current iteration; the model so far is kept."""
        self.worker.stop()
        self._stopping = True
        self.status.setText("Stopping after this iteration…")

    def predict(self, output: str | None = None) -> None:
        """Predict the whole image with the current model (a large one chunk by chunk into ``output``)."""
        with notify_errors():
            if self.session.model is None:
                raise ValueError("There is no model yet: press Train or Load model first.")
            image = self.inputs.image()
            _layers.check_volume(image)
            if _lazy.is_lazy(image):
                self._predict_large(image, output)
                return
            request = PredictRequest(np.asarray(image.data), self.session.model,
                                     self.options.infer_overrides(), uncertainty=True)
            self._start(request, "Predicting…")

    def _predict_large(self, image: Image, output: str | None) -> None:
        output = output or ask_path(self, "Save the whole-volume prediction", "OME-Zarr (*.zarr)", save=True)
        if output:
            output = output if output.lower().endswith(".zarr") else f"{output}.zarr"
            zarr_io.check_zarr_output(Path(output))
            request = ChunkedPredictRequest(
                _lazy.lazy_source(image), self.session.model, Path(output), spacing=_layers.spacing(image),
                infer_overrides=self.options.infer_overrides(), source=f"'{image.name}'")
            self._start(request, f"Predicting the whole volume chunk by chunk into {output}…")

    def _start(self, request, message: str) -> None:
        self.worker.submit(request)
        self._request = request
        self._job_image, self._job_started = self.image_combo.layer(), time.perf_counter()
        self._stopping = False
        self.progress.setValue(0)
        self.status.setText(message)
        self._poll_timer.start()
        self._update_buttons()

    def _view_changed(self, *_) -> None:
        image = self._job_image
        if image is None or not self.worker.busy:
            return
        view = _layers.current_plane(self.viewer, image)
        if view is not None and view != self._sent_view:
            self.worker.set_view(*view)
            self._sent_view = view

    # ------------------------------------------------------------ events from the worker

    def _poll(self) -> None:
        for event in self.worker.poll():
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)

    def _on_progress(self, event: Progress) -> None:
        self.progress.setValue(int(100 * event.fraction))
        eta = event.elapsed / event.fraction - event.elapsed if event.fraction > 0 else float("nan")
        if not self._stopping:  # "Stopping…" stays until the model arrives
            self.status.setText(f"iteration {event.iteration} · loss {event.loss:.4f} · "
                                f"ETA {max(eta, 0):.0f} s · {event.voxels_per_s / 1e6:.2f} Mvox/s")
        self.loss_plot.add(event.loss)

    def _on_preview(self, event: Preview) -> None:
        image = self._job_image
        if image is not None and event.labels.ndim == 2:
            self.own.plane(image, event.axis, event.index, event.labels, self._annotation_colors())

    def _on_chunks(self, event: ChunkProgress) -> None:
        self.progress.setValue(int(100 * event.done / event.total))
        self.status.setText(f"Predicting chunk by chunk: {event.done} of {event.total} tasks done.")

    def _on_chunked_prediction(self, event: ChunkedPredictionReady) -> None:
        self.own.lazy(self._job_image, event.path, self._annotation_colors())
        seconds = time.perf_counter() - self._job_started
        self.status.setText(f"Prediction written to {event.path} in {seconds:.0f} s and shown lazily.")

    def _on_model(self, event: ModelReady) -> None:
        if event.reason == "loaded":
            self.session.set_model(event.model, event.class_names, self._request.name)
            show_info(f"Loaded model for {', '.join(event.class_names)}; press Predict.")
            return
        self.session.trained(event.model, event.class_names)
        more = " Press Predict to apply it to the whole volume." if _lazy.is_lazy(self._job_image) else ""
        if event.iterations < FEW_ITERATIONS and event.reason == "time":
            more += (f" Only {event.iterations} iterations fit in the time budget, so the answer is rough: "
                     "press Continue training or raise the time budget.")
        more += "".join(f" {line}" for line in advice(event.reason, event.kept_first))
        show_info(f"Training stopped after {event.iterations} iterations ({event.reason}).{more}")
        self.status.setText(f"Model ready after {event.iterations} iterations.{more}")

    def _on_prediction(self, event: PredictionReady) -> None:
        image, seconds = self._job_image, time.perf_counter() - self._job_started
        layer = self.own.prediction(image, event.labels, self._annotation_colors())
        if event.early:  # the trees' quick labels (buttons as they were: training goes on); their
            # probabilities are flatter than the model's, so they replace no probabilities or uncertainty
            self.status.setText(f"First answer after {seconds:.0f} s in '{layer.name}'; training goes on.")
            return
        self.session.uncertainty = event.uncertainty
        if self.options.probability_check.isChecked():
            self.own.extra(image, "probabilities", event.probabilities, colormap="magma", visible=False)
        if self.options.uncertainty_check.isChecked():
            self.own.extra(image, "uncertainty", event.uncertainty, colormap="inferno", opacity=0.6)
        step = ("Correct it where it is wrong, or press Next slice to annotate, then Continue training."
                if event.uncertainty is not None else "")
        self.status.setText(f"Prediction ready after {seconds:.0f} s in '{layer.name}'. {step}".strip())
        self._update_buttons()

    def _on_note(self, event: Note) -> None:
        show_warning(event.text)

    def _on_failed(self, event: Failed) -> None:
        show_error(event.message)
        self.status.setText("Failed: " + event.message)

    def _on_finished(self, event: Finished) -> None:
        self._poll_timer.stop()
        self._sent_view = None
        self.progress.setValue(100)
        self._update_buttons()

    def _refresh_pickers(self) -> None:
        """A plugin layer appeared: the pickers stop offering it."""
        for combo in (self.annotation_combo, self.results.evaluation.truth_combo):
            combo.refresh()

    def _annotation_colors(self) -> dict[int, tuple]:
        return _layers.annotation_colors(self.annotation_combo.layer())

    def _update_buttons(self) -> None:
        busy, model = self.worker.busy, self.session.model is not None
        self.train_button.setEnabled(not busy)
        self.train_button.setText("Continue training" if model else "Train")
        self.stop_button.setEnabled(busy)
        self.results.update_buttons(busy)


_HANDLERS = {
    Progress: SparseSegWidget._on_progress,
    Preview: SparseSegWidget._on_preview,
    ModelReady: SparseSegWidget._on_model,
    PredictionReady: SparseSegWidget._on_prediction,
    ChunkProgress: SparseSegWidget._on_chunks,
    ChunkedPredictionReady: SparseSegWidget._on_chunked_prediction,
    Note: SparseSegWidget._on_note,
    Failed: SparseSegWidget._on_failed,
    Finished: SparseSegWidget._on_finished,
}
