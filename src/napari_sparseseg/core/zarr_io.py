"""Chunked volumes on disk: OME-Zarr / zarr arrays and large TIFFs read lazily, OME-Zarr written.

:func:`open_lazy` returns a :class:`LazyVolume` whose :meth:`~LazyVolume.dask` array reads only
the chunks a computation asks for. It accepts an OME-Zarr image (group with ``multiscales``
metadata, version 0.4 or 0.5; ``level`` picks the resolution), a plain zarr array, or a TIFF (read
through ``tifffile``'s zarr view, strip by strip or tile by tile). Leading axes of length 1
(t, c) are dropped; the last three are (z, y, x).

:func:`store_prediction` writes labels (and probabilities) as OME-Zarr 0.4 images (zarr format 2,
readable by napari, ome-zarr-py, Fiji/MoBIE) chunk by chunk, with the voxel spacing as the
``scale`` coordinate transformation. Like the other writers it is atomic: the store is built in a
hidden folder next to the target and renamed into place when every chunk is written.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import tifffile
import zarr
from dask.array.core import normalize_chunks

from .files import NO_SPACE, check_writable, no_space
from .io import read_volume, tiff_spacing

TIFF_SUFFIXES = (".tif", ".tiff")
_MARKERS = (".zarray", ".zgroup", "zarr.json")
_TIFF_CACHE: dict = {}
_TIFF_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class LazyVolume:
    """A (z, y, x) volume on disk that is read chunk by chunk.

    ``source`` is array-like (zarr array or :class:`TiffArray`, possibly with leading length-1
    axes); ``spacing`` is the voxel size in (z, y, x) order; ``unit`` the OME-Zarr space unit.
    """

    source: object
    spacing: tuple[float, float, float]
    path: Path
    level: int = 0
    unit: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.source.shape[-3:])

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.source.shape)) * np.dtype(self.source.dtype).itemsize

    @property
    def array(self):
        """The (Z, Y, X) volume as a picklable array-like that reads only what is sliced."""
        extra = len(self.source.shape) - 3
        return _Leading(self.source, extra) if extra else self.source

    def dask(self, chunks=None) -> da.Array:
        """The volume as a (Z, Y, X) dask array with ``chunks`` (default: the file's own)."""
        extra = len(self.source.shape) - 3
        chunks = normalize_chunks(chunks or "auto", self.shape, dtype=self.source.dtype)
        array = da.from_array(self.source, chunks=((1,),) * extra + chunks, lock=False,
                              name=f"read-{uuid.uuid4().hex}")
        return array[(0,) * extra] if extra else array


class _Leading:
    """A view of ``source`` at index 0 of its ``extra`` leading (length-1) axes."""

    def __init__(self, source, extra: int):
        self.source, self.extra = source, extra
        self.shape, self.dtype, self.ndim = tuple(source.shape[extra:]), source.dtype, source.ndim - extra

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        return self.source[(0,) * self.extra + key]


class TiffArray:
    """A TIFF series as a lazy array: slicing decodes only the strips or tiles it needs.

    Pickles as its path, so dask.distributed workers open the file themselves (once per process).
    """

    def __init__(self, path, level: int = 0):
        self.path, self.level = str(path), int(level)
        store = self._zarr()
        self.shape, self.dtype, self.ndim = tuple(store.shape), store.dtype, store.ndim

    def __getitem__(self, key):
        return self._zarr()[key]

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in ("path", "level", "shape", "dtype", "ndim")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def _zarr(self):
        key = (self.path, self.level, os.stat(self.path).st_mtime_ns)
        with _TIFF_LOCK:
            if key not in _TIFF_CACHE:
                store = tifffile.imread(self.path, aszarr=True, level=self.level)
                _TIFF_CACHE[key] = zarr.open(store, mode="r")
            return _TIFF_CACHE[key]


def is_zarr(path) -> bool:
    """True for a path named ``*.zarr`` (also inside one) or a folder holding zarr metadata."""
    path = Path(path)
    if any(part.lower().endswith(".zarr") for part in path.parts):
        return True
    return path.is_dir() and any((path / m).exists() for m in _MARKERS)


def split_level(text: str) -> tuple[str, int | None]:
    """``'image.zarr:2'`` -> ``('image.zarr', 2)``; a path without ``:N`` keeps level None."""
    head, sep, tail = str(text).rpartition(":")
    if sep and tail.isdigit() and head and not Path(text).exists():
        return head, int(tail)
    return str(text), None


def array_nbytes(path) -> int:
    """Uncompressed size of the volume in a TIFF or zarr input; the file size for other files."""
    path = Path(path)
    try:
        if is_zarr(path) or path.suffix.lower() in TIFF_SUFFIXES:
            return open_lazy(path).nbytes
        return path.stat().st_size
    except (OSError, ValueError):
        return 0  # unreadable: the reader that follows says why


def open_any(path, level: int | None = None) -> LazyVolume:
    """:func:`open_lazy` for zarr and TIFF; other files (NIfTI, npy) are read whole by :mod:`.io`."""
    path = Path(path)
    if is_zarr(path) or path.suffix.lower() in TIFF_SUFFIXES:
        return open_lazy(path, level)
    if level:
        raise ValueError(f"{path} has no resolution levels; leave out the level.")
    volume = read_volume(path)
    return _checked(LazyVolume(volume.data, volume.spacing, path))


def open_lazy(path, level: int | None = None) -> LazyVolume:
    """Open an OME-Zarr image, a zarr array or a TIFF for chunk-by-chunk reading.

    Parameters
    ----------
    path : str or Path
    level : int, optional
        Resolution level of an OME-Zarr image or a pyramidal TIFF (0 = full resolution).

    Returns
    -------
    LazyVolume
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"Cannot read {path}: it does not exist; check the path.")
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _open_tiff(path, level or 0)
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise ValueError(f"Cannot read {path}: it is not a zarr array or OME-Zarr image ({exc}).") from exc
    if isinstance(node, zarr.Group):
        return _open_group(node, path, level or 0)
    if level:
        raise ValueError(f"{path} is a single zarr array; it has no resolution level {level}.")
    spacing, level = _parent_scale(path)
    return _checked(LazyVolume(node, spacing, path, level))


def _open_tiff(path: Path, level: int) -> LazyVolume:
    try:
        with tifffile.TiffFile(path) as tif:
            spacing, levels = tiff_spacing(tif), len(tif.series[0].levels)
            full = tif.series[0].shape
        if level >= levels:
            raise ValueError(f"{path} has {levels} resolution level(s); choose a level below {levels}.")
        source = TiffArray(path, level)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"Cannot read {path}: it is not a valid TIFF file ({exc}).") from exc
    spacing = tuple(s * f / n for s, f, n in zip(spacing, full[-3:], source.shape[-3:]))
    return _checked(LazyVolume(source, spacing, path, level))


def _multiscale(attrs) -> dict | None:
    """The first OME-Zarr multiscale (0.4: ``multiscales``; 0.5: ``ome.multiscales``)."""
    found = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    return found[0] if found else None


def _open_group(group, path: Path, level: int) -> LazyVolume:
    meta = _multiscale(group.attrs)
    if meta is None:
        names = sorted(group.array_keys())
        hint = f" such as {path / names[0]}" if names else ""
        raise ValueError(f"{path} is a zarr group without OME-Zarr multiscales metadata; "
                         f"give the path of an array inside it{hint}.")
    datasets = meta["datasets"]
    if not 0 <= level < len(datasets):
        count = len(datasets)
        raise ValueError(f"{path} has {count} resolution level(s); choose a level below {count}.")
    array = group[datasets[level]["path"]]
    scale = _scale(datasets[level], array.ndim) * _scale(meta, array.ndim)
    unit = next((a.get("unit") for a in meta.get("axes", [])[-3:] if isinstance(a, dict)), None)
    return _checked(LazyVolume(array, tuple(float(s) for s in scale[-3:]), path, level, unit))


def _scale(node: dict, ndim: int) -> np.ndarray:
    for transform in node.get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            return np.asarray(transform["scale"], float)[-ndim:]
    return np.ones(ndim)


def _parent_scale(path: Path) -> tuple[tuple[float, float, float], int]:
    """Spacing of an array that is a dataset of an OME-Zarr image one folder up, else ones."""
    try:
        parent = zarr.open_group(str(path.parent), mode="r")
        meta = _multiscale(parent.attrs) or {}
    except Exception:
        meta = {}
    for level, dataset in enumerate(meta.get("datasets", [])):
        if dataset.get("path") == path.name:
            return tuple(float(s) for s in (_scale(dataset, 3) * _scale(meta, 3))[-3:]), level
    return (1.0, 1.0, 1.0), 0


def _checked(volume: LazyVolume) -> LazyVolume:
    shape = tuple(volume.source.shape)
    if len(shape) < 3 or any(n != 1 for n in shape[:-3]):
        raise ValueError(f"{volume.path} has shape {shape}; a (z, y, x) volume is needed "
                         "(leading axes, if any, of length 1).")
    spacing = volume.spacing
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        spacing = (1.0, 1.0, 1.0)
    return LazyVolume(volume.source, spacing, volume.path, volume.level, volume.unit)


# ------------------------------------------------------------------ writing


def store_prediction(prediction, output, probabilities=None, *, spacing=(1.0, 1.0, 1.0), unit=None,
                     class_names=(), compute: Callable | None = None) -> None:
    """Write lazy labels (and probabilities) to OME-Zarr images, chunk by chunk.

    Parameters
    ----------
    prediction : Prediction
        Dask ``labels`` (Z, Y, X) and ``probabilities`` (K, Z, Y, X), e.g. from
        :func:`.chunked.predict_dask`; each dask chunk becomes whole zarr chunks.
    output, probabilities : str or Path
        Target stores (``*.zarr``); ``probabilities`` is optional.
    spacing : (float, float, float)
    unit : str, optional
        OME-Zarr unit of the space axes (e.g. ``'micrometer'``).
    class_names : sequence of str
        Names of mask values 0, 1, ...; stored in the attributes.
    compute : callable, optional
        Called with the ``dask.array.store`` delayed object to run it (a scheduler and
        a progress bar); default ``dask.compute``.
    """
    targets = [(Path(output), prediction.labels, "zyx")]
    if probabilities is not None:
        targets.append((Path(probabilities), prediction.probabilities, "czyx"))
    _store(targets, spacing, unit, {"class_names": list(class_names)}, compute)


def write_image(path, data, spacing=(1.0, 1.0, 1.0), unit=None, compute: Callable | None = None) -> None:
    """Write a (Z, Y, X) array (numpy or dask, chunked as it is) as an OME-Zarr image."""
    data = data if isinstance(data, da.Array) else da.from_array(data, chunks="auto")
    _store([(Path(path), data, "zyx")], spacing, unit, {}, compute)


def _store(targets, spacing, unit, attrs: dict, compute) -> None:
    """Atomically write each (path, dask array, axes) as an OME-Zarr image in one computation."""
    for path, _, _ in targets:
        check_zarr_output(path)
    with ExitStack() as stack:
        folders = [stack.enter_context(atomic_dir(path)) for path, _, _ in targets]
        sinks = [_ome_array(folder, path.name, data, axes, spacing, unit, attrs)
                 for folder, (path, data, axes) in zip(folders, targets)]
        job = da.store([data for _, data, _ in targets], sinks, lock=False, compute=False)
        (compute or dask.compute)(job)


def check_zarr_output(path: Path) -> None:
    """Raise a ValueError unless ``path`` is a ``.zarr`` name that may be (re)written."""
    path = Path(path)
    if not path.name.lower().endswith(".zarr"):
        raise ValueError(f"Cannot write {path}: chunked output goes to a zarr store; name it *.zarr.")
    if path.exists() and not (path.is_dir() and any((path / m).exists() for m in _MARKERS)):
        raise ValueError(f"Cannot write {path}: it exists and is not a zarr store; choose another path.")
    check_writable(path.parent / f".{path.name}.probe")


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a hidden folder next to ``path``; on success it replaces ``path`` (old store removed)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            raise ValueError(no_space(path)) from err
        raise


def _ome_array(folder: Path, name: str, data: da.Array, axes: str, spacing, unit, attrs: dict):
    """Create an OME-Zarr 0.4 image ``name`` at ``folder`` for ``data``; return its level-0 zarr array."""
    group = zarr.open_group(str(folder), mode="w", zarr_format=2)
    chunks = tuple(c[0] for c in data.chunks)
    scale = [1.0] * (len(axes) - 3) + [float(s) for s in spacing]
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "name": name,
        "axes": [_axis(a, unit) for a in axes],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
    }]
    if attrs:
        values = "probability x 255" if "c" in axes else "class index"
        group.attrs["sparseseg"] = {**attrs, "values": values}
    return group.create_array("0", shape=data.shape, chunks=chunks, dtype=data.dtype, fill_value=0,
                              chunk_key_encoding={"name": "v2", "separator": "/"})


def _axis(name: str, unit) -> dict:
    if name == "c":
        return {"name": "c", "type": "channel"}
    return {"name": name, "type": "space", **({"unit": unit} if unit else {})}
