"""The dock's Layers section: the image to segment, the Labels layer painted, and its classes.

What it needs from the dock is passed in explicitly: the session (whose own layers the
annotation picker leaves out) and what to do after the classes change.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QFormLayout, QGroupBox

from . import _layers, _lazy
from ._qt_parts import ClassTable, LayerCombo, ask_yes, button, notify_errors, row
from ._session import Session


class InputsPanel(QGroupBox):
    """The image and annotation pickers, New annotation layer, and the class table."""

    def __init__(self, viewer, session: Session, changed: Callable[[], None]):
        super().__init__("Layers")
        self.viewer, self.changed = viewer, changed
        self.image_combo = LayerCombo(viewer, Image)
        self.annotation_combo = LayerCombo(viewer, Labels, exclude=session.own)
        self.new_layer_button = button("New annotation layer", self.new_annotation_layer,
                                       "An empty Labels layer on the image's grid to paint (1 = background)")
        self.class_table = ClassTable()
        self.class_table.setToolTip("Label values you paint: double-click a name to rename the class")
        self.image_combo.setToolTip("The image to segment")
        self.annotation_combo.setToolTip("The Labels layer you paint: 0 unpainted, 1 background, k+1 class k")
        self.class_table.names_changed.connect(self._names_edited)
        self.class_table.color_changed.connect(self._color_edited)
        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Annotations", self.annotation_combo)
        form.addRow(self.new_layer_button)
        form.addRow(self.class_table)
        form.addRow(row(button("Add class", self.add_class, "One more class to paint (the next label value)"),
                        button("Remove class", self.remove_class, "Remove the selected class: its strokes "
                               "are unpainted and the classes above it move down one value")))
        self.setLayout(form)

    def image(self) -> Image:
        layer = self.image_combo.layer()
        if layer is None:
            raise ValueError("Select an image layer first (open a volume or a sample).")
        return layer

    def annotations(self) -> Labels:
        layer = self.annotation_combo.layer()
        if layer is None:
            raise ValueError("Select an annotation layer or press 'New annotation layer'.")
        return layer

    def new_annotation_layer(self) -> Labels | None:
        """Add an empty annotation layer on the selected image's grid."""
        with notify_errors():
            image = self.image()
            _layers.check_volume(image)
            region = None
            if _lazy.is_lazy(image):  # too big to paint whole: a crop around the plane on screen
                shape = _lazy.full_resolution(image).shape
                region = _lazy.crop_box(shape, _lazy.view_centre(self.viewer, image))
            layer = _layers.new_annotation_layer(self.viewer, image, region=region)
            self.annotation_combo.select(layer)
            self.show_classes(layer)  # the picker saw the layer before its colours were set
            return layer
        return None

    def add_class(self) -> None:
        with notify_errors():
            _layers.add_class(self.annotations())
            self.changed()

    def remove_class(self) -> None:
        """Remove the selected class (after asking, when it is painted); its strokes are unpainted."""
        with notify_errors():
            layer, value = self.annotations(), self.class_table.currentRow() + 1
            painted = int(np.count_nonzero(np.asarray(layer.data) == value)) if value >= 2 else 0
            question = f"Unpaint the {painted:,} voxels painted with value {value} in '{layer.name}'?"
            if painted and not ask_yes(self, "Remove class", question):
                return
            _layers.remove_class(layer, value)
            show_info(f"Class {value} removed; {painted:,} painted voxels are unpainted again.")
            self.changed()

    def show_classes(self, layer) -> None:
        """Show ``layer``'s class names and colours (an empty table for None)."""
        if layer is None:
            self.class_table.set_classes([], {})
            return
        names = _layers.class_names(layer)
        self.class_table.set_classes(names, _layers.class_colors(layer, len(names)))

    def _names_edited(self, names: list[str]) -> None:
        layer = self.annotation_combo.layer()
        if layer is not None:
            layer.metadata[_layers.NAMES_KEY] = names

    def _color_edited(self, value: int, rgba: tuple) -> None:
        layer = self.annotation_combo.layer()
        if layer is not None:
            colors = _layers.class_colors(layer, max(value, self.class_table.rowCount()))
            colors[value] = rgba
            _layers.set_class_colors(layer, colors)
            self.show_classes(layer)
