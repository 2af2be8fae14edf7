"""Read and write volumes (TIFF, NIfTI, npy) with spacing and affine kept.

Every array is returned and accepted in napari's axis order ``(z, y, x)``
and ``spacing`` is a 3-tuple of floats in the same order.

NIfTI stores voxels in index order ``(i, j, k)``. Reading reverses the first three axes:
array axis 0 is NIfTI ``k``, axis 1 is ``j``, axis 2 is ``i`` (``data[z, y, x] ==
nifti[x, y, z]``); trailing axes (time, channel) stay after them. Writing reverses them back
and, when ``like`` came from a NIfTI file with the same grid, reuses its affine and a copy of
its header, so the result overlays the source in any viewer.

TIFF spacing comes from OME-XML ``PhysicalSize{Z,Y,X}`` or ImageJ metadata (``spacing`` for z,
1/``X/YResolution`` for y/x) and is written as ImageJ metadata in micrometres. Writers are
atomic: a hidden temporary file next to the target is moved into place.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile

from .files import atomic_write

SUFFIXES = (".tif", ".tiff", ".nii", ".nii.gz", ".npy")
_FORMATS = {".tif": "tiff", ".tiff": "tiff", ".nii": "nifti", ".nii.gz": "nifti", ".npy": "npy"}


def as_spacing(spacing) -> tuple[float, float, float]:
    """Return `spacing` as three positive finite floats or raise ValueError."""
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Spacing {spacing!r} is not a sequence of 3 numbers (z, y, x).") from exc
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"Spacing {spacing!r} must be 3 positive numbers in (z, y, x) order.")
    return values


@dataclass(frozen=True, eq=False)
class Volume:
    """An array in ``(z, y, x)`` order with the geometry of the file it came from.

    ``data`` is ``(z, y, x)`` for images and masks (other ndim possible when read);
    ``spacing`` is the voxel size in ``(z, y, x)`` order; ``affine`` (4x4, voxel
    ``(i, j, k)`` -> world) and ``header`` are those of the source NIfTI, else None;
    ``unit`` is the unit of ``spacing``: ``"mm"``, ``"um"``, ``"m"``, or ``""`` when the file
    does not say (NIfTI ``xyzt_units``, the ImageJ or OME unit of a TIFF; never guessed).
    """

    data: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    affine: np.ndarray | None = None
    header: object | None = None
    path: Path | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "spacing", as_spacing(self.spacing))
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))


def file_format(path) -> str:
    """Return ``'tiff'``, ``'nifti'`` or ``'npy'`` from the suffix of `path`.

    Parameters
    ----------
    path : str or Path
        File name; the suffix is matched case-insensitively.

    Returns
    -------
    str
        The format name.
    """
    name = Path(path).name.lower()
    suffix = ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix
    if suffix not in _FORMATS:
        raise ValueError(f"Unsupported file type for {path}: use one of {', '.join(SUFFIXES)}.")
    return _FORMATS[suffix]


def existing_file(path, what: str = "file") -> Path:
    """``path`` as a Path, or a ValueError saying it is missing or a folder (``what``: e.g. 'model')."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"Cannot read {path}: it is a folder, not a {what}; give the {what} inside it.")
    if not path.is_file():
        raise ValueError(f"Cannot read {path}: the {what} does not exist; check the path.")
    return path


def read_volume(path) -> Volume:
    """Read a TIFF, NIfTI or npy file into a `Volume` in ``(z, y, x)`` order.

    Parameters
    ----------
    path : str or Path
        File to read.

    Returns
    -------
    Volume
        Data, spacing and (for NIfTI) affine and header.
    """
    path = Path(path)
    fmt = file_format(path)
    existing_file(path)
    reader = {"tiff": _read_tiff, "nifti": _read_nifti, "npy": _read_npy}[fmt]
    try:
        return reader(path)
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise ValueError(f"Cannot read {path}: it is not a valid {fmt} file ({reason}).") from exc


def _read_npy(path: Path) -> Volume:
    return Volume(np.load(path, allow_pickle=False), path=path)


def _read_nifti(path: Path) -> Volume:
    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    n = min(3, data.ndim)
    data = data.transpose(*range(n - 1, -1, -1), *range(n, data.ndim))
    zooms = tuple(float(z) for z in img.header.get_zooms()[:n])[::-1]
    spacing = (1.0,) * (3 - n) + tuple(z if z > 0 else 1.0 for z in zooms)
    return Volume(data, spacing, affine=img.affine, header=img.header, path=path, unit=nifti_unit(img.header))


def _read_tiff(path: Path) -> Volume:
    with tifffile.TiffFile(path) as tif:
        return Volume(tif.asarray(), tiff_spacing(tif), path=path, unit=tiff_unit(tif))


# Unit spellings of NIfTI, ImageJ and OME -> ours.
_UNITS = {"mm": "mm", "millimeter": "mm", "millimetre": "mm", "micron": "um", "um": "um", "µm": "um",
          "\\u00B5m": "um", "micrometer": "um", "micrometre": "um", "meter": "m", "metre": "m", "m": "m"}
_IMAGEJ_UNITS = {"mm": "mm", "um": "micron", "m": "m"}
_NIFTI_UNITS = {"mm": "mm", "um": "micron", "m": "meter"}


def nifti_unit(header) -> str:
    """The unit of a NIfTI header's voxel sizes ("mm", "um", "m"), or "" when it does not say."""
    return _UNITS.get(str(header.get_xyzt_units()[0]), "")


def tiff_unit(tif: tifffile.TiffFile) -> str:
    """The unit of an open TIFF's spacing ("mm", "um", "m"), or "" when it does not say."""
    if tif.is_ome and tif.ome_metadata:
        for element in ET.fromstring(tif.ome_metadata).iter():
            if element.tag.rsplit("}", 1)[-1] == "Pixels" and element.get("PhysicalSizeX"):
                return _UNITS.get(element.get("PhysicalSizeXUnit", "µm"), "")  # OME's default is µm
    return _UNITS.get(str((tif.imagej_metadata or {}).get("unit", "")).strip(), "")


def tiff_spacing(tif: tifffile.TiffFile) -> tuple[float, float, float]:
    """(z, y, x) voxel size of an open TIFF: OME ``PhysicalSize``, else ImageJ metadata, else 1."""
    spacing = _ome_spacing(tif.ome_metadata) if tif.is_ome else None
    return spacing if spacing is not None else _imagej_spacing(tif)


def _positive(value, default: float = 1.0) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if np.isfinite(value) and value > 0 else default


def _ome_spacing(xml: str | None) -> tuple[float, float, float] | None:
    """PhysicalSize{Z,Y,X} of the first OME ``Pixels`` element, or None."""
    if not xml:
        return None
    for element in ET.fromstring(xml).iter():
        if element.tag.rsplit("}", 1)[-1] == "Pixels":
            return tuple(_positive(element.get(f"PhysicalSize{a}")) for a in "ZYX")
    return None


def _resolution_to_spacing(tag) -> float:
    """1/resolution of an X/YResolution tag (rational tuple or number); 1.0 if unusable."""
    value = getattr(tag, "value", None)
    try:
        num, den = value if isinstance(value, tuple | list) else (value, 1)
        return _positive(den / num)
    except (TypeError, ValueError, ZeroDivisionError):
        return 1.0


def _imagej_spacing(tif: tifffile.TiffFile) -> tuple[float, float, float]:
    """Spacing from ImageJ metadata and X/YResolution tags (1.0 where missing)."""
    meta = tif.imagej_metadata or {}
    tags = tif.pages.first.tags
    unit = tags.get("ResolutionUnit")
    # Resolution in dots per inch (scanners, paint programs) is not a voxel size.
    use_tags = bool(meta) or unit is None or unit.value != tifffile.RESUNIT.INCH
    y = _resolution_to_spacing(tags.get("YResolution")) if use_tags else 1.0
    x = _resolution_to_spacing(tags.get("XResolution")) if use_tags else 1.0
    return (_positive(meta.get("spacing")), y, x)


def _resolve_spacing(spacing, like: Volume | None) -> tuple[float, float, float]:
    if spacing is not None:
        return as_spacing(spacing)
    return like.spacing if like is not None else (1.0, 1.0, 1.0)


def _storage_dtype(data: np.ndarray, path: Path, tiff: bool) -> np.dtype:
    """float32 (TIFF, float16) or the float dtype; smallest fitting dtype for labels."""
    if np.issubdtype(data.dtype, np.floating):
        return np.dtype(np.float32) if tiff or data.dtype == np.float16 else data.dtype
    if data.dtype != bool and not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"Cannot write {path}: dtype {data.dtype} is not supported.")
    if data.dtype == bool or data.size == 0:
        return np.dtype(np.uint8)
    low, high = int(data.min()), int(data.max())
    if low >= 0 and high < 256:
        return np.dtype(np.uint8)
    if low >= 0 and high < 65536:
        return np.dtype(np.uint16)
    if not tiff and low >= -(2**31) and high < 2**31:
        return np.dtype(np.int32)
    fits = "0..65535" if tiff else "the int32 range"
    raise ValueError(f"Cannot write {path}: values {low}..{high} exceed {fits}; save as .npy.")


def _write_tiff(tmp: Path, data: np.ndarray, axes: str, spacing, unit: str = "") -> None:
    z, y, x = spacing
    meta = {"spacing": z, "axes": axes, **({"unit": _IMAGEJ_UNITS[unit]} if unit in _IMAGEJ_UNITS else {})}
    tifffile.imwrite(tmp, data, imagej=True, resolution=(1 / x, 1 / y), metadata=meta)


def _nifti_image(ijk: np.ndarray, like: Volume | None, spacing) -> nib.Nifti1Image:
    """NIfTI image of `ijk` (index order) on the grid of `like` when it matches."""
    hdr = like.header if like is not None and like.affine is not None else None
    if isinstance(hdr, nib.Nifti1Header) and like.data.shape[:3] == ijk.shape[:3][::-1]:
        hdr = hdr.copy()
        hdr.set_data_dtype(ijk.dtype)
        hdr["cal_min"], hdr["cal_max"] = 0, 0
        klass = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
        img = klass(ijk, like.affine, hdr)  # same affine: qform/sform and codes kept
        zooms = tuple(hdr.get_zooms()[:3])
    else:
        zooms = spacing[::-1]
        affine = np.diag([*zooms, 1.0])
        img = nib.Nifti1Image(ijk, affine)
        img.set_qform(affine, code="aligned")
        img.set_sform(affine, code="aligned")
        if like is not None and like.unit in _NIFTI_UNITS:
            img.header.set_xyzt_units(_NIFTI_UNITS[like.unit])
    img.header.set_slope_inter(None, None)
    img.header.set_zooms(zooms + (1.0,) * (ijk.ndim - 3))
    return img


def _write(path: Path, fmt: str, like, spacing, *, tiff, ijk, npy) -> Path:
    """Atomically write `tiff` = (array, ImageJ axes), `ijk` (NIfTI order) or `npy`."""
    with atomic_write(path) as tmp:
        if fmt == "tiff":
            _write_tiff(tmp, *tiff, spacing, like.unit if like is not None else "")
        elif fmt == "nifti":
            _nifti_image(ijk, like, spacing).to_filename(tmp)
        else:
            np.save(tmp, npy, allow_pickle=False)
    return path


def write_volume(path, data, like: Volume | None = None, spacing=None) -> Path:
    """Write a ``(z, y, x)`` image or mask atomically to TIFF, NIfTI or npy.

    Parameters
    ----------
    path : str or Path
        Target file; its suffix picks the format.
    data : array_like
        Array in ``(z, y, x)`` order (2D ``(y, x)`` is accepted too).
    like : Volume, optional
        Source volume: its spacing, and for NIfTI its affine and header when the
        grid matches, are written with the data.
    spacing : sequence of 3 float, optional
        ``(z, y, x)`` voxel size; wins over ``like.spacing``.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    fmt = file_format(path)
    data = np.asarray(data)
    spacing = _resolve_spacing(spacing, like)
    if fmt != "npy" and data.ndim not in (2, 3):
        raise ValueError(
            f"Cannot write {path}: expected a (z, y, x) array, got shape {data.shape}; "
            "use write_probabilities or .npy."
        )
    if fmt != "npy":
        data = data.astype(_storage_dtype(data, path, tiff=fmt == "tiff"), copy=False)
    zyx = data if data.ndim == 3 else data[None]
    tiff = (data, "ZYX"[3 - data.ndim :])
    return _write(path, fmt, like, spacing, tiff=tiff, ijk=zyx.T, npy=data)


def write_probabilities(path, probs, like: Volume | None = None, spacing=None) -> Path:
    """Write class probabilities ``(C, z, y, x)`` atomically.

    ``probs`` are uint8 (0..255), float16 or float32; ``path``, ``like`` and ``spacing`` are as
    for :func:`write_volume`. TIFF is an ImageJ hyperstack with axes ``ZCYX``; NIfTI is 4D
    ``(i, j, k, C)`` on the grid of `like` when it matches; npy keeps ``(C, z, y, x)``. Returns
    the written file.
    """
    path = Path(path)
    fmt = file_format(path)
    probs = np.asarray(probs)
    spacing = _resolve_spacing(spacing, like)
    if probs.ndim != 4:
        raise ValueError(
            f"Cannot write {path}: probabilities must be (C, z, y, x), got shape {probs.shape}."
        )
    if probs.dtype not in (np.uint8, np.float16, np.float32):
        raise ValueError(
            f"Cannot write {path}: probabilities dtype {probs.dtype} is not uint8, "
            "float16 or float32; convert them first."
        )
    if fmt != "npy" and probs.dtype == np.float16:
        probs = probs.astype(np.float32)
    tiff = (probs.transpose(1, 0, 2, 3), "ZCYX")
    return _write(path, fmt, like, spacing, tiff=tiff, ijk=probs.T, npy=probs)


def read_probabilities(path) -> Volume:
    """Read class probabilities written by :func:`write_probabilities` as ``(C, z, y, x)``."""
    volume = read_volume(path)
    data = volume.data
    if data.ndim != 4:
        raise ValueError(f"{path} holds a {data.ndim}D array, not class probabilities (C, z, y, x); give the "
                         "file written by --probabilities.")
    order = {"nifti": (3, 0, 1, 2), "tiff": (1, 0, 2, 3), "npy": (0, 1, 2, 3)}[file_format(path)]
    data = data.transpose(order)
    return Volume(data, volume.spacing, volume.affine, volume.header, volume.path, volume.unit)
