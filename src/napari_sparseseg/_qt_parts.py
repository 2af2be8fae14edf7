"""Small Qt building blocks of the dock widget: layer picker, class table, slice list, loss plot."""

from __future__ import annotations

from napari.utils.notifications import show_error
from qtpy.QtCore import QPointF, Qt, Signal
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import (
    QColorDialog,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .core.labels import class_name
from .core.uncertainty import AXIS_PLANES


class LayerCombo(QComboBox):
    """A combo box listing the viewer's layers of one type, kept up to date.

    The choice follows the layer itself, not its name: renaming it keeps it chosen (and shown
    under its new name).
    """

    def __init__(self, viewer, layer_type, parent=None, allow_none: bool = False, exclude=None):
        super().__init__(parent)
        self.viewer, self.layer_type, self.allow_none = viewer, layer_type, allow_none
        self.exclude = exclude or (lambda layer: False)  # e.g. the plugin's own layers
        self._layers: list = []
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed,
                      viewer.layers.events.reordered):
            event.connect(self.refresh)
        self.refresh()

    def refresh(self, *_) -> None:
        current = self.layer()
        layers = [layer for layer in self.viewer.layers
                  if isinstance(layer, self.layer_type) and not self.exclude(layer)]
        for layer in layers:
            layer.events.name.connect(self.refresh)  # connecting twice is a no-op
        self._layers = [None] * self.allow_none + layers
        self.blockSignals(True)
        self.clear()
        self.addItems(["" if layer is None else layer.name for layer in self._layers])
        self.setCurrentIndex(next((i for i, layer in enumerate(self._layers) if layer is current), 0))
        self.blockSignals(False)
        if self.layer() is not current:
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self):
        """The selected layer, or None."""
        index = self.currentIndex()
        return self._layers[index] if 0 <= index < len(self._layers) else None

    def select(self, layer) -> None:
        self.refresh()
        self.setCurrentIndex(next((i for i, known in enumerate(self._layers) if known is layer), 0))


class MetricsTable(QTableWidget):
    """Evaluation results: one row per class (by name) and the foreground mean, 3 decimals."""

    COLUMNS = (("dice", "Dice"), ("jaccard", "IoU"), ("sensitivity", "sens."), ("specificity", "spec."),
               ("f_beta", "Fβ"), ("volumetric_similarity", "vol. sim."))

    def __init__(self, parent=None):
        super().__init__(0, len(self.COLUMNS), parent)
        self.setHorizontalHeaderLabels([title for _, title in self.COLUMNS])
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setToolTip("Per class: Dice, Jaccard (IoU), sensitivity, specificity, F-beta, volume similarity")
        self.setVisible(False)

    def show_result(self, result: dict | None) -> None:
        """Fill the table from an ``evaluate`` result (None: empty and hidden)."""
        rows = [] if result is None else [*result["classes"].items(), ("mean", result["mean_foreground"])]
        self.setRowCount(len(rows))
        self.setVerticalHeaderLabels([name for name, _ in rows])
        for r, (_, values) in enumerate(rows):
            for c, (key, _) in enumerate(self.COLUMNS):
                self.setItem(r, c, QTableWidgetItem(f"{values[key]:.3f}"))
        self.resizeColumnsToContents()
        self.setVisible(bool(rows))


class ClassTable(QTableWidget):
    """Annotation values with editable names and colours (value 1 = background)."""

    names_changed = Signal(list)
    color_changed = Signal(int, tuple)

    def __init__(self, parent=None):
        super().__init__(0, 3, parent)
        self.setHorizontalHeaderLabels(["value", "name", "colour"])
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setVisible(False)
        self.setMinimumHeight(110)
        self.itemChanged.connect(lambda *_: self.names_changed.emit(self.names()))

    def set_classes(self, names: list[str], colors: dict[int, tuple]) -> None:
        self.blockSignals(True)
        self.setRowCount(len(names))
        for row, name in enumerate(names):
            value = QTableWidgetItem(str(row + 1))
            value.setFlags(value.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.setItem(row, 0, value)
            self.setItem(row, 1, QTableWidgetItem(name))
            self.setCellWidget(row, 2, self._swatch(row + 1, colors.get(row + 1, (1, 1, 1, 1))))
        self.blockSignals(False)

    def names(self) -> list[str]:
        return [self.item(row, 1).text().strip() or class_name(row) for row in range(self.rowCount())]

    def _swatch(self, value: int, rgba: tuple) -> QPushButton:
        button = QPushButton()
        button.setToolTip(f"Colour of value {value} in the annotation and prediction layers: click to change")
        color = QColor.fromRgbF(*[float(c) for c in rgba])
        button.setStyleSheet(f"background-color: {color.name()};")
        button.clicked.connect(lambda: self._pick(value, color))
        return button

    def _pick(self, value: int, current: QColor) -> None:
        chosen = QColorDialog.getColor(current, self, f"Colour of value {value}")
        if chosen.isValid():
            self.color_changed.emit(value, chosen.getRgbF())


class SliceList(QListWidget):
    """Painted planes per axis; activating an entry emits (axis, index)."""

    jump = Signal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(120)
        self.itemClicked.connect(self._clicked)

    def set_planes(self, planes: list[list[int]]) -> None:
        self.clear()
        for axis, indices in enumerate(planes):
            label = "zyx"[axis]
            header = QListWidgetItem(f"{AXIS_PLANES[axis]} ({label}): {len(indices)} painted")
            header.setFlags(Qt.ItemFlag.NoItemFlags)
            self.addItem(header)
            for index in indices:
                item = QListWidgetItem(f"    {label} = {index}")
                item.setData(Qt.ItemDataRole.UserRole, (axis, index))
                self.addItem(item)

    def _clicked(self, item) -> None:
        target = item.data(Qt.ItemDataRole.UserRole)
        if target is not None:
            self.jump.emit(*target)


class LossPlot(QWidget):
    """A minimal line plot of the training loss."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.values: list[float] = []
        self.setMinimumHeight(60)

    def add(self, value: float) -> None:
        self.values.append(float(value))
        self.update()

    def clear(self) -> None:
        self.values = []
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(30, 30, 35))
        if len(self.values) < 2:
            return
        top, bottom = max(self.values), min(self.values)
        span = (top - bottom) or 1.0
        w, h = self.width() - 4, self.height() - 4
        points = [
            QPointF(2 + w * i / (len(self.values) - 1), 2 + h * (top - v) / span)
            for i, v in enumerate(self.values)
        ]
        painter.setPen(QPen(QColor(120, 200, 255), 1.5))
        painter.drawPolyline(QPolygonF(points))
        painter.setPen(QColor(200, 200, 200))
        painter.drawText(6, 14, f"loss {self.values[-1]:.3f}")


class notify_errors:
    """Context manager turning a user error (ValueError) into a napari error notification."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is not None and issubclass(kind, ValueError):
            show_error(str(error))
            return True
        return False


def ask_yes(parent, title: str, question: str) -> bool:
    """A Yes/No question; True for Yes."""
    from qtpy.QtWidgets import QMessageBox

    return QMessageBox.question(parent, title, question) == QMessageBox.StandardButton.Yes


def ask_path(parent, title: str, filters: str, save: bool = False) -> str:
    dialog = QFileDialog.getSaveFileName if save else QFileDialog.getOpenFileName
    path, _ = dialog(parent, title, "", filters)
    return path


def button(text: str, slot, tip: str = "") -> QPushButton:
    button = QPushButton(text)
    button.clicked.connect(lambda *_: slot())
    button.setToolTip(tip)
    return button


def scrolling(inner: QWidget, outer: QWidget) -> None:
    """Fill ``outer`` with ``inner`` in a frameless scroll area that scrolls only vertically."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(inner)
    layout = QVBoxLayout(outer)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(scroll)


def row(*widgets) -> QWidget:
    row, layout = QWidget(), QHBoxLayout()
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    row.setLayout(layout)
    return row


def combo(items, current: str) -> QComboBox:
    combo = QComboBox()
    combo.addItems(list(items))
    combo.setCurrentText(current)
    return combo


def spin(spin, low, high, value, suffix: str = ""):
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setSuffix(suffix)
    return spin
