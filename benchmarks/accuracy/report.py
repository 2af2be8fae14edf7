"""Markdown summary and plots of the accuracy benchmark, rendered from its JSON results.

Two figures: ``accuracy_dice_vs_k.png`` (Dice and wall time against painted slices per axis,
net and forest, dense-truth upper bound dashed) and ``accuracy_dice_vs_seconds.png`` (Dice
against the whole command's wall time for the net's training budgets, the forest as a point).
"""

from __future__ import annotations

from pathlib import Path

# The targets: mean foreground Dice at K = 3 with the default preset and --max-time 120.
TARGET_DICE = {"mni": 0.98, "nuclei": 0.985}
TARGET_WALL_S = 150.0
TARGET_FIRST_S = 60.0
TARGET_FIRST_GAP = 0.02


def _runs(result: dict, method: str, budget: float | None = None, k: int | None = None) -> list[dict]:
    chosen = [r for r in result["runs"] if r["method"] == method]
    if budget is not None:
        chosen = [r for r in chosen if r.get("budget_s") == budget]
    if k is not None:
        chosen = [r for r in chosen if r["k"] == k]
    return sorted(chosen, key=lambda r: (r["k"], r.get("budget_s", 0)))


def _curve_k(result: dict) -> int:
    ks = result["settings"]["k"]
    return 3 if 3 in ks else ks[0]


def dataset_table(results: list[dict]) -> list[str]:
    lines = ["| dataset | shape (z, y, x) | voxels | spacing | class fractions |", "|---|---|---|---|---|"]
    for res in results:
        d = res["dataset"]
        fractions = ", ".join(f"{k} {v:.3f}" for k, v in d["class_fractions"].items())
        lines.append(
            f"| {d['name']} | {tuple(d['shape'])} | {d['voxels']:,} | {tuple(d['spacing'])} | {fractions} |"
        )
    return lines


def runs_table(result: dict) -> list[str]:
    names = list(result["dataset"]["class_fractions"])[1:]
    head = [
        "method",
        "K",
        "budget s",
        *[f"Dice {n}" for n in names],
        "mean fg Dice",
        "wall s",
        "CPU s",
        "peak RAM MiB",
        "iterations",
        "infer Mvox/s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in result["runs"]:
        dice = [f"{run['dice'][n]:.4f}" for n in names]
        cells = [
            run["method"],
            run["k"],
            _fmt(run.get("budget_s")),
            *dice,
            f"{run['mean_fg_dice']:.4f}",
            f"{run['wall_s']:.1f}",
            _fmt(run.get("cpu_s")),
            f"{run['peak_rss_mib']:.0f}",
            _fmt(run.get("iterations")),
            _fmt(run.get("infer_vox_per_s"), 1e-6),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def _fmt(value, scale: float = 1.0) -> str:
    if value is None:
        return "–"
    value = value * scale
    return f"{value:g}" if scale == 1.0 else f"{value:.2f}"


def target_lines(result: dict) -> list[str]:
    """Pass/fail against the issue's targets, for the run at K = 3 and the longest budget."""
    name, k = result["dataset"]["name"], _curve_k(result)
    budget = result["settings"]["max_time"]
    main, forest = _runs(result, "net", budget, k), _runs(result, "forest", k=k)
    if not main:
        return [f"- {name}: no net run at K={k}, {budget:g} s."]
    main = main[0]
    lines = [f"- {name}, K={k}, --max-time {budget:g}: net mean fg Dice {main['mean_fg_dice']:.4f}"]
    if name in TARGET_DICE:
        lines.append(f"  (target ≥ {TARGET_DICE[name]}: {_ok(main['mean_fg_dice'] >= TARGET_DICE[name])})")
    if forest:
        gap = main["mean_fg_dice"] - forest[0]["mean_fg_dice"]
        lines.append(f"; forest {forest[0]['mean_fg_dice']:.4f} (net − forest {gap:+.4f}: {_ok(gap >= 0)})")
    lines.append(
        f"; whole command {main['wall_s']:.1f} s (target ≤ {TARGET_WALL_S:g}: "
        f"{_ok(main['wall_s'] <= TARGET_WALL_S)})"
    )
    lines.append(_first_prediction(result, k, main))
    return ["".join(lines)]


def _first_prediction(result: dict, k: int, main: dict) -> str:
    """The longest budget whose whole command stayed within the target (else the shortest)."""
    runs = _runs(result, "net", k=k)
    quick = [r for r in runs if r["wall_s"] <= TARGET_FIRST_S]
    shortest = quick[-1] if quick else runs[0]
    gap = main["mean_fg_dice"] - shortest["mean_fg_dice"]
    ok = shortest["wall_s"] <= TARGET_FIRST_S and gap <= TARGET_FIRST_GAP
    return (
        f"; first dense prediction (--max-time {shortest['budget_s']:g}) {shortest['wall_s']:.1f} s, "
        f"Dice {shortest['mean_fg_dice']:.4f} ({main['budget_s']:g} s result minus this: {gap:+.4f}; "
        f"target ≤ {TARGET_FIRST_S:g} s and ≤ {TARGET_FIRST_GAP}: {_ok(ok)})"
    )


def _ok(flag: bool) -> str:
    return "met" if flag else "**missed**"


def render(results: list[dict], images: Path, prefix: str = "") -> str:
    """Markdown summary of ``results``; writes the two figures into ``images``."""
    lines = ["# Accuracy benchmark: 3D U-Net vs random forest from the same painted slices", ""]
    if not results:
        return "\n".join(lines + ["No results yet."])
    m = results[0]["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines += [f"Machine: {m['cpu']}, {m['cores']} cores; {packages}; {m['date']}; nice {m['nice']}.", ""]
    lines += ["## Data", "", *dataset_table(results), "", "## Targets", ""]
    for res in results:
        lines += target_lines(res)
    for res in results:
        load = (res["load_average_start"][0], res.get("load_average_end", [float("nan")])[0])
        lines += [
            "",
            f"## {res['dataset']['name']}",
            "",
            f"Load average (1 min) at start / end: {load[0]:.2f} / {load[1]:.2f}.",
            "",
        ]
        lines += runs_table(res)
    paths = plot(results, images, prefix)
    repo = Path(__file__).resolve().parents[2]
    shown = [p.relative_to(repo) if p.is_relative_to(repo) else p for p in paths]
    lines += ["", "Figures: " + ", ".join(f"`{p}`" for p in shown), ""]
    return "\n".join(lines)


def plot(results: list[dict], images: Path, prefix: str = "") -> list[Path]:
    """Write the Dice-vs-K and Dice-vs-seconds figures; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    images.mkdir(parents=True, exist_ok=True)
    return [
        _plot_vs_k(results, images / f"{prefix}accuracy_dice_vs_k.png"),
        _plot_vs_seconds(results, images / f"{prefix}accuracy_dice_vs_seconds.png"),
    ]


def _upper_bound(ax, result: dict) -> None:
    dense = _runs(result, "net-dense")
    if dense:
        ax.axhline(dense[0]["mean_fg_dice"], color="grey", ls="--", lw=1, label="net, dense truth")
    target = TARGET_DICE.get(result["dataset"]["name"])
    if target:
        ax.axhline(target, color="red", ls=":", lw=1, label="target")


def _plot_vs_k(results: list[dict], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(4.2 * len(results), 6.5), squeeze=False)
    for col, res in enumerate(results):
        budget = res["settings"]["max_time"]
        series = {f"net ({budget:g} s)": _runs(res, "net", budget), "forest": _runs(res, "forest")}
        for label, runs in series.items():
            ks = [r["k"] for r in runs]
            axes[0, col].plot(ks, [r["mean_fg_dice"] for r in runs], "o-", label=label)
            axes[1, col].plot(ks, [r["wall_s"] for r in runs], "o-", label=label)
        _upper_bound(axes[0, col], res)
        axes[0, col].set(title=res["dataset"]["name"], ylabel="mean foreground Dice (unpainted)")
        axes[1, col].set(xlabel="painted slices per axis (K)", ylabel="whole command, s")
        axes[1, col].set_ylim(bottom=0)
        for ax in axes[:, col]:
            ax.set_xticks(res["settings"]["k"])
        axes[0, col].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_vs_seconds(results: list[dict], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, res in zip(axes[0], results):
        k = _curve_k(res)
        net = [r for r in _runs(res, "net", k=k)]
        ax.plot([r["wall_s"] for r in net], [r["mean_fg_dice"] for r in net], "o-", label=f"net, K={k}")
        for r in net:
            ax.annotate(f"{r['budget_s']:g} s", (r["wall_s"], r["mean_fg_dice"]), fontsize=7)
        for r in _runs(res, "forest", k=k):
            ax.plot(r["wall_s"], r["mean_fg_dice"], "s", color="C1", label=f"forest, K={k}")
        _upper_bound(ax, res)
        ax.set(
            title=res["dataset"]["name"],
            xlabel="whole command wall time, s",
            ylabel="mean foreground Dice (unpainted)",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


DOCS_HEADING = "## Accuracy against a random forest from the same strokes"
DOCS_COMMAND = (
    "PYTHONPATH=src .venv/bin/python benchmarks/bench_core.py --max-wait 120 && \\\n"
    ".venv/bin/python -m benchmarks.accuracy.run --dataset all --k 1 2 3 5 "
    "--max-time 120 --curve 30 60 --wait-quiet 300 --docs"
)


def docs_section(results: list[dict], core: dict | None) -> str:
    """The accuracy section of docs/benchmarks.md: the issue's figures in short tables."""
    m = results[0]["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        DOCS_HEADING,
        "",
        "Method, data and diagnostics: [accuracy.md](accuracy.md). Reproduce with:",
        "",
        "```bash",
        DOCS_COMMAND,
        "```",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores; {packages}; started {m['date']}.",
        "- Net = `sparseseg segment image annotations --output mask --max-time T` (default preset),",
        "  forest = ilastik-style random forest on 22 filter features from the same painted voxels;",
        "  both timed as whole commands (start-up, reading, training, prediction, writing).",
        "- Dice = mean foreground Dice on the voxels that were not painted. CPU s ÷ wall s near 2",
        "  means the command had both cores; well below 2, another process took some.",
        "",
        "### Dice against painted slices per axis (K)",
        "",
        *k_table(results),
        "",
        "### K = 3: budgets, upper bound, time, memory",
        "",
        *budget_table(results),
        "",
        "### Against the targets",
        "",
    ]
    for res in results:
        lines += target_lines(res)
    lines += ["", *core_lines(core), "", "![Dice and wall time against K](images/accuracy_dice_vs_k.png)",
              "![Dice against seconds](images/accuracy_dice_vs_seconds.png)"]
    return "\n".join(lines)


def k_table(results: list[dict]) -> list[str]:
    """Net and forest Dice (and wall s) per dataset and K."""
    lines = ["| dataset | K | painted | net Dice | forest Dice | net − forest | net wall s | forest wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for res in results:
        budget = res["settings"]["max_time"]
        for k in res["settings"]["k"]:
            net, forest = _runs(res, "net", budget, k), _runs(res, "forest", k=k)
            if not net or not forest:
                continue
            net, forest = net[0], forest[0]
            lines.append(
                f"| {res['dataset']['name']} | {k} | {100 * net['painted_fraction']:.1f} % "
                f"| {net['mean_fg_dice']:.4f} | {forest['mean_fg_dice']:.4f} "
                f"| {net['mean_fg_dice'] - forest['mean_fg_dice']:+.4f} | {net['wall_s']:.1f} "
                f"| {forest['wall_s']:.1f} |"
            )
    return lines


def budget_table(results: list[dict]) -> list[str]:
    """At the curve K: every net budget, the dense-truth bound and the forest, with resources."""
    lines = ["| dataset | run | Dice | wall s | CPU s | peak RAM MiB | iterations | predict Mvox/s |",
             "|---|---|---|---|---|---|---|---|"]
    for res in results:
        k = _curve_k(res)
        rows = [(f"net {r['budget_s']:g} s", r) for r in _runs(res, "net", k=k)]
        rows += [(f"net {r['budget_s']:g} s, dense truth", r) for r in _runs(res, "net-dense", k=k)]
        rows += [("forest", r) for r in _runs(res, "forest", k=k)]
        for label, r in rows:
            lines.append(
                f"| {res['dataset']['name']} | {label} | {r['mean_fg_dice']:.4f} | {r['wall_s']:.1f} "
                f"| {_fmt(r.get('cpu_s'))} | {r['peak_rss_mib']:.0f} | {_fmt(r.get('iterations'))} "
                f"| {_fmt(r.get('infer_vox_per_s'), 1e-6)} |"
            )
    return lines


def core_lines(core: dict | None) -> list[str]:
    """Train-step throughput against the bf16 matmul of the same bench_core run."""
    if not core:
        return ["Train-step throughput: not measured (run `benchmarks/bench_core.py` first)."]
    step, matmul = core["train"][0], core["matmul_bf16_gflops"]
    infer = core["infer"]
    return [
        f"Train step ({step['label']}, {_x(step['patch'])} × {step['batch']}): "
        f"**{step['gflops']:.0f} GFLOP/s = {100 * step['gflops'] / matmul:.0f} %** of the bf16 matmul "
        f"({matmul:.0f} GFLOP/s) measured in the same `bench_core.py` run ({core['machine']['date']}; "
        f"target ≥ 40 %: {_ok(step['gflops'] / matmul >= 0.4)}); prediction "
        f"{infer['mvox_per_s']:.2f} Mvox/s on {_x(infer['shape'])} (details: Core speed above).",
    ]


def _x(sizes) -> str:
    return "×".join(map(str, sizes))
