"""The dock's Evaluate row: the prediction against a ground-truth Labels layer, off the GUI thread.

The metrics (numpy only) run in a thread; the result shows as a table named after the model's
classes, and the mean says which classes it averages.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from napari.layers import Labels
from napari.qt.threading import thread_worker
from qtpy.QtWidgets import QCheckBox, QFormLayout, QLabel, QWidget

from ._qt_parts import LayerCombo, MetricsTable, button, notify_errors, row
from .core.labels import class_name


class EvaluationPanel(QWidget):
    """Ground-truth picker, Evaluate button, a summary line and the metrics table."""

    def __init__(self, viewer, session, prediction_layer: Callable, annotations: Callable,
                 on_error: Callable[[str], None]):
        super().__init__()
        self.session, self.prediction_layer, self.on_error = session, prediction_layer, on_error
        self.annotations = annotations
        self.metrics: dict | None = None  # the last evaluation
        self._job = None
        self.truth_combo = LayerCombo(viewer, Labels, allow_none=True, exclude=session.own)
        self.truth_combo.setToolTip("A Labels layer with the true mask (0 background, k class k)")
        self.evaluate_button = button("Evaluate", self.evaluate,
                                      "Dice and more per class of the prediction against the ground truth")
        self.unpainted_check = QCheckBox("Unpainted voxels only")
        self.unpainted_check.setToolTip("Score only voxels you did not paint, as `sparseseg evaluate "
                                        "--unpainted` does: the painted ones were seen in training")
        self.metrics_label = QLabel()
        self.metrics_label.setWordWrap(True)
        self.metrics_table = MetricsTable()
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Ground truth", row(self.truth_combo, self.evaluate_button))
        form.addRow(self.unpainted_check)
        form.addRow(self.metrics_label)
        form.addRow(self.metrics_table)

    def evaluate(self) -> None:
        """Compare the prediction with the chosen ground-truth layer (in a thread); show the metrics."""
        with notify_errors():
            truth = self.truth_combo.layer()
            if truth is None:
                raise ValueError("Choose a ground-truth Labels layer to evaluate against.")
            prediction = self.prediction_layer()
            if truth.data.shape != prediction.data.shape:
                raise ValueError(f"'{truth.name}' has shape {truth.data.shape} but the prediction "
                                 f"has {prediction.data.shape}.")
            self.metrics = None
            names, region = self.session.model_classes, self._region(truth.data.shape)
            self._job = _evaluate(np.asarray(prediction.data), np.asarray(truth.data), names, region)
            self._job.returned.connect(self._show)
            self._job.errored.connect(lambda err: self.on_error(str(err)))
            self.metrics_label.setText(f"Evaluating '{prediction.name}' against '{truth.name}'…")
            self.metrics_table.show_result(None)
            self._job.start()

    def _region(self, shape) -> np.ndarray | None:
        """The unpainted voxels of the annotation layer when asked for, else None (every voxel)."""
        if not self.unpainted_check.isChecked():
            return None
        layer = self.annotations()
        if layer.data.shape != shape:
            raise ValueError(f"'{layer.name}' has shape {layer.data.shape} but the truth has {shape}.")
        return np.asarray(layer.data) == 0

    def _show(self, result: dict) -> None:
        self.metrics = result
        where = " unpainted" if self.unpainted_check.isChecked() else ""
        self.metrics_label.setText(f"{result['n_voxels']:,}{where} voxels; the mean is over "
                                   f"{', '.join(result['averaged'])} (in the truth or the prediction).")
        self.metrics_table.show_result(result)


@thread_worker(start_thread=False)
def _evaluate(prediction: np.ndarray, truth: np.ndarray, names, region: np.ndarray | None) -> dict:
    """Per-class metrics named after the model's classes (numpy only: off the GUI thread)."""
    from .core.metrics import evaluate

    n = max(int(prediction.max(initial=0)), int(truth.max(initial=0))) + 1
    return evaluate(prediction, truth, n, mask=region, class_names=[class_name(k, names) for k in range(n)])
