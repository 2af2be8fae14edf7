"""What was segmented, in physical units: volume per class, and size and shape per object.

Per class (:func:`class_table`): voxel count, volume, share of the volume, the mean and spread of
the image inside it and, from the probabilities when given, a soft volume (sum of probabilities ×
voxel volume) with the range between p > 0.75 and p > 0.25. Per connected object
(:func:`object_table`): volume, centroid, bounding box, the extent along z, y and x and the largest
diameter (both between the centres of the outermost voxels, as calipers set on them), the ellipsoid
estimate π/6 · L · W · H from those three extents beside the exact volume, and the surface area of a
marching-cubes mesh of the lightly smoothed object. Objects are 6-connected by default (voxels
sharing a face); ``connectivity=26`` also joins voxels that touch at an edge or a corner.

Lengths are in the file's unit (``unit``: ``"mm"``, ``"um"``, ``"m"`` or ``""`` when the file does not
say); :func:`readable_volume` also gives millilitres for mm and m. No Qt here: the CLI and the napari
widget both call these functions.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist
from skimage.measure import marching_cubes, mesh_surface_area

from .io import Volume, as_spacing, file_format, read_volume
from .labels import as_labels, class_name

UNIT_NAMES = {"mm": "mm", "um": "µm", "m": "m", "": "unknown unit"}
CUBIC_PER_ML = {"mm": 1e3, "m": 1e-6}  # unit³ in one millilitre
SOFT_BOUNDS = (0.75, 0.25)  # the probability thresholds of the reported volume range


def check_mask(mask: np.ndarray, name: str = "the mask") -> np.ndarray:
    """``mask`` as a 3D non-negative integer array, or a ValueError in one sentence."""
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"{name} has {mask.ndim} dimensions ({mask.shape}); measuring needs a 3D label "
                         "image.")
    return as_labels(mask, name)


def read_mask(path, image: Volume | None = None) -> Volume:
    """The mask file ``path`` as a checked label volume; a ``.npy`` mask, which stores no voxel size,
    takes the spacing and unit of ``image`` (the volume it segments) when given."""
    mask = read_volume(path)
    data = check_mask(mask.data, str(path))
    if image is not None and file_format(path) == "npy":
        return Volume(data, image.spacing, path=path, unit=image.unit)
    return Volume(data, mask.spacing, mask.affine, mask.header, path, mask.unit)


def readable_volume(volume: float, unit: str) -> str:
    """``volume`` (unit³) as a user reads it: mL for mm and m, µm³ for microscopy."""
    if unit in CUBIC_PER_ML:
        return f"{volume / CUBIC_PER_ML[unit]:.3f} mL"
    return f"{volume:.6g} {UNIT_NAMES.get(unit, unit)}³"


def class_table(mask, spacing, class_names=None, probabilities=None, image=None) -> list[dict]:
    """One row per foreground class: voxels, volume, fraction (and soft volume, image mean).

    ``probabilities`` (K, Z, Y, X) in 0..1 on the mask's grid add ``soft_volume`` and the volume range
    ``volume_p75``..``volume_p25``; ``image`` (Z, Y, X) adds the mean and standard deviation of the
    image inside each class (e.g. HU). Classes are 1..max(mask, number of names - 1); an absent class
    has zero volume.
    """
    mask, spacing = check_mask(mask), as_spacing(spacing)
    voxel = math.prod(spacing)
    n = max(int(mask.max(initial=0)), len(class_names or ()) - 1, 0)
    counts = np.bincount(mask.ravel(), minlength=n + 1)
    if probabilities is not None:
        _check_grid(probabilities.shape[1:], mask.shape, "the probabilities")
        if probabilities.shape[0] <= n:
            raise ValueError(f"The probabilities hold {probabilities.shape[0]} classes but the mask has "
                             f"labels up to {n}; give the probabilities written with this mask.")
    if image is not None:
        _check_grid(image.shape, mask.shape, "the image")
    rows = []
    for c in range(1, n + 1):
        row = {"class": c, "name": class_name(c, class_names), "voxels": int(counts[c]),
               "volume": float(counts[c]) * voxel, "fraction": float(counts[c]) / max(mask.size, 1)}
        if probabilities is not None:
            row.update(_soft(probabilities[c], voxel))
        if image is not None:
            inside = image[mask == c]
            row["image_mean"] = float(inside.mean()) if inside.size else float("nan")
            row["image_std"] = float(inside.std()) if inside.size else float("nan")
        rows.append(row)
    return rows


def object_table(mask, spacing, class_names=None, connectivity: int = 6) -> list[dict]:
    """One row per connected object of every foreground class (see the module docstring)."""
    mask, spacing = check_mask(mask), as_spacing(spacing)
    if connectivity not in (6, 26):
        raise ValueError(f"connectivity must be 6 or 26, got {connectivity}.")
    structure = ndimage.generate_binary_structure(3, 1 if connectivity == 6 else 3)
    rows = []
    for c in (int(v) for v in np.unique(mask) if v > 0):
        labels, _ = ndimage.label(mask == c, structure)
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            rows.append({"class": c, "name": class_name(c, class_names), "object": index,
                         **_object(labels[box] == index, box, spacing)})
    return rows


def change_table(before: list[dict], after: list[dict]) -> list[dict]:
    """Per class of either of two :func:`class_table` results (same subject): volumes and change."""
    old, new = ({r["class"]: r for r in rows} for rows in (before, after))
    rows = []
    for c in sorted(old.keys() | new.keys()):
        was, now = (table[c]["volume"] if c in table else 0.0 for table in (old, new))
        change = now - was
        rows.append({"class": c, "name": (new.get(c) or old[c])["name"], "volume_before": was,
                     "volume_after": now, "change": change,
                     "change_percent": 100 * change / was if was else float("nan")})
    return rows


def _object(region: np.ndarray, box, spacing) -> dict:
    voxels = int(region.sum())
    points = np.argwhere(region).astype(np.float64)
    offset = np.array([s.start for s in box], np.float64)
    scale = np.asarray(spacing)
    extents = (points.max(0) - points.min(0)) * scale
    length, width, height = (float(e) for e in extents)
    return {
        "voxels": voxels,
        "volume": voxels * math.prod(spacing),
        "centroid_z": float((points[:, 0].mean() + offset[0]) * scale[0]),
        "centroid_y": float((points[:, 1].mean() + offset[1]) * scale[1]),
        "centroid_x": float((points[:, 2].mean() + offset[2]) * scale[2]),
        "bbox": [int(s.start) for s in box] + [int(s.stop) for s in box],
        "extent_z": length, "extent_y": width, "extent_x": height,
        "max_diameter": _diameter(region, scale),
        "ellipsoid_volume": math.pi / 6 * length * width * height,
        "surface_area": _surface(region, spacing),
    }


def _diameter(region: np.ndarray, scale: np.ndarray) -> float:
    """Largest distance between two voxel centres of the object (on its convex hull)."""
    outline = region & ~ndimage.binary_erosion(region)
    points = np.argwhere(outline) * scale
    if len(points) < 2:
        return 0.0
    if len(points) > 4:
        with contextlib.suppress(QhullError):  # degenerate: all pairwise distances below, still few
            points = points[ConvexHull(points, qhull_options="QJ").vertices]
    return float(pdist(points).max())


def _surface(region: np.ndarray, spacing) -> float:
    """Area of the marching-cubes mesh at level 0.5 of the object smoothed with σ = 1 voxel.

    The mesh of the raw voxels is a staircase that overstates a sphere's area by 8–19 % (more on
    anisotropic grids); smoothed, a sphere of radius 10 voxels or more is within 3 %, one of 5
    voxels 10 % under. Objects that smoothing would erase are meshed as they are. 3D Slicer
    smooths its closed surfaces before measuring them, too.
    """
    padded = np.pad(region, 2).astype(np.float32)
    smooth = ndimage.gaussian_filter(padded, 1.0)
    if smooth.max() > 0.5:  # an object a few voxels across vanishes when smoothed: keep its voxels
        padded = smooth
    verts, faces, _, _ = marching_cubes(padded, 0.5, spacing=spacing)
    return float(mesh_surface_area(verts, faces))


def _soft(probability: np.ndarray, voxel: float) -> dict:
    p = probability.astype(np.float32)
    if np.issubdtype(probability.dtype, np.integer):
        p /= 255.0  # the 0..255 probabilities sparseseg writes
    high, low = SOFT_BOUNDS
    return {"soft_volume": float(p.sum(dtype=np.float64)) * voxel,
            "volume_p75": float(np.count_nonzero(p > high)) * voxel,
            "volume_p25": float(np.count_nonzero(p > low)) * voxel}


def _check_grid(shape, expected, what: str) -> None:
    if tuple(shape) != tuple(expected):
        raise ValueError(f"The grid of {what}, {tuple(shape)}, differs from the mask's {tuple(expected)}; "
                         "give files of the same volume.")


def format_classes(rows: list[dict], unit: str) -> str:
    """The per-class table as text: volume in unit³ and readable, share, soft volume and its range."""
    u = UNIT_NAMES.get(unit, unit)
    columns = [("name", "class", "{}"), ("voxels", "voxels", "{:,}"), ("volume", f"volume ({u}³)", "{:.6g}"),
               ("readable", "volume", "{}"), ("fraction", "% of volume", "{:.2%}")]
    if rows and "soft_volume" in rows[0]:
        columns += [("soft_volume", "soft volume", "{:.6g}"), ("range", "p>0.75 .. p>0.25", "{}")]
    if rows and "image_mean" in rows[0]:
        columns += [("image", "image mean ± sd", "{}")]
    shown = [{**r, "readable": readable_volume(r["volume"], unit),
              "range": f"{r.get('volume_p75', 0):.6g} .. {r.get('volume_p25', 0):.6g}",
              "image": f"{r.get('image_mean', 0):.4g} ± {r.get('image_std', 0):.3g}"} for r in rows]
    note = "" if unit else "\nunit unknown: the file does not say; lengths are in its spacing units"
    return format_rows(shown, columns) + note


def format_objects(rows: list[dict], unit: str) -> str:
    """The per-object table as text."""
    u = UNIT_NAMES.get(unit, unit)
    columns = [("name", "class", "{}"), ("object", "object", "{}"), ("volume", f"volume ({u}³)", "{:.6g}"),
               ("ellipsoid_volume", "π/6·L·W·H", "{:.6g}"), ("extents", f"z × y × x ({u})", "{}"),
               ("max_diameter", f"max diameter ({u})", "{:.4g}"),
               ("surface_area", f"surface ({u}²)", "{:.6g}"), ("centroid", f"centroid z, y, x ({u})", "{}")]
    shown = [{**r, "extents": " × ".join(f"{r['extent_' + a]:.4g}" for a in "zyx"),
              "centroid": ", ".join(f"{r['centroid_' + a]:.4g}" for a in "zyx")} for r in rows]
    return format_rows(shown, columns) if rows else "no objects"


def format_change(rows: list[dict], unit: str) -> str:
    """The follow-up table as text."""
    u = UNIT_NAMES.get(unit, unit)
    columns = [("name", "class", "{}"), ("volume_before", f"first ({u}³)", "{:.6g}"),
               ("volume_after", f"second ({u}³)", "{:.6g}"), ("change", f"change ({u}³)", "{:+.6g}"),
               ("change_percent", "change %", "{:+.1f}")]
    return format_rows(rows, columns)


def format_rows(rows: list[dict], columns) -> str:
    """Rows as an aligned text table; ``columns`` are (key, header, format) triples."""
    cells = [[fmt.format(r[key]) for key, _, fmt in columns] for r in rows]
    widths = [max(len(head), *(len(c[i]) for c in cells)) if cells else len(head)
              for i, (_, head, _) in enumerate(columns)]
    header = _line([head for _, head, _ in columns], widths)
    return "\n".join([header, "-" * len(header), *(_line(c, widths) for c in cells)])


def _line(values, widths) -> str:
    """The first column left-aligned, the others right-aligned."""
    return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))


def csv_text(rows: list[dict]) -> str:
    """Rows as CSV (lists such as the bounding box become space-separated numbers)."""
    out = io.StringIO()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(out, keys, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()})
    return out.getvalue()
