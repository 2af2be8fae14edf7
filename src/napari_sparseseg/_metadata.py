"""Geometry that travels with napari layers: the contract shared by reader, writers and widget.

A layer read from NIfTI carries the source affine and header in ``layer.metadata`` under
`NIFTI_AFFINE` and `NIFTI_HEADER`, and the file it came from under `SOURCE_PATH`. Its
``scale`` is the voxel spacing ``(z, y, x)``. `volume_like` turns layer attributes back into
the ``like`` volume of `io.write_volume`, so an exported mask lands on the source grid:

- source affine and header are reused when the layer's shape and scale match the header's
  grid (shape ``(k, j, i)`` reversed, zooms reversed);
- otherwise (no NIfTI source, or another grid) the affine is ``diag(sx, sy, sz)`` with the
  layer's ``translate`` reversed into NIfTI ``(x, y, z)`` order as its offset.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from napari_sparseseg.core import io

NIFTI_AFFINE = "nifti_affine"
NIFTI_HEADER = "nifti_header"
SOURCE_PATH = "source_path"
_KEYS = (NIFTI_AFFINE, NIFTI_HEADER, SOURCE_PATH)


def layer_metadata(volume: io.Volume) -> dict:
    """Return the ``metadata`` dict for a layer read from `volume`.

    Parameters
    ----------
    volume : io.Volume
        A volume returned by `io.read_volume`.

    Returns
    -------
    dict
        `NIFTI_AFFINE` (4x4 array) and `NIFTI_HEADER` when the volume has them,
        `SOURCE_PATH` (str) when it has a path.
    """
    meta: dict = {}
    if volume.affine is not None:
        meta[NIFTI_AFFINE] = np.array(volume.affine, dtype=float)
    if volume.header is not None:
        meta[NIFTI_HEADER] = volume.header
    if volume.path is not None:
        meta[SOURCE_PATH] = str(volume.path)
    return meta


def _last3(values, default: float) -> tuple[float, float, float]:
    """The last three entries of `values` (z, y, x) as floats, `default` when missing."""
    if values is None:
        return (default,) * 3
    values = tuple(float(v) for v in values)[-3:]
    return (default,) * (3 - len(values)) + values


def _source_matches(shape, spacing, affine, header) -> bool:
    """True when a NIfTI `header` describes the grid of a ``(z, y, x)`` array of `shape`."""
    if affine is None or not isinstance(header, nib.Nifti1Header):
        return False
    grid = tuple(header.get_data_shape()[:3])[::-1]
    zooms = tuple(z if z > 0 else 1.0 for z in header.get_zooms()[:3])[::-1]
    return grid == tuple(shape[-3:]) and len(zooms) == 3 and np.allclose(zooms, spacing, rtol=1e-5)


def _fresh_header(affine: np.ndarray, shape) -> nib.Nifti1Header:
    """A NIfTI-1 header whose qform and sform are `affine`, for a ``(z, y, x)`` `shape`."""
    header = nib.Nifti1Header()
    header.set_data_shape(tuple(shape[-3:])[::-1])
    header.set_qform(affine, code="aligned")
    header.set_sform(affine, code="aligned")
    return header


def volume_like(shape, meta: dict) -> io.Volume:
    """Rebuild the ``like`` volume for `io.write_volume` from napari layer attributes.

    Parameters
    ----------
    shape : tuple of int
        Shape ``(z, y, x)`` of the array to be written.
    meta : dict
        Layer attributes as in ``layer.as_layer_data_tuple()[1]``: ``'scale'``,
        ``'metadata'`` and optionally ``'translate'``.

    Returns
    -------
    io.Volume
        Zero-copy ``data`` of `shape`, spacing from the last three scale entries,
        and the source affine/header when the grid matches, else an affine built
        from scale and translate with a fresh NIfTI header.
    """
    spacing = _last3(meta.get("scale"), 1.0)
    layer_meta = meta.get("metadata") or {}
    affine, header = layer_meta.get(NIFTI_AFFINE), layer_meta.get(NIFTI_HEADER)
    if not _source_matches(shape, spacing, affine, header):
        offset = _last3(meta.get("translate"), 0.0)[::-1]
        affine = np.diag([*spacing[::-1], 1.0])
        affine[:3, 3] = offset
        header = _fresh_header(affine, shape)
    data = np.broadcast_to(np.uint8(0), tuple(shape))
    return io.Volume(data, spacing, affine=np.asarray(affine, dtype=float), header=header)


def geometry_for(layer_meta: dict) -> dict:
    """Return layer kwargs that put a new layer on the grid of an existing layer.

    Parameters
    ----------
    layer_meta : dict
        Attributes of the existing layer, as in ``layer.as_layer_data_tuple()[1]``.

    Returns
    -------
    dict
        ``'scale'`` and ``'translate'`` (when present in `layer_meta`) and
        ``'metadata'`` holding only the `NIFTI_AFFINE`, `NIFTI_HEADER` and
        `SOURCE_PATH` entries.
    """
    source = layer_meta.get("metadata") or {}
    geometry: dict = {"metadata": {key: source[key] for key in _KEYS if key in source}}
    for key in ("scale", "translate"):
        if layer_meta.get(key) is not None:
            geometry[key] = tuple(float(v) for v in layer_meta[key])
    return geometry
