"""The three brain volumes as one scan would look: BrainWeb's 20 % non-uniformity and 3 % noise.

The brain volumes here are averages: the MNI152 template of 152 people, Colin27 of 27 scans of
one, SPM's T1 template of a population. They are smoother and flatter than the single scans of
other people and scanners that the engine is judged on. These variants add back what a single
scan has, with BrainWeb's default simulation settings (Cocosco et al. 1997, "BrainWeb: online
interface to a 3D MRI simulated brain database"): a smooth multiplicative field that spans
±10 % ("20 % intensity non-uniformity") and Rician noise whose σ is 3 % of the brightest tissue
(here the 99th percentile of the labelled voxels). The labels are unchanged. Chosen once, from
BrainWeb's defaults, and never tuned on: a check of what generalises, not a target.

    .venv/bin/python -m benchmarks.accuracy.v2 --dataset mni-scan --budgets 120 --seeds 1 2 --also
    .venv/bin/python -m benchmarks.accuracy.scan_like     # the table, beside the clean volumes
"""

from __future__ import annotations

import json
import zlib

import numpy as np
from scipy import ndimage

from . import data
from .run import RESULTS

BASES = ("mni", "colin", "spm-t1")
SUFFIX = "-scan"
NAMES = tuple(f"{name}{SUFFIX}" for name in BASES)
NON_UNIFORMITY = 0.20  # peak to peak: the field spans 1 ± 0.10
NOISE = 0.03  # σ of each of the two Gaussian channels, over the brightest tissue
FIELD_GRID = 4  # control points per axis of the smooth field


def scan_like(dataset: data.Dataset) -> data.Dataset:
    """``dataset`` with a smooth multiplicative field and Rician noise (seeded by its name)."""
    rng = np.random.default_rng(zlib.crc32(dataset.name.encode()))
    image = dataset.image.astype(np.float32) * bias_field(dataset.image.shape, rng)
    sigma = NOISE * float(np.percentile(dataset.image[dataset.truth > 0], 99))
    real = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    imaginary = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    noisy = np.sqrt(real * real + imaginary * imaginary)
    source = (f"{dataset.source}; BrainWeb-like {NON_UNIFORMITY:.0%} non-uniformity and {NOISE:.0%} "
              "Rician noise (benchmarks/accuracy/scan_like.py)")
    return data.Dataset(f"{dataset.name}{SUFFIX}", noisy, dataset.truth, dataset.spacing, dataset.class_names,
                        source)


def bias_field(shape, rng: np.random.Generator) -> np.ndarray:
    """A smooth field (cubic interpolation of a coarse random grid) spanning 1 ± NON_UNIFORMITY / 2."""
    coarse = rng.normal(size=(FIELD_GRID,) * 3)
    field = ndimage.zoom(coarse, [s / FIELD_GRID for s in shape], order=3, mode="nearest", grid_mode=True)
    field = field[tuple(slice(0, s) for s in shape)]
    low, high = field.min(), field.max()
    return (1.0 + NON_UNIFORMITY * ((field - low) / (high - low) - 0.5)).astype(np.float32)


def _summary(name: str) -> dict[str, float] | None:
    """The K = 3 rows of one results file: forest, plain at 120 s, the default's seeds at 120 s, 600 s."""
    path = RESULTS / f"v2_{name}.json"
    if not path.is_file():
        return None
    runs = [r for r in json.loads(path.read_text())["runs"] if r["k"] == 3]

    def dice(methods, budget=None) -> list[float]:
        return [r["mean_fg_dice"] for r in runs if r["method"] in methods and r.get("budget_s") == budget]

    nets, forest = dice(("net", "net-seed1", "net-seed2"), 120.0), dice(("forest",))
    if not nets or not forest:
        return None
    plain, long = dice(("net-plain",), 120.0), dice(("net",), 600.0)
    return {"forest": forest[-1], "net": float(np.mean(nets)), "low": min(nets), "high": max(nets),
            "seeds": len(nets), "plain": plain[-1] if plain else None, "long": long[-1] if long else None}


def table() -> str:
    """Markdown: each brain volume clean and scan-like; the forest, plain and the default (K = 3)."""
    lines = ["| volume | forest | plain, 120 s | default, 120 s (seeds) | seeds' range | default − forest "
             "| default, 600 s |", "|---|---|---|---|---|---|---|"]
    for base in BASES:
        for name in (base, f"{base}{SUFFIX}"):
            found = _summary(name)
            if found:
                plain, long = ("–" if found[k] is None else f"{found[k]:.4f}" for k in ("plain", "long"))
                lead = found["net"] - found["forest"]
                net = f"{found['net']:.4f} ({found['seeds']})"
                lines.append(f"| {name} | {found['forest']:.4f} | {plain} | {net} "
                             f"| {found['low']:.4f} – {found['high']:.4f} | {lead:+.4f} | {long} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
