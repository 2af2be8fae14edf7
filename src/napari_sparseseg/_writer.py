"""npe2 writers: save a 3D Labels layer as TIFF (spacing kept) or NIfTI (source affine kept).

The layer's ``scale`` becomes the TIFF spacing. For NIfTI, a layer on the grid of an image read
by our reader (its ``metadata`` holds the source affine and header, see
`napari_sparseseg._metadata`) gets exactly that affine and a copy of that header; any other
layer gets the affine ``diag(sx, sy, sz)`` offset by its ``translate``. Label values are
stored in the smallest unsigned type that holds them (`napari_sparseseg.core.io`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_sparseseg._metadata import volume_like
from napari_sparseseg.core import files, io

_WRITABLE = ("tiff", "nifti")


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a 3D labels array to TIFF or NIfTI, chosen by the suffix of `path`.

    Parameters
    ----------
    path : str
        Target file ending in ``.tif``, ``.tiff``, ``.nii`` or ``.nii.gz``.
    data : array_like
        Labels in ``(z, y, x)`` order.
    meta : dict
        Layer attributes (``'scale'``, ``'metadata'``, ``'translate'``).

    Returns
    -------
    list of str
        The written path.
    """
    _labels_format(path)
    if meta.get("multiscale") or np.ndim(data) != 3:
        shape = "multiscale" if meta.get("multiscale") else f"shape {np.shape(data)}"
        raise ValueError(f"Cannot write {path}: only 3D labels can be written (z, y, x), got {shape}.")
    files.check_writable(Path(path))
    array = np.asarray(data)
    io.write_volume(path, array, like=volume_like(array.shape, meta))
    return [str(path)]


def _labels_format(path: str) -> str:
    """``'tiff'`` or ``'nifti'`` from the suffix of `path`; ValueError for anything else."""
    try:
        fmt = io.file_format(path)
    except ValueError:
        fmt = None
    if fmt not in _WRITABLE:
        raise ValueError(f"Cannot write {path}: labels are saved as .tif, .tiff, .nii or .nii.gz.")
    return fmt


def _write_family(path: str, data: Any, meta: dict, fmt: str) -> list[str]:
    """Check that `path` has a suffix of format `fmt`, then `write_labels`."""
    if _labels_format(path) != fmt:
        suffixes = ".tif or .tiff" if fmt == "tiff" else ".nii or .nii.gz"
        raise ValueError(f"Cannot write {path}: the {fmt.upper()} writer needs a {suffixes} file name.")
    return write_labels(path, data, meta)


def write_labels_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 writer: a 3D labels layer (``data`` z, y, x; ``meta`` its attributes) to an ImageJ
    ``.tif``/``.tiff`` with its spacing; returns the written path in a list."""
    return _write_family(path, data, meta, "tiff")


def write_labels_nifti(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 writer: a 3D labels layer to ``.nii``/``.nii.gz`` with the source affine when known;
    returns the written path in a list."""
    return _write_family(path, data, meta, "nifti")
