"""Per-class overlap metrics for label volumes (Dice, Jaccard, sensitivity, specificity, ...).

Masks follow the package convention: 0 background, k class k. Counts come from one confusion
matrix built with ``np.bincount`` over ``pred * n + truth`` in bounded chunks, so memory stays
small even for large volumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .labels import as_labels

METRIC_NAMES = ("dice", "jaccard", "sensitivity", "specificity", "f_beta", "volumetric_similarity")

_CHUNK = 1 << 22  # voxels per bincount pass
_MAX_CLASSES = 4096  # the confusion matrix is n × n


def _prepare(pred, truth, mask):
    """Validate inputs; return flat pred, flat truth and the flat boolean mask (or None)."""
    pred, truth = as_labels(pred, "the prediction"), as_labels(truth, "the truth")
    if pred.shape != truth.shape:
        raise ValueError(f"The prediction has shape {pred.shape} but the truth {truth.shape}; give masks of "
                         "the same volume.")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != pred.shape:
            raise ValueError(f"The region to score has shape {mask.shape} but the prediction {pred.shape}.")
        mask = mask.astype(bool, copy=False).ravel()
    return pred.ravel(), truth.ravel(), mask


def _max_label(*arrays) -> int:
    return max((int(a.max()) for a in arrays if a.size), default=0)


def _confusion(pred, truth, n: int, mask, label=None) -> np.ndarray:
    """(n, n) int64 confusion matrix, rows = predicted label, columns = true label.

    With ``label`` given, labels are first binarised to ``label`` (1) versus the rest (0).
    """
    if n > _MAX_CLASSES:
        raise ValueError(f"found {n} labels, more than the {_MAX_CLASSES} per-class metrics allow.")
    counts = np.zeros(n * n, dtype=np.int64)
    for start in range(0, pred.size, _CHUNK):
        stop = start + _CHUNK
        p, t = pred[start:stop], truth[start:stop]
        if label is None:
            p, t = p.astype(np.int64), t.astype(np.int64)
        else:
            p, t = (p == label).astype(np.int64), (t == label).astype(np.int64)
        if mask is not None:
            keep = mask[start:stop]
            p, t = p[keep], t[keep]
        counts += np.bincount(p * n + t, minlength=n * n)
    return counts.reshape(n, n)


def _counts_for(matrix: np.ndarray, label: int) -> tuple[int, int, int, int]:
    tp = int(matrix[label, label])
    fp = int(matrix[label].sum()) - tp
    fn = int(matrix[:, label].sum()) - tp
    tn = int(matrix.sum()) - tp - fp - fn
    return tp, fp, fn, tn


def confusion_counts(pred, truth, label, mask=None) -> tuple[int, int, int, int]:
    """Count one label against all others.

    Parameters
    ----------
    pred, truth : np.ndarray
        Integer label arrays of the same shape (0 background, k class k).
    label : int
        The label treated as positive.
    mask : np.ndarray of bool, optional
        Only voxels where ``mask`` is True are counted; all voxels if None.

    Returns
    -------
    tuple of int
        ``(tp, fp, fn, tn)``.
    """
    if int(label) != label or label < 0:
        raise ValueError(f"label must be a non-negative integer, got {label!r}.")
    pred, truth, mask = _prepare(pred, truth, mask)
    return _counts_for(_confusion(pred, truth, 2, mask, label=int(label)), 1)


def _ratio(num: float, den: float) -> float:
    return 1.0 if den == 0 else float(num) / float(den)


def class_metrics(tp, fp, fn, tn, beta=1.0) -> dict[str, float]:
    """Overlap metrics from one-vs-rest counts.

    Parameters
    ----------
    tp, fp, fn, tn : int
        True/false positives and negatives.
    beta : float
        Weight of recall in the F-beta score (``beta > 1`` favours sensitivity).

    Returns
    -------
    dict of str to float
        ``dice = 2TP/(2TP+FP+FN)``, ``jaccard = TP/(TP+FP+FN)``, ``sensitivity = TP/(TP+FN)``,
        ``specificity = TN/(TN+FP)``, ``f_beta = (1+β²)TP/((1+β²)TP+β²FN+FP)`` and
        ``volumetric_similarity = 1 − |FN−FP|/(2TP+FP+FN)``. Any metric whose denominator is
        0 (e.g. the class is absent from both prediction and truth) is 1.0 by convention.
    """
    if min(tp, fp, fn, tn) < 0:
        raise ValueError(f"counts must be non-negative, got tp={tp} fp={fp} fn={fn} tn={tn}.")
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta!r}.")
    tp, fp, fn, tn = int(tp), int(fp), int(fn), int(tn)
    b2 = float(beta) ** 2
    overlap = 2 * tp + fp + fn
    return {
        "dice": _ratio(2 * tp, overlap),
        "jaccard": _ratio(tp, tp + fp + fn),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f_beta": _ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp),
        "volumetric_similarity": 1.0 - abs(fn - fp) / overlap if overlap else 1.0,
    }


def _class_keys(n: int, class_names) -> list[str]:
    if class_names is None:
        return [str(k) for k in range(n)]
    if len(class_names) < n:
        raise ValueError(f"class_names has {len(class_names)} names but there are {n} classes.")
    return [str(name) for name in class_names[:n]]


def evaluate(
    pred, truth, n_classes=None, mask=None, beta=1.0, class_names: Sequence[str] | None = None
) -> dict:
    """Evaluate a predicted mask against the truth, class by class.

    Parameters
    ----------
    pred, truth : np.ndarray
        Integer label arrays of the same shape (0 background, k class k).
    n_classes : int, optional
        Number of classes; default is the largest label in ``pred`` or ``truth`` plus one.
    mask : np.ndarray of bool, optional
        Only voxels where ``mask`` is True are evaluated; all voxels if None.
    beta : float
        Beta of the F-beta score.
    class_names : sequence of str, optional
        Names used as keys; default is ``"0"``, ``"1"``, ...

    Returns
    -------
    dict
        ``{"classes": {name: {metric: value, ..., "voxels_truth": int, "voxels_pred": int}},
        "mean_foreground": {metric: mean over the foreground classes present},
        "averaged": [the names of those classes], "n_voxels": int}``. A class is present when the
        truth or the prediction has a voxel of it where scored: a class in neither would score a
        perfect 1.0 and hide a miss. Without any foreground, class 0 is averaged. Empty
        denominators give 1.0, see `class_metrics`.
    """
    pred, truth, mask = _prepare(pred, truth, mask)
    top = _max_label(pred, truth)
    n = top + 1 if n_classes is None else int(n_classes)
    if n < 1 or (n_classes is not None and n_classes != n):
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}.")
    if top >= n:
        raise ValueError(f"found label {top} but n_classes is {n}; labels must be below n_classes.")
    return from_confusion(_confusion(pred, truth, n, mask), beta, class_names)


def from_confusion(matrix: np.ndarray, beta=1.0, class_names: Sequence[str] | None = None) -> dict:
    """:func:`evaluate`'s result from an (n, n) confusion matrix (rows predicted, columns true)."""
    n = matrix.shape[0]
    classes = {}
    for k, key in enumerate(_class_keys(n, class_names)):
        entry = class_metrics(*_counts_for(matrix, k), beta=beta)
        entry["voxels_truth"] = int(matrix[:, k].sum())
        entry["voxels_pred"] = int(matrix[k].sum())
        classes[key] = entry
    present = [key for k, (key, c) in enumerate(classes.items())
               if k > 0 and c["voxels_truth"] + c["voxels_pred"] > 0]
    averaged = present or list(classes)[:1]
    mean = {m: float(np.mean([classes[key][m] for key in averaged])) for m in METRIC_NAMES}
    return {"classes": classes, "mean_foreground": mean, "averaged": averaged, "n_voxels": int(matrix.sum())}


def format_table(result: dict) -> str:
    """Render an `evaluate` result as a plain-text table.

    Parameters
    ----------
    result : dict
        The dictionary returned by `evaluate`.

    Returns
    -------
    str
        One row per class plus a ``mean (foreground)`` row, one column per metric,
        values with 3 decimals.
    """
    rows = [(name, values) for name, values in result["classes"].items()]
    rows.append(("mean (foreground)", result["mean_foreground"]))
    first = max(len("class"), *(len(name) for name, _ in rows))
    widths = [max(len(m), 5) for m in METRIC_NAMES]
    columns = zip(METRIC_NAMES, widths, strict=True)
    header = "  ".join(["class".ljust(first)] + [m.rjust(w) for m, w in columns])
    lines = [header, "-" * len(header)]
    for name, values in rows:
        cells = [f"{values[m]:.3f}".rjust(w) for m, w in zip(METRIC_NAMES, widths, strict=True)]
        lines.append("  ".join([name.ljust(first)] + cells))
    lines.append(f"voxels evaluated: {result['n_voxels']}; the mean is over {', '.join(result['averaged'])} "
                 "(the foreground classes in the truth or the mask)")
    return "\n".join(lines)
