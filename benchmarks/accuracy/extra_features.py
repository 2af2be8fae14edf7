"""Features ilastik has and the filter bank lacks: the first stage alone with them (not run by CI).

ilastik's default feature set has two families the bank (:mod:`napari_sparseseg.core.filters`)
leaves out: the structure tensor's eigenvalues (the gradient's outer product smoothed again, at an
inner scale σ and an outer one) and the difference of Gaussians. This probe appends them to the
bank's features, fits the default's boosted trees on the painted voxels as
:mod:`.derivatives` does, and scores every voxel (mean foreground Dice on the unpainted voxels)::

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.extra_features mni nuclei --k 3 --docs

Variants: ``bank`` (the default's features), ``+tensor`` (three eigenvalues at each of the
bank's σ up to :data:`TENSOR_MAX`, outer scale σ/2 as ilastik takes it), ``+tensor wide`` (outer
scale 2σ), ``+dog`` (the smoothed intensity at each σ minus the next σ's). Each (dataset, K, seed)
appends one JSON line to ``benchmarks/results/accuracy/extra_features.jsonl``.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from napari_sparseseg.core import filters
from napari_sparseseg.core.config import preset, replace

from . import data
from .derivatives import bank_features, record, render, trees_dice
from .run import RESULTS

LOG = RESULTS / "extra_features.jsonl"
# name: (outer scale as a multiple of σ, the largest σ of the bank that gets a tensor); None = the DoG
VARIANTS = {"tensor ×0.5 σ≤10": (0.5, 10.0), "tensor ×2 σ≤10": (2.0, 10.0), "tensor ×3 σ≤10": (3.0, 10.0),
            "tensor ×4 σ≤10": (4.0, 10.0), "tensor ×2 σ≤5": (2.0, 5.0), "tensor ×2 σ≤20": (2.0, 20.0),
            "dog": None}
HEADING = "## Features ilastik has and the bank lacks: the trees alone (in-process)"
INTRO = ("Reproduce with `PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.extra_features all --k 3 "
         "--variants ... --docs` (2-core CPU). The default's first stage alone (boosted trees on the painted "
         "voxels, no U-Net), mean foreground Dice on the unpainted voxels, on the bank's features (*bank*) "
         "and with channels appended: the structure tensor's three eigenvalues (inner scale σ, outer scale a "
         "multiple of σ; ilastik takes σ/2) at each σ of the bank up to a largest one, or the differences of "
         "Gaussians of neighbouring σ (*dog*). Gain over the bank in brackets; – = not run.")


def structure_tensor(volume: torch.Tensor, sigmas, rel, outer: float) -> list[torch.Tensor]:
    """The structure tensor's eigenvalues (descending) of ``volume`` (1, 1, Z, Y, X) at each σ:
    gradients of the volume smoothed at σ, their products smoothed at ``outer`` · σ."""
    out = []
    for sigma in sigmas:
        g = filters.smooth(volume, [sigma / r for r in rel])
        grad = [filters.diff(g, a, rel[a]) for a in range(3)]
        tensor = {(i, j): filters.smooth(grad[i] * grad[j], [outer * sigma / r for r in rel])
                  for i in range(3) for j in range(i, 3)}
        out += filters.hessian_eigenvalues(tensor)
    return out


def differences_of_gaussians(volume: torch.Tensor, sigmas, rel) -> list[torch.Tensor]:
    smoothed = [filters.smooth(volume, [s / r for r in rel]) for s in sigmas]
    return [a - b for a, b in itertools.pairwise(smoothed)]


def appended(volume: np.ndarray, variant: str, stem) -> np.ndarray:
    """Channels (C, N) float32 that ``variant`` appends to the bank's features of ``volume``."""
    x = torch.from_numpy(np.ascontiguousarray(volume, np.float32))[None, None]
    with torch.no_grad():
        if VARIANTS[variant] is None:
            parts = differences_of_gaussians(x, stem.sigmas, stem.rel)
        else:
            outer, largest = VARIANTS[variant]
            parts = structure_tensor(x, [s for s in stem.sigmas if s <= largest], stem.rel, outer)
    out = torch.cat(parts, 1).reshape(len(parts), -1)
    out = (out - out.mean(1, keepdim=True)) / out.std(1, keepdim=True).clamp(min=1e-12)
    return out.numpy()  # standardised, as the bank's channels are before they are rounded to float16


def first_stage(dataset, annotation, seed: int, variants) -> dict:
    """Mean foreground Dice of the trees alone on the bank's features (without the default's structure
    tensors) and with each variant's channels appended (one tree seed)."""
    model = replace(preset("fast").model, tensors=())
    segmenter, images, bank, painted, classes = bank_features(dataset, annotation, model)
    volume = segmenter.normalization.apply(images[0])
    row = {}
    for variant in ("bank", *variants):
        extra = appended(volume, variant, segmenter.net.stem) if variant != "bank" else bank[:0]
        features = np.concatenate([bank, extra.astype(bank.dtype)]).T
        row[variant] = round(trees_dice(features, painted, classes, segmenter, dataset, annotation, seed), 4)
        print(variant, row[variant], flush=True)
    return row


def table(rows: list[dict]) -> list[str]:
    """Per (K, dataset, seed): each variant's Dice (gain over the bank), from the latest row that has it."""
    merged: dict[tuple, dict] = {}
    for r in rows:
        merged.setdefault((r["k"], r["dataset"], r["seed"]), {}).update(r)
    lines = ["| dataset | K | seed | bank | " + " | ".join(VARIANTS) + " | engine |",
             "|---" * (len(VARIANTS) + 5) + "|"]
    for (k, name, seed), r in sorted(merged.items()):
        cells = [f"{r[v]:.4f} ({r[v] - r['bank']:+.4f})" if v in r else "–" for v in VARIANTS]
        lines.append(f"| {name} | {k} | {seed} | {r['bank']:.4f} | " + " | ".join(cells)
                     + f" | `{r['engine']}` |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help=f"any of {', '.join(data.NAMES)} or all; none: render")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--docs", action="store_true")
    args = parser.parse_args(argv)
    names = data.NAMES if args.datasets == ["all"] else args.datasets
    record(names, args.k, args.seeds, LOG,
           lambda dataset, annotation, seed: first_stage(dataset, annotation, seed, args.variants))
    if args.docs:
        render(LOG, HEADING, INTRO, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
