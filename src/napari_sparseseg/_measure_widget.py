"""The "Measure" dock widget: volume per class and size per object of any Labels layer.

A dock of its own (napari lets users tabify docks), so the training dock stays short enough for a
laptop screen. The numbers come from :mod:`.core.measure` on a worker thread; the layer's scale
is the voxel spacing and the unit comes from the NIfTI header the layer was read with (or is
chosen by the user; never guessed). Clicking an object's row centres the view on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Labels
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from . import _layers
from ._metadata import NIFTI_HEADER
from ._qt_parts import LayerCombo, ask_path, button, notify_errors, row
from .core import files, io, measure

if TYPE_CHECKING:
    import napari

UNITS = {"unknown": "", "mm": "mm", "µm": "um", "m": "m"}
CLASS_COLUMNS = (("name", "class"), ("voxels", "voxels"), ("readable", "volume"), ("fraction", "%"))
OBJECT_COLUMNS = (("name", "class"), ("object", "#"), ("volume", "volume"), ("max_diameter", "max diam."))


def layer_unit(layer) -> str:
    """The unit a layer's scale is in, as the file it came from says ("" when unknown)."""
    header = layer.metadata.get(NIFTI_HEADER)
    return io.nifti_unit(header) if hasattr(header, "get_xyzt_units") else ""


class MeasureWidget(QWidget):
    """Pick a Labels layer, press Measure, read the tables, export CSV."""

    def __init__(self, napari_viewer: napari.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.classes: list[dict] = []
        self.objects: list[dict] = []
        self.measured = None  # the layer the tables describe
        self.worker = None
        self._build()
        self._layer_changed()

    def _build(self) -> None:
        form = QFormLayout(self)
        self.layer_combo = LayerCombo(self.viewer, Labels)
        self.layer_combo.currentIndexChanged.connect(self._layer_changed)
        self.unit_combo = QComboBox()
        self.unit_combo.addItems(list(UNITS))
        self.objects_box = QCheckBox("per object")
        self.objects_box.setChecked(True)
        self.measure_button = button("Measure", self.measure)
        self.status = QLabel("Pick a Labels layer (a prediction or any mask) and press Measure.")
        self.status.setWordWrap(True)
        self.class_table = _table([head for _, head in CLASS_COLUMNS])
        self.object_table = _table([head for _, head in OBJECT_COLUMNS])
        self.object_table.cellClicked.connect(self.go_to_object)
        form.addRow("Labels", self.layer_combo)
        form.addRow("Unit", row(self.unit_combo, self.objects_box))
        form.addRow(row(self.measure_button, button("Export CSV…", self.export_csv)))
        for widget in (self.status, self.class_table, self.object_table):
            form.addRow(widget)

    def _layer_changed(self, *_) -> None:
        layer = self.layer_combo.layer()
        unit = layer_unit(layer) if layer is not None else ""
        self.unit_combo.setCurrentText(next(k for k, v in UNITS.items() if v == unit))

    @property
    def unit(self) -> str:
        return UNITS[self.unit_combo.currentText()]

    def measure(self) -> None:
        """Measure the picked layer on a worker thread; the tables fill when it is done."""
        layer = self.layer_combo.layer()
        if layer is None:
            show_error("Pick a Labels layer to measure.")
            return
        with notify_errors():
            data = measure.check_mask(np.asarray(layer.data), f"Layer '{layer.name}'")
            spacing = _layers.spacing(layer)
            self.measure_button.setEnabled(False)
            self.status.setText(f"Measuring '{layer.name}'…")
            self.worker = _measure(data, spacing, self.objects_box.isChecked())
            self.worker.returned.connect(lambda result, target=layer: self._show(target, *result))
            self.worker.errored.connect(self._failed)
            self.worker.start()

    def _show(self, layer, classes: list[dict], objects: list[dict]) -> None:
        self.measured, self.classes, self.objects = layer, classes, objects
        shown = [{**r, "readable": measure.readable_volume(r["volume"], self.unit),
                  "fraction": f"{r['fraction']:.2%}"} for r in classes]
        _fill(self.class_table, shown, CLASS_COLUMNS)
        _fill(self.object_table, objects, OBJECT_COLUMNS)
        unit = measure.UNIT_NAMES[self.unit] if self.unit else "unknown unit (set it above)"
        self.status.setText(f"'{layer.name}': {len(objects)} objects; lengths in {unit}. "
                            "Click an object to go to it.")
        self.measure_button.setEnabled(True)

    def _failed(self, error: Exception) -> None:
        self.measure_button.setEnabled(True)
        self.status.setText("Measuring failed.")
        show_error(f"Measuring failed: {error}")

    def go_to_object(self, index: int, _column: int = 0) -> None:
        """Centre the view on object ``index`` of the table and show its class in the layer."""
        obj, layer = self.objects[index], self.measured
        if layer is None or layer not in self.viewer.layers:
            return
        voxel = np.array([obj[f"centroid_{a}"] for a in "zyx"]) / np.asarray(layer.scale[-3:])
        world = layer.data_to_world(np.concatenate([np.zeros(layer.ndim - 3), voxel]))
        self.viewer.dims.set_point(range(self.viewer.dims.ndim - 3, self.viewer.dims.ndim), world[-3:])
        self.viewer.camera.center = tuple(world[-3:])
        layer.selected_label = obj["class"]
        self.viewer.layers.selection.active = layer

    def export_csv(self, path: str | None = None) -> None:
        """Write the per-class table to ``path`` and the per-object one beside it (``-objects.csv``)."""
        if not self.classes:
            show_error("Measure a layer first.")
            return
        path = path or ask_path(self, "Export measurements", "CSV (*.csv)", save=True)
        if not path:
            return
        path = Path(path).with_suffix(".csv")
        targets = [(path, self.classes)]
        if self.objects:
            targets.append((path.with_name(path.stem + "-objects.csv"), self.objects))
        with notify_errors():
            for target, _ in targets:
                files.check_writable(target)
            for target, rows in targets:
                with files.atomic_write(target) as tmp:
                    tmp.write_text(measure.csv_text(rows))
            show_info(f"Measurements written to {', '.join(str(t) for t, _ in targets)}")


@thread_worker
def _measure(data: np.ndarray, spacing, objects: bool):
    return measure.class_table(data, spacing), measure.object_table(data, spacing) if objects else []


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    table.verticalHeader().setVisible(False)
    return table


def _fill(table: QTableWidget, rows: list[dict], columns) -> None:
    table.setRowCount(len(rows))
    for i, r in enumerate(rows):
        for j, (key, _) in enumerate(columns):
            value = r[key]
            text = _number(value) if isinstance(value, float) else str(value)
            table.setItem(i, j, QTableWidgetItem(text))


def _number(value: float) -> str:
    """Short enough for a narrow column: 73,850 rather than 7.385e+04."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
