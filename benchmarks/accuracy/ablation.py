"""Engine v2 ablation: each lever alone and the chosen combination, trained in-process (K = 3 unless told).

Unlike :mod:`.v2` (whole commands, timed as a user sees them) this trains and predicts in one
Python process with :func:`napari_sparseseg.core.trainer.fit`-style calls, so a variant is just a
set of config overrides. Each run appends one JSON line to ``results/accuracy/ablation.jsonl``;
``--docs`` renders the table into docs/benchmarks.md.

    .venv/bin/python -m benchmarks.accuracy.ablation ct --variant default pointwise-only --budgets 120
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections import defaultdict

from napari_sparseseg.core import inference, trainer, trees
from napari_sparseseg.core.config import preset, replace

from .._docs import replace_section
from . import data, protocol
from .run import RESULTS, engine, machine

LOG = RESULTS / "ablation.jsonl"
HEADING = "## Engine v2 ablation (in-process, K = 3)"
# variant -> (preset, model overrides, train overrides)
# the first stage until 2026-12-05; the variants below it used it (and one prior weight throughout)
ONE_WEIGHT = {"predict_prior_weight": None}  # the prior weighted as in training also when predicting
PERCEPTRON = {"pointwise": 64, "trees": 0, **ONE_WEIGHT}
VARIANTS = {
    "plain": ("plain", {}, {}),
    "default": ("fast", {}, {}),
    "trees-only": ("fast", {}, {"iterations": 1}),
    "trees, prior weight 0.15": ("fast", {"prior_weight": 0.15, **ONE_WEIGHT}, {}),
    "trees, prior weight 0.6": ("fast", {"prior_weight": 0.6, **ONE_WEIGHT}, {}),
    "trees, prior weight 1": ("fast", {"prior_weight": 1.0, **ONE_WEIGHT}, {}),
    "filters σ to 20": ("fast", {"filters": (1.0, 2.5, 5.0, 10.0, 20.0)}, {}),
    "v2.2: σ 1, 2.5, 5": ("fast", {"filters": (1.0, 2.5, 5.0)}, {}),
    "v2.2 trees-only: σ 1, 2.5, 5": ("fast", {"filters": (1.0, 2.5, 5.0)}, {"iterations": 1}),
    "trees-only, σ to 20": ("fast", {"filters": (1.0, 2.5, 5.0, 10.0, 20.0)}, {"iterations": 1}),
    "perceptron": ("fast", PERCEPTRON, {}),
    "pointwise-only": ("fast", PERCEPTRON, {"iterations": 1}),
    "filters-unet": ("fast", {"pointwise": 0, "trees": 0}, {}),
    "prior-weight-0": ("fast", {**PERCEPTRON, "prior_weight": 0.0}, {}),
    "prior-weight-1": ("fast", {**PERCEPTRON, "prior_weight": 1.0}, {}),
    "no-rotation": ("fast", PERCEPTRON, {"rotate_augment": 0.0}),
    "rotate-every-patch": ("fast", PERCEPTRON, {"rotate_augment": 1.0}),
    "pointwise-only, 128 wide": ("fast", {**PERCEPTRON, "pointwise": 128}, {"iterations": 1}),
    "pointwise 128 wide": ("fast", {**PERCEPTRON, "pointwise": 128}, {}),
    "pointwise-only, no step cap": ("fast", PERCEPTRON, {"iterations": 1, "pointwise_steps": 10**6}),
    "pointwise-only, 256 wide": ("fast", {**PERCEPTRON, "pointwise": 256}, {"iterations": 1}),
    "pointwise 256 wide": ("fast", {**PERCEPTRON, "pointwise": 256}, {}),
    "weights averaged over the last half": ("fast", PERCEPTRON, {"weight_average": 0.5}),
    "trees, U-Net lr 1e-3": ("fast", ONE_WEIGHT, {"learning_rate": 1e-3}),
    "trees, weights averaged over the last half": ("fast", ONE_WEIGHT, {"weight_average": 0.5}),
    "v2.3, prior weight 0.3 when predicting": ("fast", ONE_WEIGHT, {}),
    "trees, no rotation": ("fast", {}, {"rotate_augment": 0.0}),
    "wide second derivatives": ("fast", {"derivatives": "wide"}, {}),
    "both second derivatives at σ 1": ("fast", {"derivatives": "both"}, {}),
    "residual blocks": ("fast", {"blocks": "residual"}, {}),
    "strided-conv down-steps": ("fast", {"downsample": "strided"}, {}),
    "residual blocks, strided-conv down-steps": ("fast", {"blocks": "residual", "downsample": "strided"}, {}),
    "deep supervision": ("fast", {"deep_supervision": True}, {}),
    "200 boosting rounds": ("fast", {"trees": 200}, {}),
    "200 boosting rounds, margin 8": ("fast", {"trees": 200, "tree_margin": 8.0}, {}),
    "margin 8": ("fast", {"tree_margin": 8.0}, {}),
    "final trees 200 rounds, folds 100": ("fast", {"trees": 200, "fold_rounds": 100}, {}),
    "elastic 4": ("fast", {}, {"elastic_augment": 4.0}),
    "elastic 8": ("fast", {}, {"elastic_augment": 8.0}),
    "without structure tensors": ("fast", {"tensors": ()}, {}),
    "structure tensors σ 1–10": ("fast", {"tensors": (1.0, 2.5, 5.0, 10.0)}, {}),
}
# Rows of earlier designs stay in the log under their own names (measured with earlier commits).
EARLIER = ("nearest-plane context", "v2.3, float32 features",
           "v2.0 residual", "v2.0 residual + out-of-fold", "v2.0 residual, U-Net lr 1e-3", "trees, 3 folds",
           "default, 3 folds", "default, 9 folds", "trees-only, 3 folds")
# The grid of issue 13, all from one engine: the chosen combination, no lever (plain), the
# filter-bank U-Net without a first stage, and the default with one lever taken away. The trees'
# answer alone is the default's 20 s cell (a 20 s budget skips the U-Net), so the levers that act on
# the U-Net only share that cell. The chosen combination at 600 s is the engine-v2 table's row
# (``sparseseg segment``, :mod:`.v2`) when that row ran with the same engine.
GRID = ("default", "plain", "filters-unet", "v2.2: σ 1, 2.5, 5", "trees, no rotation",
        "v2.3, prior weight 0.3 when predicting")
UNET_ONLY = ("trees, no rotation", "v2.3, prior weight 0.3 when predicting")
GRID_DATASETS = ("ct", "abdomen-mr", "spm-t1", "nuclei")
GRID_BUDGETS = (20.0, 60.0, 120.0)
LONG = 600.0
GRID_HEADING = "## Engine v2 ablation grid (one engine, in-process, K = 3)"


def run(name: str, variant: str, budget: float, k: int = 3, seed: int = 0) -> dict:
    """Train variant ``variant`` on dataset ``name`` for ``budget`` s and score the unpainted voxels."""
    dataset = data.load(name)
    annotation = protocol.paint(dataset.truth, k)
    chosen, model, train = VARIANTS[variant]
    p = preset(chosen)
    config = replace(p.train, **{"max_time": budget, "iterations": None, "seed": seed, **train})
    start = time.perf_counter()
    segmenter, images, annotations = trainer.prepare([dataset.image], [annotation],
                                                     replace(p.model, **model), config, dataset.spacing)
    events = list(trainer.train(segmenter, images, annotations, config))
    trained = time.perf_counter()
    labels = inference.predict(segmenter, dataset.image, p.infer).labels
    score = protocol.score(labels, dataset.truth, annotation == 0, dataset.class_names)
    return {"dataset": name, "variant": variant, "budget_s": budget, "k": k, "seed": seed,
            "iterations": events[-1].iteration, "kept": "trees" if events[-1].kept_first else "U-Net",
            "train_s": round(trained - start, 1),
            "predict_s": round(time.perf_counter() - trained, 1), **score, "date": machine()["date"],
            "engine": engine()}


def in_grid(variant: str, budget: float) -> bool:
    """Whether the grid runs ``variant`` at ``budget`` s (see :data:`GRID`)."""
    return budget in GRID_BUDGETS and not (budget <= 20 and variant in UNET_ONLY)


def grid_table(rows: list[dict]) -> list[str]:
    """Dataset and variant (rows) against budget (columns) from the grid rows of the latest engine."""
    grid = [r for r in rows if r.get("grid")]
    if not grid:
        return []
    latest = grid[-1]["engine"]
    grid = [r for r in grid + _long_rows(GRID_DATASETS) if r["engine"] == latest]
    cells, budgets = defaultdict(list), sorted({r["budget_s"] for r in grid})
    for r in grid:
        cells[r["dataset"], r["variant"], r["budget_s"]].append((r["date"], r["mean_fg_dice"]))
    datasets = list(dict.fromkeys(r["dataset"] for r in grid))
    dates = sorted(date for runs in cells.values() for date, _ in runs)
    lines = [f"Engine `{latest}` (git tree of `src/`), runs from {dates[0]} to {dates[-1]}.", "",
             "| dataset | variant | " + " | ".join(f"{b:g} s" for b in budgets) + " |",
             "|---|---|" + "---|" * len(budgets)]
    for name, variant in itertools.product(datasets, GRID):
        row = [_grid_cell(cells, name, variant, b) for b in budgets]
        if any(c != "–" for c in row):
            lines.append(f"| {name} | {variant} | " + " | ".join(row) + " |")
    return lines


def _long_rows(datasets) -> list[dict]:
    """The default's K = 3 seed-0 rows at :data:`LONG` s from the engine-v2 table, as grid rows."""
    rows = []
    for name in datasets:
        path = RESULTS / f"v2_{name}.json"
        runs = json.loads(path.read_text())["runs"] if path.is_file() else []
        rows += [{"dataset": name, "variant": "default", **{k: r[k] for k in ("budget_s", "date",
                  "mean_fg_dice", "engine")}} for r in runs
                 if (r["method"], r["k"], r.get("budget_s")) == ("net", 3, LONG) and "engine" in r]
    return rows


def _grid_cell(cells, name: str, variant: str, budget: float) -> str:
    if budget <= 20 and variant in UNET_ONLY and cells[name, "default", budget]:
        return "= default"
    return _cell(cells[name, variant, budget])


def table(rows: list[dict]) -> list[str]:
    """Mean foreground Dice per variant (rows) and dataset @ budget (columns): the mean over the
    runs (seeds, or repeats of one seed) of the latest day and engine a cell was measured with,
    with their number when more than one."""
    cells, columns = defaultdict(lambda: defaultdict(list)), []
    for r in rows:
        column = f"{r['dataset']} {r['budget_s']:g} s" + (f" K = {r['k']}" if r.get("k", 3) != 3 else "")
        if column not in columns:
            columns.append(column)
        runs = cells[r["variant"]][column]
        if runs and (runs[-1][0], runs[-1][2]) != (r["date"][:10], r.get("engine")):
            runs.clear()  # a later day's or engine's runs replace the earlier ones (the code changed since)
        runs.append((r["date"][:10], r["mean_fg_dice"], r.get("engine")))
    lines = ["| variant | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for variant in (*VARIANTS, *EARLIER):
        if variant in cells:
            lines.append(f"| {variant} | " + " | ".join(_cell(cells[variant][c]) for c in columns) + " |")
    return lines


def _cell(runs: list) -> str:
    if not runs:
        return "–"
    mean = sum(run[1] for run in runs) / len(runs)  # (date, Dice, ...)
    return f"{mean:.4f}" + (f" ({len(runs)} runs)" if len(runs) > 1 else "")


GRID_INTRO = [
    "Reproduce with `PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.ablation --grid --docs` "
    "(2-core CPU, in-process, quiet machine, seed 0; one dataset at a time by naming it). Mean "
    "foreground Dice on the unpainted voxels. `default` is the chosen combination (engine v2.3 with "
    "the trees' prior weighing 0.6 when predicting); `plain` is no lever (`--preset plain`); "
    "`filters-unet` is the filter-bank stem without a first stage; `v2.2: σ 1, 2.5, 5` the default "
    "with the filter scales before v2.3; `trees, no rotation` the default without free-angle "
    "rotation; `v2.3, prior weight 0.3 when predicting` the default with one prior weight. The trees' "
    "answer alone is the default's 20 s cell: a 20 s budget ends before the U-Net would start, so the "
    "two levers that act on the U-Net only read '= default' there. The 600 s column is the "
    "default's row of the engine-v2 table (`sparseseg segment --max-time 600`, from `.venv/bin/python -m "
    "benchmarks.accuracy.v2 --dataset DATASET --budgets 600 --also --no-forest`), shown when it ran "
    "with the same engine: the longest budget runs the chosen combination only. "
    "The cap on passes over the painted voxels binds only beyond about 1 200 U-Net iterations (the "
    "MRs at 600 s, docs/accuracy.md) and is not a row.", ""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help=f"any of {', '.join(data.NAMES)}; none: only render")
    parser.add_argument("--variant", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--budgets", type=float, nargs="+", help="default: 20 120; with --grid 20 60 120")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--k", type=int, default=3, help="painted planes per axis")
    parser.add_argument("--folds", type=int, help="out-of-fold groups of the trees (default: trees.FOLDS); "
                        "the variant is logged as 'VARIANT, N folds'")
    parser.add_argument("--grid", action="store_true", help="the grid's variants and budgets "
                        f"(datasets: {' '.join(GRID_DATASETS)} unless named)")
    parser.add_argument("--docs", action="store_true")
    args = parser.parse_args(argv)
    trees.FOLDS = args.folds or trees.FOLDS
    unknown = set(args.datasets) - set(data.NAMES)
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(sorted(unknown))}; choose from {', '.join(data.NAMES)}")
    budgets = args.budgets or (GRID_BUDGETS if args.grid else (20.0, 120.0))
    variants = GRID if args.grid else args.variant
    for name in args.datasets or (GRID_DATASETS if args.grid else ()):
        for budget, seed, variant in itertools.product(budgets, args.seeds, variants):
            if args.grid and not in_grid(variant, budget):
                continue
            row = {**run(name, variant, budget, k=args.k, seed=seed), **({"grid": True} if args.grid else {})}
            if args.folds:
                row["variant"] = f"{variant}, {args.folds} folds"
            print(json.dumps(row), flush=True)
            with LOG.open("a") as f:
                f.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in LOG.read_text().splitlines()] if LOG.is_file() else []
    print("\n".join(table(rows)))
    if args.docs and rows:
        intro = ["Reproduce a cell with `.venv/bin/python -m benchmarks.accuracy.ablation DATASET "
                 "--variant VARIANT --budgets SECONDS --docs` (2-core CPU, in-process, quiet machine; "
                 "`--k 2` for the K = 2 columns, `--folds N` for the 'N folds' rows). A cell is the "
                 "mean of the runs of the latest day and engine that measured it. `default` is "
                 "engine v2.3 (boosted trees, 5 folds, filter scales σ 1 … 40; 2026-12-05), with the "
                 "structure tensor's eigenvalues at σ 1 … 20 since 2026-12-07 20:20 (the ten 120 s "
                 "cells of that engine, and the aorta CT's three seeds; the other `default` cells ran "
                 "the default of their day, which is `without structure tensors`: that row ran "
                 "beside the new default, on the same host, in the same session); `v2.2` rows "
                 "are the same with σ 1, 2.5, 5, as are the 'default, N folds' rows; `perceptron` and "
                 "the rows below it down to the weight averaging are engine v2.1's first stage (a "
                 "perceptron) and its levers, measured with σ 1, 2.5, 5; `trees, 3 folds` is v2.2's "
                 "first design. `nearest-plane context` (commit ac0c9a9, reverted) gave the U-Net "
                 "every voxel's tree answer from the fold trees that left out its nearest painted "
                 "plane; `v2.3, float32 features` is the default before features were stored as "
                 "float16 and smoothed by matrix product; `v2.3, prior weight 0.3 when predicting` is "
                 "the default before 2026-12-05 22:40 (since then the trees' prior weighs 0.6 when "
                 "predicting; the `trees, …` rows keep their training weight when predicting). "
                 "`wide second derivatives` and `both second derivatives at σ 1` are the default "
                 "with the filter bank's second derivatives as before 2026-12-06, or with both stencils "
                 "at σ 1 (docs/accuracy.md, \"Do the compact second derivatives cost the organ volumes "
                 "at K ≠ 3?\"). `residual blocks`, `strided-conv down-steps`, both together and `deep "
                 "supervision` are the default's U-Net with the architecture options of `ModelConfig` "
                 "(`blocks`, `downsample`, `deep_supervision`; docs/accuracy.md, \"Residual blocks, "
                 "strided down-steps and deep supervision\"). The grid below has the same variants, all "
                 "measured with one engine.", ""]
        replace_section(HEADING, "\n".join([HEADING, "", *intro, *table(rows)]))
        if grid_table(rows):
            replace_section(GRID_HEADING, "\n".join([GRID_HEADING, "", *GRID_INTRO, *grid_table(rows)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
