"""Create and update the plugin's layers and move the viewer; no training logic here.

The user's annotation layer is only ever read. Predictions, probabilities and
uncertainty go to layers of their own on the image's grid.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from ._metadata import geometry_for
from .core.labels import class_name

if TYPE_CHECKING:
    import napari

NAMES_KEY = "class_names"  # annotation layer metadata: names of values 1, 2, ...
PALETTE = (
    (0.55, 0.55, 0.60, 1.0),  # 1 background
    (0.90, 0.25, 0.20, 1.0),
    (0.20, 0.75, 0.30, 1.0),
    (0.25, 0.45, 0.95, 1.0),
    (0.95, 0.80, 0.15, 1.0),
    (0.70, 0.30, 0.85, 1.0),
    (0.15, 0.80, 0.85, 1.0),
)


def default_color(value: int) -> tuple:
    """Palette colour of annotation value ``value`` (1 = background)."""
    return PALETTE[(value - 1) % len(PALETTE)]


def color_dict(colors: dict[int, tuple]) -> dict:
    """Label value -> RGBA: 0 transparent, ``colors`` for the given values, black for the rest."""
    return {None: (0.0, 0.0, 0.0, 1.0), 0: (0.0, 0.0, 0.0, 0.0)} | dict(colors)


def colormap(colors: dict[int, tuple]):
    """A direct label colormap of :func:`color_dict`."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict=color_dict(colors))


def new_annotation_layer(viewer: napari.Viewer, image, class_names=("background", "class 1"), region=None):
    """Add an empty Labels layer on ``image``'s grid with value 1 = background, 2.. = classes.

    ``region`` = (offset, shape) in image voxels makes it cover only that crop (large images).
    """
    grid = _grid(image)
    offset, shape = region if region is not None else ((0, 0, 0), image.data.shape)
    grid["translate"] = tuple(t + o * s for t, o, s in zip(grid["translate"], offset, grid["scale"]))
    names = list(class_names)
    layer = viewer.add_labels(
        np.zeros(shape, np.uint8),
        name=f"{image.name} annotations",
        metadata={NAMES_KEY: names} | grid["metadata"],
        **{k: v for k, v in grid.items() if k != "metadata"},
    )
    set_class_colors(layer, {v: default_color(v) for v in range(1, len(names) + 1)})
    layer.selected_label = 2
    return layer


def set_class_colors(layer, colors: dict[int, tuple]) -> None:
    """Colour annotation values (1 = background, 2.. = classes)."""
    layer.colormap = colormap(colors)


def class_colors(layer, n_values: int) -> dict[int, tuple]:
    """Colours the annotation layer shows for values 1..n_values."""
    return {v: tuple(float(c) for c in layer.get_color(v)) for v in range(1, n_values + 1)}


def annotation_colors(layer) -> dict[int, tuple]:
    """The colours of an annotation layer's values (the defaults for values 1..7 without a layer)."""
    if layer is None:
        return {v: default_color(v) for v in range(1, 8)}
    return class_colors(layer, max(len(class_names(layer)), 2))


def add_class(layer) -> None:
    """One more class on the annotation layer: a default name and colour for the next value."""
    names = class_names(layer)
    names.append(class_name(len(names)))
    layer.metadata[NAMES_KEY] = names
    colors = class_colors(layer, len(names) - 1)
    colors[len(names)] = default_color(len(names))
    set_class_colors(layer, colors)


def remove_class(layer, value: int) -> int:
    """Remove annotation ``value`` (a class, not background): its strokes become unpainted and the
    values above it move down by one, so no gap is left. Returns how many voxels were unpainted."""
    names = class_names(layer)
    what = f"Value {value} is not a class of '{layer.name}'"
    if not 2 <= value <= len(names):
        raise ValueError(f"{what}; select a class row (not background).")
    colors = class_colors(layer, len(names))
    data = np.asarray(layer.data)
    removed = int(np.count_nonzero(data == value))
    data[data == value] = 0
    data[data > value] -= 1
    layer.metadata[NAMES_KEY] = names[: value - 1] + names[value:]
    set_class_colors(layer, {v: colors[v + (v >= value)] for v in range(1, len(names))})
    layer.refresh()
    layer.events.data(value=layer.data)
    return removed


def class_names(layer) -> list[str]:
    """Names of values 1.. stored on the annotation layer (defaults when missing)."""
    names = list(layer.metadata.get(NAMES_KEY, []))
    top = max(int(layer.data.max()), len(names), 2)
    return names + [class_name(v - 1) for v in range(len(names) + 1, top + 1)]


@contextmanager
def keeping_selection(viewer):
    """Add layers without taking the user's active layer (napari selects every new layer)."""
    active = viewer.layers.selection.active
    try:
        yield
    finally:
        if active is not None and active in viewer.layers:
            viewer.layers.selection.active = active


def show_prediction(viewer, image, labels: np.ndarray, colors: dict[int, tuple], layer=None):
    """Update ``layer`` in place with ``labels``, or add '<image> prediction'; returns the layer.

    ``colors`` are the annotation colours: prediction value k uses annotation value k+1's.
    """
    layer = _reusable(viewer, layer, labels.shape)
    shifted = {v - 1: c for v, c in colors.items() if v > 1}
    if layer is None:
        with keeping_selection(viewer):
            layer = viewer.add_labels(labels, name=f"{image.name} prediction", opacity=0.5, **_grid(image))
    else:
        layer.data[...] = labels
    layer.colormap = colormap(shifted)
    layer.refresh()
    return layer


def show_lazy_prediction(viewer, image, path, colors: dict[int, tuple], layer=None):
    """Show the OME-Zarr mask at ``path`` (read chunk by chunk as napari draws) instead of ``layer``."""
    import dask.array as da

    if layer is not None and layer in viewer.layers:
        viewer.layers.remove(layer)
    data = da.from_zarr(str(path), component="0")
    with keeping_selection(viewer):
        layer = viewer.add_labels(data, name=f"{image.name} prediction", opacity=0.5, **_grid(image))
    layer.colormap = colormap({v - 1: c for v, c in colors.items() if v > 1})
    return layer


def show_prediction_plane(viewer, image, axis: int, index: int, plane: np.ndarray, colors, layer=None):
    """Write a live preview plane into the prediction ``layer`` (created empty if needed); returns it."""
    layer = ensure_prediction_layer(viewer, image, colors, layer)
    region = [slice(None)] * 3
    region[axis] = index
    layer.data[tuple(region)] = plane
    layer.refresh()
    return layer


def ensure_prediction_layer(viewer, image, colors, layer=None):
    """The prediction layer, created empty if missing (at Train, not mid-training: it is slow)."""
    layer = _reusable(viewer, layer, image.data.shape)
    if layer is None:
        layer = show_prediction(viewer, image, np.zeros(image.data.shape, np.uint8), colors)
    return layer


def show_image(viewer, image, name: str, data: np.ndarray, layer=None, **kwargs):
    """Update ``layer`` or add the Image layer ``name`` on ``image``'s grid (extra leading axes allowed)."""
    layer = _reusable(viewer, layer, data.shape)
    if layer is not None:  # in place: removing a layer costs napari a full garbage collection
        layer.data = data
        return layer
    grid = _grid(image)
    extra = data.ndim - 3
    grid["scale"] = (1.0,) * extra + tuple(grid["scale"])
    grid["translate"] = (0.0,) * extra + tuple(grid["translate"])
    with keeping_selection(viewer):
        return viewer.add_image(data, name=name, **grid, **kwargs)


def spacing(layer) -> tuple[float, float, float]:
    """The voxel spacing (z, y, x) of a 3D layer: its scale, checked positive and finite."""
    from .core.io import as_spacing

    return as_spacing(layer.scale[-3:])


def match_grid(image, layer) -> None:
    """Put ``layer`` (its last three axes) on ``image``'s scale and translate."""
    grid, extra = _grid(image), layer.ndim - 3
    layer.scale = (1.0,) * extra + tuple(grid["scale"])
    layer.translate = (0.0,) * extra + tuple(grid["translate"])


def check_volume(image) -> None:
    """Raise a ValueError unless ``image`` is a single-channel 3D layer."""
    if image.rgb:
        raise ValueError(f"'{image.name}' is an RGB image; convert it to one channel first.")
    if image.ndim != 3:
        raise ValueError(f"'{image.name}' has {image.ndim} dimensions; a 3D (z, y, x) volume is needed.")


def _reusable(viewer, layer, shape):
    """``layer`` if it is still in the viewer with this shape; a layer of another shape is removed."""
    if layer is None or layer not in viewer.layers:
        return None
    if layer.data.shape != tuple(shape):
        viewer.layers.remove(layer)
        return None
    return layer


def _grid(image) -> dict:
    _, meta, _ = image.as_layer_data_tuple()
    geometry = geometry_for(meta)
    return {"scale": tuple(geometry["scale"]), "translate": tuple(geometry["translate"]),
            "metadata": dict(geometry["metadata"])}


# ------------------------------------------------------------------ navigation


def show_plane(viewer, axis: int) -> None:
    """Slice along ``axis`` (0: xy plane, 1: xz, 2: yz) in the 2D view."""
    viewer.dims.ndisplay = 2
    viewer.dims.order = (axis, *[a for a in range(3) if a != axis])


def go_to(viewer, image, axis: int, index: int) -> None:
    """Show the plane ``index`` along data ``axis`` of ``image``."""
    show_plane(viewer, axis)
    point = np.zeros(3)
    point[axis] = index
    world = image.data_to_world(point)
    viewer.dims.set_point(axis, float(world[axis]))


def current_plane(viewer, image) -> tuple[int, int] | None:
    """(axis, data index) of the plane on screen, or None in 3D view."""
    if viewer.dims.ndisplay != 2:
        return None
    axis = int(viewer.dims.order[0])
    index = image.world_to_data(viewer.dims.point)[axis]
    return axis, int(np.clip(round(float(index)), 0, image.data.shape[axis] - 1))


# ------------------------------------------------------------------ the plugin's own layers


class PluginLayers:
    """Shows and updates the plugin's layers of each image, remembered in ``session`` by identity.

    Each new one is kept on its image's grid when the user changes the image's scale or translate;
    ``added`` is called after one is remembered (the dock's pickers then stop offering it).
    """

    def __init__(self, viewer, session, added):
        self.viewer, self.session, self.added = viewer, session, added

    def prediction(self, image, labels: np.ndarray, colors):
        return self._keep(image, "prediction", show_prediction(
            self.viewer, image, labels, colors, self.session.layer(image, "prediction")))

    def plane(self, image, axis: int, index: int, plane: np.ndarray, colors):
        return self._keep(image, "prediction", show_prediction_plane(
            self.viewer, image, axis, index, plane, colors, self.session.layer(image, "prediction")))

    def empty(self, image, colors):
        """The prediction layer made at Train (not mid-training: creating a layer is slow)."""
        return self._keep(image, "prediction", ensure_prediction_layer(
            self.viewer, image, colors, self.session.layer(image, "prediction")))

    def lazy(self, image, path, colors):
        return self._keep(image, "prediction", show_lazy_prediction(
            self.viewer, image, path, colors, self.session.layer(image, "prediction")))

    def extra(self, image, kind: str, data: np.ndarray, **kwargs):
        """The probabilities or uncertainty layer (0..255), updated in place."""
        return self._keep(image, kind, show_image(self.viewer, image, f"{image.name} {kind}", data,
                                                  self.session.layer(image, kind), contrast_limits=(0, 255),
                                                  **kwargs))

    def _keep(self, image, kind: str, layer):
        self.session.keep(image, kind, layer)
        self.added()
        for event in (image.events.scale, image.events.translate):
            event.connect(self._follow_grid)  # connecting twice is a no-op
        return layer

    def _follow_grid(self, event) -> None:
        image = event.source
        for kind in ("prediction", "probabilities", "uncertainty"):
            layer = self.session.layer(image, kind)
            if layer is not None:
                match_grid(image, layer)
