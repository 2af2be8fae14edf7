"""What mask values mean: class names, the legend, and the check that an array is a label mask.

The package convention: in a mask, 0 is background and k is class k; in an annotation, 0 is
unpainted and k + 1 is class k. Torch-free: the napari process uses it.
"""

from __future__ import annotations

import numpy as np


def class_name(k: int, names=()) -> str:
    """The name of class ``k``: ``names[k]`` when given, else 'background' (0) or 'class k'."""
    if k < len(names or ()):
        return names[k]
    return "background" if k == 0 else f"class {k}"


def default_class_names(n_classes: int) -> tuple[str, ...]:
    """('background', 'class 1', …, 'class n-1')."""
    return tuple(class_name(k) for k in range(n_classes))


def legend(names) -> str:
    """'0 background, 1 nuclei, …': what each mask value means."""
    return ", ".join(f"{k} {name}" for k, name in enumerate(names))


def as_labels(array, name: str) -> np.ndarray:
    """``array`` as non-negative integer labels, or a ValueError in one sentence naming ``name``.

    Booleans become uint8 and whole-number floats (NIfTI masks are often stored so) int64.
    """
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not (np.isfinite(array).all() and np.array_equal(array, np.round(array))):
            raise ValueError(f"{name} holds non-integer {array.dtype} values; give an integer label mask "
                             "(the mask sparseseg writes), not probabilities or an image.")
        array = array.astype(np.int64)
    elif not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} holds {array.dtype} values; give an integer label mask.")
    if array.size and array.min() < 0:
        lowest = int(array.min())
        raise ValueError(f"{name} has negative labels (down to {lowest}); labels must be 0 or more.")
    return array
