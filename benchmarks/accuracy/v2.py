"""Engine v2 at K = 3: the default preset at short and long budgets, the plain U-Net and the forest.

For every dataset: paint K slices per axis, run ``sparseseg segment`` with the default preset at
each ``--budgets`` value, with ``--preset plain`` at the longest, and the ilastik-style forest;
score all on the unpainted voxels (the same protocol, commands and scoring as :mod:`.run`). One
JSON per dataset (``results/accuracy/v2_<name>.json``) is rewritten after every run; ``--docs``
replaces the engine-v2 section of docs/benchmarks.md.

    .venv/bin/python -m benchmarks.accuracy.v2 --dataset all --budgets 12 20 120 --wait-quiet 60 --docs
"""

from __future__ import annotations

import argparse
import json

from .._docs import replace_section
from . import data, protocol
from .run import RESULTS, Recorder, run_forest, run_net, write_annotation

HEADING = "## Engine v2: Dice at K = 3 against the plain U-Net and the forest"
COMMAND = ".venv/bin/python -m benchmarks.accuracy.v2 --budgets 12 20 120 --wait-quiet 60 --docs"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=[*data.NAMES, "all"], default="all")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--budgets", type=float, nargs="+", default=[12.0, 20.0, 120.0])
    parser.add_argument("--plain", action=argparse.BooleanOptionalAction, default=True,
                        help="also run --preset plain at the longest budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S")
    parser.add_argument("--docs", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.merge, args.max_time, args.curve, args.preset = True, max(args.budgets), [], "fast"
    return args


def run_dataset(name: str, args) -> None:
    dataset = data.load(name)
    folder = data.CACHE / "work" / f"v2_{name}"
    folder.mkdir(parents=True, exist_ok=True)
    write_annotation(folder, "image", dataset.image, dataset.spacing)
    recorder = Recorder(RESULTS / f"v2_{name}.json", dataset, args)
    annotation = protocol.paint(dataset.truth, args.k)
    unpainted = annotation == 0
    path = write_annotation(folder, f"annotation_k{args.k}", annotation, dataset.spacing)
    base = {"k": args.k, "painted_fraction": round(protocol.painted_fraction(annotation), 5)}
    print(f"{name}: {recorder.result['dataset']}", flush=True)
    for budget in sorted(args.budgets):
        recorder.add({"method": "net", **base, **run_net(dataset, folder, path, unpainted, budget, args)})
    if args.plain:
        args.preset = "plain"
        found = run_net(dataset, folder, path, unpainted, max(args.budgets), args)
        recorder.add({"method": "net-plain", **base, **found})
        args.preset = "fast"
    recorder.add({"method": "forest", **base, **run_forest(dataset, folder, path, unpainted, args)})


def table(results: list[dict]) -> list[str]:
    """One row per dataset: forest, plain U-Net and every default-preset budget."""
    budgets = sorted({r["budget_s"] for res in results for r in res["runs"] if r["method"] == "net"})
    head = ["dataset", "forest (wall s)", "plain U-Net 120 s", *[f"v2 {b:g} s (wall s)" for b in budgets],
            "v2 − forest at the longest"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in results:
        runs = {(r["method"], r.get("budget_s")): r for r in res["runs"]}
        forest = next((r for (m, _), r in runs.items() if m == "forest"), None)
        plain = next((r for (m, _), r in runs.items() if m == "net-plain"), None)
        cells = [res["dataset"]["name"], _cell(forest), _cell(plain)]
        cells += [_cell(runs.get(("net", b))) for b in budgets]
        last = runs.get(("net", budgets[-1])) if budgets else None
        gap = last["mean_fg_dice"] - forest["mean_fg_dice"] if last and forest else None
        cells.append("–" if gap is None else f"{gap:+.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cell(run: dict | None) -> str:
    return "–" if run is None else f"{run['mean_fg_dice']:.4f} ({run['wall_s']:.0f})"


def per_class(results: list[dict]) -> list[str]:
    lines = ["| dataset | run | " + "Dice per class | CPU s ÷ wall s |", "|---|---|---|---|"]
    for res in results:
        for r in res["runs"]:
            label = r["method"] + (f" {r['budget_s']:g} s" if r.get("budget_s") else "")
            dice = ", ".join(f"{k} {v:.3f}" for k, v in r["dice"].items())
            ratio = r["cpu_s"] / r["wall_s"] if r.get("cpu_s") else float("nan")
            lines.append(f"| {res['dataset']['name']} | {label} | {dice} | {ratio:.2f} |")
    return lines


def docs_section(results: list[dict]) -> str:
    m = results[0]["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    return "\n".join([
        HEADING, "", "Reproduce with:", "", "```bash", COMMAND, "```", "",
        f"- Machine: {m['cpu']}, {m['cores']} cores; {packages}; started {m['date']}.",
        "- K = 3 painted slices per axis, simulated as in the accuracy section below; mean foreground",
        "  Dice on the unpainted voxels; (wall s) = the whole `sparseseg segment` command (start-up,",
        "  reading, training for the budget, prediction, writing) or the whole forest command.",
        "- v2 = the default preset (filter-bank stem, pointwise first stage, U-Net correction);",
        "  plain = `--preset plain`, the 3D U-Net on the intensity alone (the default before v2).",
        "- `abdomen` was added after the method was fixed and was never tuned on.", "",
        *table(results), "", *per_class(results),
    ])


def main(argv=None) -> int:
    args = parse_args(argv)
    names = data.NAMES if args.dataset == "all" else (args.dataset,)
    if not args.report_only:
        for name in names:
            run_dataset(name, args)
    paths = [RESULTS / f"v2_{name}.json" for name in data.NAMES]
    results = [json.loads(p.read_text()) for p in paths if p.exists()]
    print("\n".join(table(results)))
    if args.docs and results:
        replace_section(HEADING, docs_section(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
