"""The dock's Results section: Predict, Next slice, undo a training round, save/load model, export, evaluate.

What it needs from the dock is passed in explicitly: the selected image and annotation layers,
how to go to a plane, and how to predict and start a worker job.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFormLayout, QGroupBox, QLabel

from . import _lazy
from ._evaluation import EvaluationPanel
from ._qt_parts import ask_path, button, notify_errors, row
from ._session import Session, plane_hint
from ._shortcuts import hint
from .core import files, io
from .core.events import DescribeRequest

MASK_SUFFIXES = (".tif", ".tiff", ".nii", ".nii.gz")


class ResultsPanel(QGroupBox):
    """Acts on the current model and prediction of the dock's :class:`Session`."""

    def __init__(self, viewer, session: Session, image: Callable, annotations: Callable, go_to: Callable,
                 predict: Callable, start: Callable, on_error: Callable[[str], None]):
        super().__init__("Results")
        self.viewer, self.session, self.image, self.annotations = viewer, session, image, annotations
        self.go_to, self.start, self.predict = go_to, start, predict
        self.predict_button = button("Predict", predict, "Apply the current model to the whole image")
        self.next_button = button("Next slice to annotate", self.next_slice,
                                  "Jump to the unpainted plane the model is least sure about, ready to paint"
                                  + hint("Shift-N"))
        self.export_button = button("Export prediction…", self.export_prediction,
                                    "Write the prediction as a TIFF or NIfTI mask with the image's geometry")
        self.save_button = button("Save model…", self.save_model, "Write the model to a .pt file")
        load = button("Load model…", self.load_model, "Read a saved model (no code runs from the file)")
        self.undo_button = button("Undo training", self.undo_training,
                                  "Go back to the model before the last training round and predict with it")
        self.model_label = QLabel(session.where())
        self.model_label.setWordWrap(True)
        self.model_label.setToolTip("Where the current model lives; save it to keep it after napari closes")
        self.evaluation = EvaluationPanel(viewer, session, self.prediction_layer, annotations, on_error)
        form = QFormLayout(self)
        for part in (row(self.predict_button, self.next_button), row(self.save_button, load),
                     self.model_label, row(self.undo_button, self.export_button), self.evaluation):
            form.addRow(part)

    def update_buttons(self, busy: bool) -> None:
        """Enable what can work now: a model to predict or save, a prediction to export or score."""
        model, image = self.session.model is not None, self.image_or_none()
        shown = image is not None and self.session.layer(image, "prediction") is not None
        self.predict_button.setEnabled(not busy and model)
        self.save_button.setEnabled(model)
        self.undo_button.setEnabled(not busy and self.session.can_undo())
        self.model_label.setText(self.session.where())
        self.next_button.setEnabled(self.session.uncertainty is not None)
        self.export_button.setEnabled(shown and not busy)
        self.evaluation.evaluate_button.setEnabled(shown and not busy)

    def image_or_none(self):
        try:
            return self.image()
        except ValueError:
            return None

    def next_slice(self):
        """Jump to the unpainted plane the model is least sure about; returns (axis, index)."""
        with notify_errors():
            layer = self.annotations()
            axis, index, score = self.session.next_plane(np.asarray(layer.data))
            self.go_to(axis, index)
            self.viewer.layers.selection.active = layer  # ready to paint on the suggested plane
            layer.mode = "paint"
            show_info(plane_hint(axis, index, score))
            return axis, index
        return None

    def save_model(self, path: str | None = None) -> None:
        with notify_errors():
            if self.session.model is None:
                raise ValueError("There is no model to save yet; train first.")
            path = path or ask_path(self, "Save model", "napari-sparseseg model (*.pt)", save=True)
            if path:
                path = path if path.lower().endswith(".pt") else f"{path}.pt"  # what Load model lists
                files.write_bytes(path, self.session.model)
                self.session.model_file = path
                self.model_label.setText(self.session.where())
                show_info(f"Model saved to {path}.")

    def undo_training(self) -> None:
        """Restore the model from before the last training round and predict the image with it."""
        with notify_errors():
            self.session.undo()
            show_info("Back to the model before the last training round; predicting with it.")
            self.predict()

    def load_model(self, path: str | None = None) -> None:
        """Read a model file; the worker checks it (no code runs) and reports its classes."""
        with notify_errors():
            path = path or ask_path(self, "Load model", "napari-sparseseg model (*.pt)")
            if path:
                data = io.existing_file(path, "model file").read_bytes()
                self.start(DescribeRequest(data, str(path)), f"Loading {path}…")

    def prediction_layer(self):
        return self.session.prediction(self.image())

    def export_prediction(self, path: str | None = None) -> None:
        with notify_errors():
            layer = self.prediction_layer()
            if _lazy.is_lazy(layer):
                raise ValueError(f"'{layer.name}' is already saved as OME-Zarr, chunk by chunk; it is too "
                                 "large to export as one TIFF or NIfTI file.")
            path = path or ask_path(self, "Export prediction", "Masks (*.tif *.tiff *.nii *.nii.gz)",
                                     save=True)
            if path:
                path = path if path.lower().endswith(MASK_SUFFIXES) else f"{path}.tif"
                from ._writer import write_labels

                data, meta, _ = layer.as_layer_data_tuple()
                write_labels(str(Path(path)), data, meta)
                show_info(f"Prediction written to {path}.")


def keep_unsaved(session: Session) -> None:
    """Closing the dock never drops a trained model: one nobody saved goes to the recovery folder."""
    try:
        path = session.keep_unsaved()
    except OSError as err:
        show_error(f"The unsaved model could not be kept ({err}); it is lost.")
        return
    if path is not None:
        show_warning(f"The model was never saved; it is kept in {path} (Load model… reads it).")
