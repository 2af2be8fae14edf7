"""Run the accuracy benchmark: net vs forest from the same painted slices, per dataset and K.

For every dataset and every K: paint K slices per axis, run ``sparseseg segment`` with the time
budget and the random forest on the same files, score both on the unpainted voxels. For one K
(3 when asked for, else the first) the net also runs with shorter budgets (Dice vs seconds) and
once on the dense truth (upper bound). One JSON per dataset is rewritten after every run, then the
markdown summary and the plots are rendered from all JSON files present.

    nice -n 10 .venv/bin/python -m benchmarks.accuracy.run --dataset nuclei --k 3 --max-time 120
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from napari_sparseseg.core import io

from .._docs import replace_section
from .._machine import describe, wait_quiet
from . import commands, data, protocol, report

RESULTS = data.CACHE.parent
IMAGES = commands.REPO / "docs" / "images"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=[*data.NAMES, "all"], default="all")
    parser.add_argument("--k", type=int, nargs="+", help="painted slices per axis (default 1 2 3 5)")
    parser.add_argument("--max-time", type=float, help="net training budget, s (default 120)")
    parser.add_argument("--curve", type=float, nargs="*", help="extra budgets for Dice vs seconds")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--trees", type=int, help="random forest size (default 100)")
    parser.add_argument("--jobs", type=int, default=2, help="random forest n_jobs")
    parser.add_argument("--no-forest", action="store_true")
    parser.add_argument("--no-dense", action="store_true", help="skip the dense-truth upper bound")
    parser.add_argument("--quick", action="store_true", help="small crops and budgets: a smoke test")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each timed command wait up to S seconds for idle CPUs",
    )
    parser.add_argument("--report-only", action="store_true", help="re-render summary and plots")
    parser.add_argument("--extras-only", action="store_true", help="only the --curve budgets and dense run")
    parser.add_argument(
        "--merge", action="store_true", help="keep earlier runs of the dataset; replace only the ones re-run"
    )
    parser.add_argument("--docs", action="store_true", help="rewrite the accuracy part of docs/benchmarks.md")
    return _defaults(parser.parse_args(argv))


def _defaults(args: argparse.Namespace) -> argparse.Namespace:
    quick = args.quick
    args.k = args.k or ([2] if quick else [1, 2, 3, 5])
    args.max_time = args.max_time or (10.0 if quick else 120.0)
    if args.curve is None:
        args.curve = [args.max_time / 4, args.max_time / 2]
    args.trees = args.trees or (20 if quick else 100)
    args.suffix = "_quick" if quick else ""
    return args


def machine() -> dict:
    """Facts worth printing next to every number (no torch import needed)."""
    return describe(packages=("torch", "scikit-learn", "numpy", "scipy"))


def engine() -> str:
    """The git tree of ``src/`` that ran (``+changed`` with uncommitted edits): rows with one engine
    value measured the same code, whatever else changed in the repository."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(commands.REPO), *args], capture_output=True,
                                  text=True).stdout.strip()
        except OSError:  # no git where the copy runs (benchmarks/gpu.sh on a lent machine)
            return ""

    tree = git("rev-parse", "HEAD:src")[:10] or "unknown"
    return tree + ("+changed" if git("status", "--porcelain", "src") else "")


class Recorder:
    """One dataset's results, rewritten to its JSON file after every run."""

    def __init__(self, path: Path, dataset: data.Dataset, args: argparse.Namespace):
        self.path = path
        earlier = json.loads(path.read_text())["runs"] if args.merge and path.is_file() else []
        self.result = {
            "dataset": data.describe(dataset),
            "machine": machine(),
            "settings": {k: getattr(args, k) for k in ("k", "max_time", "curve", "preset", "trees", "jobs")},
            "load_average_start": os.getloadavg(),
            "runs": earlier,
        }
        if earlier:
            self.result["settings"]["k"] = sorted({r["k"] for r in earlier} | set(args.k))

    def add(self, run: dict) -> None:
        run = {**run, "date": time.strftime("%Y-%m-%d %H:%M"), "engine": engine()}
        key = _key(run)
        self.result["runs"] = [r for r in self.result["runs"] if _key(r) != key] + [run]
        self.result["load_average_end"] = os.getloadavg()
        self.path.write_text(json.dumps(self.result, indent=1))
        dice = run.get("mean_fg_dice")
        print(
            f"  {run['method']:<9} K={run['k']} budget={run.get('budget_s', '-')}: "
            f"mean fg Dice {dice}  wall {run['wall_s']} s",
            flush=True,
        )


def _key(run: dict) -> tuple:
    return run["method"], run["k"], run.get("budget_s")


def score_mask(path: Path, dataset: data.Dataset, unpainted: np.ndarray) -> dict:
    """Read a written mask back and score it on the unpainted voxels."""
    pred = io.read_volume(path).data
    return protocol.score(pred, dataset.truth, unpainted, dataset.class_names)


def run_net(dataset, folder: Path, annotation_path: Path, unpainted, budget: float, args) -> dict:
    mask = folder / f"net_{annotation_path.name.split('.')[0]}_{budget:g}s.nii.gz"
    quiet = wait_quiet(max_wait=args.wait_quiet, verbose=False) if args.wait_quiet else {}
    found = quiet | commands.net(folder / "image.nii.gz", annotation_path, mask, budget, args.preset)
    return {"budget_s": budget, **found, **score_mask(mask, dataset, unpainted)}


def run_forest(dataset, folder: Path, annotation_path: Path, unpainted, args) -> dict:
    mask = folder / f"forest_{annotation_path.name.split('.')[0]}.nii.gz"
    quiet = wait_quiet(max_wait=args.wait_quiet, verbose=False) if args.wait_quiet else {}
    found = quiet | commands.forest(folder / "image.nii.gz", annotation_path, mask, args.trees, args.jobs)
    return {**found, **score_mask(mask, dataset, unpainted)}


def write_annotation(folder: Path, name: str, annotation: np.ndarray, spacing) -> Path:
    path = folder / f"{name}.nii.gz"
    io.write_volume(path, annotation, spacing=spacing)
    return path


def run_dataset(name: str, args: argparse.Namespace) -> None:
    dataset = data.load(name, args.quick)
    folder = data.CACHE / "work" / f"{name}{args.suffix}"
    folder.mkdir(parents=True, exist_ok=True)
    io.write_volume(folder / "image.nii.gz", dataset.image, spacing=dataset.spacing)
    recorder = Recorder(RESULTS / f"{name}{args.suffix}.json", dataset, args)
    print(f"{name}: {recorder.result['dataset']}", flush=True)
    curve_k = 3 if 3 in args.k else args.k[0]
    for k in args.k:
        annotation = protocol.paint(dataset.truth, k)
        unpainted = annotation == 0
        path = write_annotation(folder, f"annotation_k{k}", annotation, dataset.spacing)
        base = {"k": k, "painted_fraction": round(protocol.painted_fraction(annotation), 5)}
        if not args.extras_only:
            found = run_net(dataset, folder, path, unpainted, args.max_time, args)
            recorder.add({"method": "net", **base, **found})
        if not args.no_forest and not args.extras_only:
            recorder.add({"method": "forest", **base, **run_forest(dataset, folder, path, unpainted, args)})
        if k == curve_k:
            run_extras(dataset, folder, path, unpainted, base, recorder, args)


def run_extras(dataset, folder, path, unpainted, base, recorder, args) -> None:
    """Shorter budgets (Dice vs seconds) and the dense-truth upper bound, at one K."""
    for budget in sorted(set(args.curve) - {args.max_time}):
        recorder.add({"method": "net", **base, **run_net(dataset, folder, path, unpainted, budget, args)})
    if not args.no_dense:
        dense = write_annotation(folder, "annotation_dense", protocol.dense(dataset.truth), dataset.spacing)
        found = run_net(dataset, folder, dense, unpainted, args.max_time, args)
        recorder.add({"method": "net-dense", **base, **found})


def load_results(suffix: str) -> list[dict]:
    """Every dataset's JSON of this mode that exists, in dataset order."""
    paths = [RESULTS / f"{name}{suffix}.json" for name in data.NAMES]
    return [json.loads(p.read_text()) for p in paths if p.exists()]


def main(argv=None) -> int:
    args = parse_args(argv)
    for name in () if args.report_only else data.selected(args.dataset):
        run_dataset(name, args)
    results = load_results(args.suffix)
    images = RESULTS if args.quick else IMAGES
    summary = report.render(results, images, prefix="quick_" if args.quick else "")
    (RESULTS / f"summary{args.suffix}.md").write_text(summary)
    print(summary)
    if args.docs and results:
        core = RESULTS.parent / "bench_core.json"
        core = json.loads(core.read_text()) if core.is_file() else None
        replace_section(report.DOCS_HEADING, report.docs_section(results, core))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
