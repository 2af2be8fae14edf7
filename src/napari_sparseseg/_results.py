"""The dock widget's refine, save and export actions (a mixin of :class:`SparseSegWidget`).

They act on state the widget owns: the trained model bytes, the uncertainty of the last
prediction, the layer pickers and the viewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.utils.notifications import show_info

from . import _large
from ._qt_parts import ask_path, notify_errors
from .core import io
from .core.uncertainty import AXIS_PLANES, rank_slices

if TYPE_CHECKING:
    from napari.layers import Labels


class ResultActions:
    """Next uncertain slice, save/load model, export and evaluate the prediction."""

    def next_slice(self):
        """Jump to the unpainted plane the model is least sure about; returns (axis, index)."""
        with notify_errors():
            layer = self.annotations()
            if self.uncertainty is None or self.uncertainty.shape != layer.data.shape:
                raise ValueError("Predict the image first; the ranking uses the model's uncertainty.")
            ranked = rank_slices(self.uncertainty, np.asarray(layer.data), top=3)
            if not ranked:
                raise ValueError("Every plane is painted already.")
            axis, index, score = ranked[0]
            self.go_to(axis, index)
            show_info(f"Paint {AXIS_PLANES[axis]} plane {'zyx'[axis]} = {index} "
                      f"(mean uncertainty {score:.2f}).")
            return axis, index
        return None

    def save_model(self, path: str | None = None) -> None:
        with notify_errors():
            if self.model is None:
                raise ValueError("There is no model to save yet; train first.")
            path = path or ask_path(self, "Save model", "napari-sparseseg model (*.pt)", save=True)
            if path:
                io.write_bytes(path, self.model)
                show_info(f"Model saved to {path}.")

    def load_model(self, path: str | None = None) -> None:
        with notify_errors():
            path = path or ask_path(self, "Load model", "napari-sparseseg model (*.pt)")
            if not path:
                return
            from .core import checkpoint

            segmenter = checkpoint.load(path)
            self.model, self.model_classes = Path(path).read_bytes(), segmenter.class_names
            self._update_buttons()
            show_info(f"Loaded model for {', '.join(segmenter.class_names)}; press Predict.")

    def prediction_layer(self) -> Labels:
        name = f"{self.image().name} prediction"
        if name not in self.viewer.layers:
            raise ValueError(f"There is no '{name}' layer yet; train or predict first.")
        return self.viewer.layers[name]

    def export_prediction(self, path: str | None = None) -> None:
        with notify_errors():
            layer = self.prediction_layer()
            if _large.is_lazy(layer):
                raise ValueError(f"'{layer.name}' is already saved as OME-Zarr, chunk by chunk; it is too "
                                 "large to export as one TIFF or NIfTI file.")
            path = path or ask_path(self, "Export prediction", "Masks (*.tif *.tiff *.nii *.nii.gz)",
                                     save=True)
            if path:
                from ._writer import write_labels

                data, meta, _ = layer.as_layer_data_tuple()
                write_labels(str(path), data, meta)
                show_info(f"Prediction written to {path}.")

    def evaluate(self) -> dict | None:
        """Compare the prediction with the chosen ground-truth layer; show and return metrics."""
        with notify_errors():
            from .core.metrics import evaluate, format_table

            truth = self.truth_combo.layer()
            if truth is None:
                raise ValueError("Choose a ground-truth Labels layer to evaluate against.")
            prediction = self.prediction_layer()
            if truth.data.shape != prediction.data.shape:
                raise ValueError(f"'{truth.name}' has shape {truth.data.shape} but the prediction "
                                 f"has {prediction.data.shape}.")
            result = evaluate(np.asarray(prediction.data), np.asarray(truth.data))
            self.metrics_label.setText(format_table(result))
            return result
        return None
