"""Image layers too large for memory (dask, zarr or multiscale data): annotate a crop, predict all.

The annotation layer of such an image covers a crop (a box around the plane on screen), placed
with ``translate`` on the image's grid. Training reads only that crop of the image; Predict sends
the whole (lazy, picklable) array to the worker, which writes the mask to an OME-Zarr store chunk
by chunk (:mod:`.core.chunked`); the result comes back as a Labels layer read lazily from it.
No Qt here.
"""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np

CROP = (64, 256, 256)  # voxels (z, y, x) of a new annotation layer on a large image


def is_lazy(layer) -> bool:
    """True for layers whose data is not an in-memory numpy array (dask, zarr, multiscale)."""
    return bool(getattr(layer, "multiscale", False)) or not isinstance(layer.data, np.ndarray)


def full_resolution(layer):
    """The level-0 array of ``layer`` (the data itself unless it is multiscale)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def lazy_source(layer) -> da.Array:
    """The layer's full-resolution data as a dask array the worker process can receive."""
    data = full_resolution(layer)
    array = data if isinstance(data, da.Array) else da.from_array(data, chunks="auto")
    try:
        pickle.dumps(array)
    except Exception as err:
        raise ValueError(f"'{layer.name}' is backed by data that cannot be sent to the prediction "
                         "process; open it from a zarr or TIFF file.") from err
    return array


def crop_box(shape, centre, size=None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(offset, shape) of a box of ``size`` (default :data:`CROP`, capped by ``shape``) around ``centre``."""
    shape = tuple(int(s) for s in shape)
    box = tuple(min(s, c) for s, c in zip(shape, size or CROP))
    offset = tuple(int(np.clip(round(m) - b // 2, 0, s - b)) for m, b, s in zip(centre, box, shape))
    return offset, box


def view_centre(viewer, image) -> np.ndarray:
    """Data coordinates of the viewer's current point (centre of the plane on screen)."""
    return np.asarray(image.world_to_data(viewer.dims.point))[-3:]


def annotation_region(image, annotation) -> tuple[slice, ...]:
    """The part of ``image`` that ``annotation`` (a crop on the image's grid) covers."""
    shape = tuple(full_resolution(image).shape[-3:])
    step = np.asarray(image.scale[-3:], float)
    offset = (np.asarray(annotation.translate[-3:], float) - np.asarray(image.translate[-3:], float)) / step
    start = np.round(offset).astype(int)
    size = annotation.data.shape[-3:]
    same_scale = np.allclose(np.asarray(annotation.scale[-3:], float), step)
    if not same_scale or np.any(start < 0) or np.any(start + size > shape) or not np.allclose(offset, start):
        raise ValueError(f"'{annotation.name}' (shape {tuple(size)}) does not lie on the grid of "
                         f"'{image.name}' (shape {shape}); make a new annotation layer for this image.")
    return tuple(slice(int(a), int(a) + int(n)) for a, n in zip(start, size))


def image_crop(image, annotation) -> np.ndarray:
    """The image voxels under ``annotation``: its crop of a large image, else the whole image."""
    data = full_resolution(image)
    if not is_lazy(image):
        return np.asarray(data)
    return np.asarray(data[annotation_region(image, annotation)])
