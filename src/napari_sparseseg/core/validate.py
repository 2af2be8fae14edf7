"""Input checks shared by the command line and the napari widget.

Each check raises a ValueError whose message is one sentence a user can act on.
``name`` says which file or layer the array came from.
"""

from __future__ import annotations

import numpy as np


def check_image(image, name: str = "image") -> np.ndarray:
    """Return ``image`` as a 3D float32 (z, y, x) array or raise a clear ValueError."""
    image = np.asarray(image)
    if image.ndim == 4 and image.shape[-1] in (3, 4) and image.dtype == np.uint8:
        raise ValueError(f"{name} looks like an RGB(A) image {image.shape}; convert it to one channel.")
    if image.ndim != 3:
        raise ValueError(
            f"{name} has {image.ndim} dimensions {image.shape}; a 3D (z, y, x) volume is needed."
        )
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise ValueError(f"{name} has non-numeric type {image.dtype}.")
    if np.iscomplexobj(image):
        raise ValueError(f"{name} is complex-valued; give a real-valued volume.")
    if min(image.shape) < 2:
        raise ValueError(f"{name} has shape {image.shape}; every axis needs at least 2 voxels.")
    if not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite voxels; fix or mask them first.")
    if image.dtype.kind == "f" and image.size and np.abs(image).max() > np.finfo(np.float32).max:
        raise ValueError(f"{name} has values beyond ±3.4e38, the float32 range; rescale it first.")
    return image.astype(np.float32, copy=False)


def check_annotation(annotation, shape, name: str = "annotations") -> np.ndarray:
    """Return ``annotation`` as uint8/uint16 labels matching ``shape``, or raise."""
    ann = np.asarray(annotation)
    if ann.shape != tuple(shape):
        raise ValueError(f"{name} has shape {ann.shape} but the image has shape {tuple(shape)}.")
    if np.issubdtype(ann.dtype, np.floating):
        if not np.isfinite(ann).all() or not np.array_equal(ann, np.round(ann)):
            raise ValueError(
                f"{name} contains non-integer values; paint with integer labels "
                "(0 unlabeled, 1 background, 2.. classes)."
            )
    elif not (np.issubdtype(ann.dtype, np.integer) or ann.dtype == bool):
        raise ValueError(f"{name} has non-numeric type {ann.dtype}.")
    if ann.size and ann.min() < 0:
        raise ValueError(f"{name} contains negative labels; use 0 unlabeled, 1 background, 2.. classes.")
    top = int(ann.max()) if ann.size else 0
    if top > 255:
        raise ValueError(f"{name} uses label {top}; at most 254 classes are supported.")
    return ann.astype(np.uint8)


def count_classes(annotations, names=None) -> int:
    """Number of classes (background included) painted across ``annotations``.

    Raises if nothing is painted, only one class is painted, or a class between
    background and the highest label has no painted voxel.
    """
    names = names or [f"annotations {i + 1}" for i in range(len(annotations))]
    counts = np.zeros(256, np.int64)
    for ann in annotations:
        counts += np.bincount(ann.ravel(), minlength=256)
    painted = np.flatnonzero(counts[1:]) + 1
    where = names[0] if len(names) == 1 else ", ".join(names)
    if painted.size == 0:
        raise ValueError(
            f"{where} has no painted voxel; paint background (1) and at least one class (2..)."
        )
    if painted.size == 1:
        raise ValueError(
            f"{where} paints only label {painted[0]}; paint background (1) and at least one "
            "other class so the model has something to tell apart."
        )
    missing = [int(v) for v in range(1, int(painted.max()) + 1) if counts[v] == 0]
    if missing:
        raise ValueError(
            f"{where} has no voxel of label(s) {missing}; paint every label from 1 to "
            f"{int(painted.max())} at least once or renumber the labels."
        )
    return int(painted.max())


def check_pair(image, annotation, image_name="image", ann_name="annotations"):
    """Validate one (image, annotation) pair and return the cleaned arrays."""
    image = check_image(image, image_name)
    return image, check_annotation(annotation, image.shape, ann_name)
