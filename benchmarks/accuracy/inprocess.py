"""The command line shared by the in-process studies that log one JSON line per (dataset, budget)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from napari_sparseseg.core import trainer
from napari_sparseseg.core.config import preset, replace

from .._docs import replace_section
from . import data, protocol


def main(argv, description: str, run: Callable, log: Path, heading: str, intro: str,
         table: Callable[[list[dict]], list[str]], budgets: list[float]) -> int:
    """Run ``run(name, budget, k=..., seed=...)`` for each dataset and budget given, append its row
    (None: no row) to ``log``; ``--docs`` replaces the section ``heading`` of the docs with ``intro`` and
    ``table(rows)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("datasets", nargs="*", help=f"any of {', '.join(data.NAMES)}; none: only render")
    parser.add_argument("--budgets", type=float, nargs="+", default=budgets)
    parser.add_argument("--k", type=int, default=3, help="painted planes per axis (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", action="store_true")
    args = parser.parse_args(argv)
    unknown = set(args.datasets) - set(data.NAMES)
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(sorted(unknown))}; choose from {', '.join(data.NAMES)}")
    for name in args.datasets:
        for budget in args.budgets:
            row = run(name, budget, k=args.k, seed=args.seed)
            print(json.dumps(row), flush=True)
            if row is not None:
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    if args.docs:
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        replace_section(heading, "\n".join([heading, "", intro, "", *table(rows)]))
    return 0


def default_round(name: str, budget: float, k: int, seed: int) -> tuple:
    """(dataset, its annotation of ``k`` planes per axis, the default preset, its training settings
    for ``budget`` s, and ``trainer.prepare``'s (segmenter, images, annotations)) for a new round."""
    dataset = data.load(name)
    annotation = protocol.paint(dataset.truth, k)
    chosen = preset("fast")
    config = replace(chosen.train, max_time=budget, iterations=None, seed=seed)
    prepared = trainer.prepare([dataset.image], [annotation], chosen.model, config, dataset.spacing)
    return dataset, annotation, chosen, config, prepared
