"""Whether two files share a voxel grid, and what a voxel-size-only format loses of a NIfTI affine."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from .io import Volume


def is_oblique(path) -> bool:
    """True for a NIfTI file whose affine rotates or permutes the voxel axes (formats that store
    only a voxel size, such as OME-Zarr, cannot keep that)."""
    if not str(path).lower().endswith((".nii", ".nii.gz")):
        return False
    linear = np.asarray(nib.load(str(path)).affine)[:3, :3]
    return bool(np.abs(linear - np.diag(np.diag(linear))).max() > 1e-6 * np.abs(linear).max())


def check_same_grid(volume: Volume, other: Volume) -> None:
    """Raise a ValueError when ``other`` (e.g. annotations) lies on another grid than ``volume``.

    Only geometry both files state is compared: the NIfTI affines when both have one, else the
    spacing when neither is the default 1 (an npy file, or a TIFF without calibration, says nothing).
    """
    if volume.data.shape[:3] != other.data.shape[:3]:
        return  # the shape check names both shapes
    if volume.affine is not None and other.affine is not None:
        same = np.allclose(volume.affine, other.affine, atol=1e-3 * min(volume.spacing))
    elif (1.0, 1.0, 1.0) not in (volume.spacing, other.spacing):
        same = np.allclose(volume.spacing, other.spacing, rtol=1e-3)
    else:
        return
    if not same:
        raise ValueError(f"{other.path} lies on another grid than {volume.path} (voxel size "
                         f"{_size(other.spacing)} vs {_size(volume.spacing)}, or another position); "
                         "resample it onto the image's grid first.")


def _size(spacing) -> str:
    return " × ".join(f"{s:g}" for s in spacing)
