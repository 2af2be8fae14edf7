"""npe2 reader: open NIfTI volumes (``.nii``, ``.nii.gz``) and 3D TIFFs with their spacing.

TIFF: a single 3D (z, y, x) series up to :data:`MAX_TIFF_BYTES` opens with the spacing of its
ImageJ or OME metadata as ``scale`` (napari's own TIFF reader drops it, so a mask this plugin
exported would not overlay its scan); integer masks open as Labels by the rule below. Other
TIFFs (RGB, 2D, 4D, larger) are left to napari's reader (None). NIfTI:

Axis order follows `napari_sparseseg.core.io`: napari axis 0 is NIfTI ``k``, axis 1 is ``j``
and axis 2 is ``i`` (``data[z, y, x] == nifti[i=x, j=y, k=z]``), and the layer ``scale`` is
the header zooms reversed, ``(dz, dy, dx)``. The layer has no translate and no napari affine:
the voxel grid is shown axis-aligned. The NIfTI affine, the header and the file path are kept
in ``layer.metadata`` (keys in `napari_sparseseg._metadata`) so an exported mask gets the
source affine back.

Labels or image: a file opens as a Labels layer when its data, as read (nibabel returns
scaled data as float), has an integer or bool dtype, no negative value and at most
`MAX_LABELS` distinct values; anything else opens as an image (CT in Hounsfield units,
16-bit microscopy, probabilities).

Extra dimensions: trailing singleton axes (``(i, j, k, 1)``) are dropped. Other trailing axes
(time or channel, ``(i, j, k, t)``) are moved to the front, giving ``(t, z, y, x)`` with scale
``(1.0, dz, dy, dx)``: napari shows a slider over 3D volumes (no ``channel_axis`` split).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_sparseseg._metadata import layer_metadata
from napari_sparseseg.core import io

if TYPE_CHECKING:
    from collections.abc import Callable

    from napari.types import LayerDataTuple

MAX_LABELS = 64
MAX_TIFF_BYTES = 2 << 30  # larger TIFFs are left to readers that load lazily
_SUBSAMPLE = 2**20  # voxels looked at before scanning the whole volume
_CHUNK = 2**22


def _is_nifti(path) -> bool:
    return isinstance(path, str | Path) and str(path).lower().endswith((".nii", ".nii.gz"))


def _is_volume_tiff(path) -> bool:
    """A 3D single-series TIFF small enough to read whole (cheap: reads only the header)."""
    if not (isinstance(path, str | Path) and str(path).lower().endswith((".tif", ".tiff"))):
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            single = len(series.shape) == 3 and "S" not in series.axes  # not RGB(A)
            return single and series.size * series.dtype.itemsize <= MAX_TIFF_BYTES
    except Exception:  # not a TIFF we can read: another reader may
        return False


def get_reader(path) -> Callable | None:
    """Return `read` when `path` is a NIfTI file or a 3D TIFF (or a list of them), else None.

    Parameters
    ----------
    path : str, Path or list of them
        What napari asks to open.

    Returns
    -------
    callable or None
        `read`, or None so napari tries another reader.
    """
    paths = path if isinstance(path, list | tuple) else [path]
    if not paths or not all(_is_nifti(p) or _is_volume_tiff(p) for p in paths):
        return None
    return read


def read(path) -> list[LayerDataTuple]:
    """Read one NIfTI file (or each of a list) into napari layer data tuples.

    Parameters
    ----------
    path : str, Path or list of them
        NIfTI file(s).

    Returns
    -------
    list of LayerDataTuple
        One ``(data, attributes, 'image' | 'labels')`` per file.
    """
    if isinstance(path, list | tuple):
        return [layer for p in path for layer in read(p)]
    volume = io.read_volume(path)
    data = _napari_axes(volume.data) if _is_nifti(path) else volume.data
    name = Path(path).name
    name = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem
    kind = "labels" if looks_like_labels(data) else "image"
    if kind == "labels" and data.dtype == bool:
        data = data.astype(np.uint8)
    scale = (1.0,) * (data.ndim - 3) + volume.spacing[max(0, 3 - data.ndim) :]
    return [(data, {"name": name, "scale": scale, "metadata": layer_metadata(volume)}, kind)]


def _napari_axes(data: np.ndarray) -> np.ndarray:
    """Drop trailing singleton axes after the third; move other trailing axes to the front."""
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim > 3:
        data = np.moveaxis(data, (0, 1, 2), (-3, -2, -1))
    return data


def looks_like_labels(data: np.ndarray) -> bool:
    """True for integer data without negatives and with at most `MAX_LABELS` distinct values.

    A strided subsample is checked first so large images are rejected cheaply.

    Parameters
    ----------
    data : numpy.ndarray
        Array as read from the file.

    Returns
    -------
    bool
        Whether the array should open as a Labels layer.
    """
    if data.size == 0 or not (data.dtype == bool or np.issubdtype(data.dtype, np.integer)):
        return False
    step = max(1, round((data.size / _SUBSAMPLE) ** (1 / data.ndim)))
    return _few_values(data[(slice(None, None, step),) * data.ndim]) and _few_values(data)


def _few_values(data: np.ndarray) -> bool:
    """No negative value and at most `MAX_LABELS` distinct values."""
    if data.dtype == bool:
        return True
    low, high = int(data.min()), int(data.max())
    if low < 0:
        return False
    if high >= 2**16:
        return np.unique(data).size <= MAX_LABELS
    present = np.zeros(high + 1, dtype=bool)  # counting in chunks beats sorting the volume
    flat = data.ravel(order="K")
    for start in range(0, flat.size, _CHUNK):
        present[flat[start : start + _CHUNK]] = True
        if np.count_nonzero(present) > MAX_LABELS:
            return False
    return True
