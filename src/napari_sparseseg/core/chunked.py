"""Prediction of volumes larger than memory, chunk by chunk, with dask.

:func:`predict_dask` turns a (Z, Y, X) volume into lazy labels and probabilities. Each chunk is
predicted from the chunk plus a halo of ``window - 1`` voxels on every inner side: it gets the
blended outputs of exactly those windows of the *whole-volume* grid (:func:`.inference.window_grid`)
that touch it, with the same Gaussian weights, added in the same order. So every voxel is the
weighted mean of the same window outputs as in :func:`.inference.predict`, whatever the chunking.
Windows across a chunk border run once for each chunk they touch: about ``prod(1 + window / chunk)``
times the work of one pass (:func:`overhead`), which the default chunks (:data:`CHUNK_WINDOWS`
windows per axis) keep near 2x.

Two kinds of input:

- storage (a zarr array, :class:`.zarr_io.TiffArray`, a numpy memmap: anything sliceable and
  picklable): every task reads its own chunk and halo from it, so tasks share nothing and memory is
  bounded by (dask threads) x (one chunk's working set), whatever the volume's size;
- a dask array (any pipeline): ``dask.array.map_overlap`` adds the halos from neighbouring chunks;
  dask then keeps input chunks until their neighbours are done (about one slab of chunks).

Intensities use the normalisation stored with the model, never per-chunk statistics. The model
travels as one :class:`ModelPayload` key in the graph, so a dask.distributed worker receives it
once and every process loads the network once (cached by checksum), not once per chunk.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import Counter
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from .checkpoint import Segmenter, from_bytes, to_bytes
from .config import InferConfig
from .inference import (
    Prediction,
    answers_per_voxel,
    blend_windows,
    check_channels,
    labels_uint8,
    model_inputs,
    prediction_window,
    probabilities_uint8,
    segmenter_predictor,
    window_grid,
)

CHUNK_WINDOWS = 4  # default chunk edge, in windows (capped by the volume)
RECEIVED: Counter = Counter()  # model payloads unpickled in this process, by checksum
LOADS: Counter = Counter()  # networks built from a payload in this process, by checksum
_CACHE: dict = {}
_CACHE_SIZE = 2
_LOCK = threading.Lock()


class ModelPayload:
    """Checkpoint bytes plus inference settings, loaded at most once per process.

    Parameters
    ----------
    data : bytes
        A checkpoint as written by :func:`.checkpoint.to_bytes`.
    config : InferConfig
    """

    def __init__(self, data: bytes, config: InferConfig):
        self.data, self.config = data, config
        self.digest = hashlib.sha1(data).hexdigest()

    def __dask_tokenize__(self):
        return (type(self).__name__, self.digest, self.config)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        RECEIVED[self.digest] += 1

    def load(self):
        """(segmenter, predictor) for this process, built on first use and then cached."""
        key = (self.digest, self.config.device, self.config.flip_tta)
        with _LOCK:
            if key not in _CACHE:
                segmenter = from_bytes(self.data)
                _CACHE[key] = segmenter, segmenter_predictor(segmenter, self.config)
                LOADS[self.digest] += 1
                while len(_CACHE) > _CACHE_SIZE:
                    _CACHE.pop(next(iter(_CACHE)))
            return _CACHE[key]


@dataclass(frozen=True)
class _Plan:
    """What every chunk needs to know about the whole volume (small: sent with each task)."""

    shape: tuple[int, int, int]
    window: tuple[int, int, int]
    starts: tuple[list[int], list[int], list[int]]
    depth: tuple[int, int, int]  # halo read around a chunk: windows (window - 1) plus filters
    filters: tuple[int, int, int]  # the part of the halo only the filter bank needs
    batch_size: int
    early: bool = False  # trees scored with early stopping (see .inference.predict)


def default_chunks(shape, window) -> tuple[int, int, int]:
    """:data:`CHUNK_WINDOWS` windows per axis, capped by the volume's size."""
    return tuple(min(s, CHUNK_WINDOWS * w) for s, w in zip(shape, window))


def chunk_grid(shape, chunk, window) -> tuple[tuple[int, ...], ...]:
    """Regular chunks of edge ``chunk`` (at least the window); a short last one joins its neighbour.

    A last chunk shorter than the halo (``window - 1``) would make dask re-chunk the input behind
    our back, so it is merged into the one before.
    """
    grid = []
    for size, edge, w in zip(shape, chunk, window):
        edge = max(int(edge), w, 1)
        sizes = [edge] * (size // edge) + ([size % edge] if size % edge else [])
        if len(sizes) > 1 and sizes[-1] < w:
            last = sizes.pop()
            sizes[-1] += last
        grid.append(tuple(sizes or [size]))
    return tuple(grid)


def plan_chunks(shape, segmenter: Segmenter, config: InferConfig, chunks=None) -> tuple[tuple[int, ...], ...]:
    """The dask chunks :func:`predict_dask` computes in (read the input with these to skip a rechunk)."""
    window = prediction_window(segmenter, config, shape)
    stem = segmenter.net.stem
    least = [w + h for w, h in zip(window, stem.halo() if stem else (0, 0, 0))]  # dask: halo <= chunk
    return chunk_grid(shape, chunks or default_chunks(shape, window), least)


def overhead(chunks, window) -> float:
    """Windows evaluated per window of the single-volume pass, roughly ``prod(1 + window/chunk)``."""
    return math.prod(1 + (len(c) - 1) * (w - 1) / sum(c) for c, w in zip(chunks, window))


def predict_dask(image, segmenter: Segmenter, config: InferConfig | None = None, chunks=None,
                 early: bool = False) -> Prediction:
    """Lazy dense prediction of a (Z, Y, X) array of any size.

    Parameters
    ----------
    image : zarr array, dask array or other array-like (Z, Y, X)
        Raw intensities (the model's stored normalisation is applied chunk by chunk). Storage
        such as a zarr array is read by each task for its own chunk (bounded memory); a dask
        array goes through ``dask.array.map_overlap``.
    segmenter : Segmenter
    config : InferConfig, optional
        Default: the inference settings stored with the model (``segmenter.infer``).
    chunks : (int, int, int), optional
        Chunk edge; default :func:`default_chunks`. Bigger chunks waste less work at borders
        and need more memory per dask task.
    early : bool
        Score boosted trees with early stopping, as :func:`.inference.predict` does (napari's
        early answer of a volume too large to predict whole).

    Returns
    -------
    Prediction
        ``labels`` (Z, Y, X) and ``probabilities`` (K, Z, Y, X), both uint8 dask arrays that
        nothing has computed yet; store them (:func:`.zarr_io.store_prediction`) or slice them.
        Voxel for voxel they equal :func:`.inference.predict` of the whole volume.
    """
    probs = probabilities_dask(image, segmenter, config, chunks, early)
    labels = probs.map_blocks(labels_uint8, drop_axis=0, dtype=np.uint8)
    return Prediction(labels, probs.map_blocks(_uint8_copy, dtype=np.uint8))


def probabilities_dask(image, segmenter: Segmenter, config: InferConfig | None = None, chunks=None,
                       early: bool = False):
    """Lazy float32 class probabilities (K, Z, Y, X) of ``image``; see :func:`predict_dask`."""
    config = config or segmenter.infer
    check_channels(segmenter)
    _check_array(image)
    window = prediction_window(segmenter, config, image.shape)
    grid = plan_chunks(image.shape, segmenter, config, chunks)
    stem = segmenter.net.stem
    filters = tuple(h if len(c) > 1 else 0 for c, h in zip(grid, stem.halo() if stem else (0, 0, 0)))
    depth = tuple(w - 1 + h if len(c) > 1 else 0 for c, w, h in zip(grid, window, filters))
    plan = _Plan(tuple(image.shape), window, window_grid(image.shape, window, config.overlap), depth,
                 filters, config.batch_size, early)
    common = {"chunks": ((segmenter.n_classes,), *grid), "dtype": np.float32, "name": "sparseseg-predict",
              "meta": np.empty((0, 0, 0, 0), np.float32), "plan": plan,
              "payload": dask.delayed(ModelPayload(to_bytes(segmenter), config), pure=True)}
    if not isinstance(image, da.Array):  # storage: every task reads its own chunk and halo
        return da.map_blocks(_read_and_predict, source=dask.delayed(image), **common)
    array = image.rechunk(grid) if image.chunks != grid else image
    return da.map_overlap(_predict_block, array, depth=dict(enumerate(depth)), boundary="none", trim=False,
                          new_axis=0, **common)


def _check_array(image) -> None:
    """Raise a ValueError unless ``image`` is a 3D real-valued array (any array-like)."""
    shape, dtype = tuple(getattr(image, "shape", ())), np.dtype(getattr(image, "dtype", object))
    if len(shape) != 3:
        raise ValueError(f"image has {len(shape)} dimensions {shape}; a 3D (z, y, x) volume is needed.")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype.kind == "b"):
        raise ValueError(f"image has type {dtype}; a real-valued numeric volume is needed.")
    if min(shape) < 2:
        raise ValueError(f"image has shape {shape}; every axis needs at least 2 voxels.")


def _read_and_predict(source, payload: ModelPayload, plan: _Plan, block_info=None) -> np.ndarray:
    """Read one chunk plus its halo straight from ``source``, then :func:`_predict_block`."""
    core = block_info[None]["array-location"][1:]
    bounds = zip(core, plan.depth, plan.shape)
    region = tuple(slice(max(0, lo - d), min(s, hi + d)) for (lo, hi), d, s in bounds)
    block = np.asarray(source[region])
    return _predict_block(block, payload, plan, block_info, private=block.flags.owndata)


def _predict_block(block: np.ndarray, payload: ModelPayload, plan: _Plan, block_info=None,
                   private: bool = False) -> np.ndarray:
    """Probabilities (K, *core) of one chunk from the chunk plus its halo (``private``: ours to overwrite)."""
    segmenter, predictor = payload.load()
    core = [tuple(loc) for loc in block_info[None]["array-location"][1:]]
    origin = [max(0, lo - d) for (lo, _), d in zip(core, plan.depth)]
    expected = tuple(min(s, hi + d) - o for s, (_, hi), d, o in zip(plan.shape, core, plan.depth, origin))
    if block.shape != expected:
        raise RuntimeError(f"Chunk at {core} came with shape {block.shape}, expected {expected}.")
    source = segmenter.normalization.apply(_finite(block, core, private), in_place=True)
    per_voxel = answers_per_voxel(segmenter)
    crop, origin = _window_crop(origin, core, plan, per_voxel)
    source = model_inputs(segmenter, source, crop, early=plan.early)
    box = [(lo - o, hi - o) for (lo, hi), o in zip(core, origin)]
    if per_voxel:
        return blend_windows(source, predictor, plan.window, None, box, per_voxel=True)
    pad = [(0, 0)] + [(0, max(0, w - s)) if hi == s else (0, 0)
                      for w, s, (_, hi) in zip(plan.window, plan.shape, core)]
    source = np.pad(source, pad) if any(p for _, p in pad) else source
    starts = [[s - o for s in axis] for axis, o in zip(plan.starts, origin)]
    return blend_windows(source, predictor, plan.window, starts, box, plan.batch_size)


def _window_crop(origin, core, plan: _Plan, per_voxel: bool = False):
    """The part of a block the windows read, as slices of the block, and its origin in the volume:
    the chunk plus the windows' halo, without the margin only the filters need. A model that
    answers voxel by voxel reads no windows: the chunk alone (the block is still read and smoothed
    with the windows' halo, but the features' derivatives and the trees are computed on the chunk
    only).

    Filter features within ``plan.filters`` of an inner block edge differ from the whole volume's,
    so that margin is only read, never predicted; at a volume border both use the same replicate padding.
    """
    halo = [0 if per_voxel else d - f for d, f in zip(plan.depth, plan.filters)]
    keep = [(max(0, lo - h), min(s, hi + h)) for (lo, hi), h, s in zip(core, halo, plan.shape)]
    return tuple(slice(a - o, b - o) for (a, b), o in zip(keep, origin)), [a for a, _ in keep]


def _finite(block: np.ndarray, core, private: bool) -> np.ndarray:
    """``block`` as float32 we may overwrite (copied unless ``private``), or a ValueError on NaN/inf."""
    block = np.asarray(block, dtype=np.float32) if private else np.array(block, dtype=np.float32)
    if not np.isfinite(block).all():
        where = ", ".join(f"{lo}:{hi}" for lo, hi in core)
        raise ValueError(f"image contains NaN or infinite voxels near [{where}]; fix or mask them first.")
    return block


def _uint8_copy(probs: np.ndarray) -> np.ndarray:
    """0..1 float probabilities to 0..255 without touching ``probs`` (other tasks read it)."""
    return probabilities_uint8(probs.copy())
