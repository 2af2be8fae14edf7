"""Compare candidate CPU presets: Dice after a fixed training-time budget.

Each candidate (U-Net widths, normalisation, patch size; batch 2) is trained with
:func:`napari_sparseseg.core.trainer.fit` on the synthetic tubule sample
``make_sample(shape=(48, 128, 128), slices_per_axis=2, seed=s)`` (spacing 2, 1, 1),
then applied with :func:`napari_sparseseg.core.inference.predict`. The score is the
per-class Dice on the voxels nobody painted (annotation == 0).

Budgets
-------
``--budget-mode time`` (literal): ``TrainConfig(max_time=T, iterations=None)``. On a
shared machine another process can steal half of the cores during one candidate's run
and not during another's, which biases the comparison.
``--budget-mode calibrated`` (default): first time a few training steps of the
candidate (minimum over short repeats, i.e. the unloaded speed), then train for
``iterations = T / step_seconds`` with the same learning-rate schedule. This is the
quality that ``max_time=T`` gives on an idle machine, and it is robust to load spikes.
Both modes report the iterations done and the measured training throughput.

To keep the run near 25 minutes every candidate is first screened at the first budget
and seed; only the ``--finalists`` best, plus the first candidate (the current default,
as a baseline), are then run at every budget and seed. ``--resume`` keeps the rows of
an earlier run in ``--out`` and runs only what is missing.

Run::

    PYTHONPATH=src .venv/bin/python benchmarks/compare_presets.py            # ~25 min
    PYTHONPATH=src .venv/bin/python benchmarks/compare_presets.py --quick    # smoke run

Results are printed as a markdown table and written as JSON (``--out``), which
``benchmarks/bench_core.py`` renders into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import _machine
from _machine import describe, wait_quiet
from napari_sparseseg.core.config import InferConfig, ModelConfig, TrainConfig
from napari_sparseseg.core.inference import predict
from napari_sparseseg.core.metrics import evaluate
from napari_sparseseg.core.synthetic import make_sample
from napari_sparseseg.core.trainer import fit

HERE = Path(__file__).resolve().parent
SHAPE = (48, 128, 128)
N_CLASSES = 3


@dataclass(frozen=True)
class Candidate:
    """One preset candidate: network widths, norm, training patch (batch is fixed)."""

    features: tuple[int, ...]
    norm: str = "instance"
    patch: tuple[int, int, int] = (32, 64, 64)
    batch: int = 2

    @property
    def name(self) -> str:
        feats = "-".join(map(str, self.features))
        patch = "x".join(map(str, self.patch))
        return f"f{feats} {self.norm} p{patch} b{self.batch}"

    def model(self) -> ModelConfig:
        return ModelConfig(features=self.features, norm=self.norm)


# In priority order: the list is cut from the end with --max-candidates.
CANDIDATES = (
    Candidate((16, 32, 64)),
    Candidate((8, 16, 32)),
    Candidate((24, 48, 96)),
    Candidate((32, 64, 128)),
    Candidate((16, 32, 64, 128)),
    Candidate((16, 32, 64), patch=(24, 64, 64)),
    Candidate((16, 32, 64), patch=(32, 96, 96)),
    Candidate((16, 32, 64), norm="batch"),
    Candidate((16, 32, 64), norm="group"),
    Candidate((8, 16, 32), patch=(32, 96, 96)),
    Candidate((8, 16, 32), norm="batch"),
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 candidates, 1 seed, 8 s")
    parser.add_argument("--budgets", type=float, nargs="+", default=[45.0, 90.0], help="seconds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-candidates", type=int, default=len(CANDIDATES))
    parser.add_argument(
        "--finalists",
        type=int,
        default=4,
        help="candidates run at every budget and seed after the screening run",
    )
    parser.add_argument("--budget-mode", choices=("calibrated", "time"), default="calibrated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--train-threads",
        type=int,
        default=None,
        help="threads for the training runs in calibrated mode (quality does not depend on speed there; "
        "1 thread suffers far less when other processes share the CPU); default --threads",
    )
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --out, run the rest")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default results/…json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.budgets, args.seeds, args.max_candidates, args.finalists = [8.0, 12.0], [0], 2, 1
    args.train_threads = args.train_threads or args.threads
    if args.budget_mode == "time" and args.train_threads != args.threads:
        parser.error("--train-threads only applies to --budget-mode calibrated.")
    name = "compare_presets_quick.json" if args.quick else "compare_presets.json"
    args.out = args.out or HERE / "results" / name
    return args


def calibrate(candidate: Candidate, sample, repeats: int = 3, steps: int = 4) -> tuple[float, float]:
    """Unloaded (seconds per iteration, first-iteration overhead): minima over short runs."""
    medians, firsts = [], []
    for _ in range(repeats):
        wait_quiet()
        times = _event_times(candidate, sample, TrainConfig(**_train_kwargs(candidate), iterations=steps + 1))
        medians.append(statistics.median(times[1:-1]))  # drop the warm-up step and the final event
        firsts.append(times[0])
    step = min(medians)
    return step, max(0.0, min(firsts) - step)


def _event_times(candidate, sample, train_config) -> list[float]:
    stamps = [time.perf_counter()]
    fit(
        [sample.image],
        [sample.annotation],
        candidate.model(),
        train_config,
        spacing=sample.spacing,
        on_progress=lambda _: stamps.append(time.perf_counter()),
    )
    return list(np.diff(stamps))


def _train_kwargs(candidate: Candidate) -> dict:
    return {"patch_size": candidate.patch, "batch_size": candidate.batch}


def budget_config(candidate: Candidate, budget: float, mode: str, speed, seed: int) -> TrainConfig:
    """TrainConfig for one run: literal time budget, or the calibrated iteration count."""
    if mode == "time":
        return TrainConfig(**_train_kwargs(candidate), max_time=budget, iterations=None, seed=seed)
    step_s, overhead_s = speed
    iterations = max(1, round((budget - overhead_s) / step_s))
    return TrainConfig(**_train_kwargs(candidate), iterations=iterations, max_time=None, seed=seed)


def run_one(candidate: Candidate, sample, train_config: TrainConfig) -> dict:
    """Train, predict, score on unpainted voxels; return one result row."""
    events = []
    start = time.perf_counter()
    segmenter = fit(
        [sample.image],
        [sample.annotation],
        candidate.model(),
        train_config,
        spacing=sample.spacing,
        on_progress=events.append,
    )
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = predict(segmenter, sample.image, InferConfig(window=candidate.patch, batch_size=candidate.batch))
    predict_s = time.perf_counter() - start
    scores = evaluate(pred.labels, sample.truth, n_classes=N_CLASSES, mask=sample.annotation == 0)
    last = events[-1]
    return {
        "iterations": last.iteration,
        "train_s": train_s,
        "train_voxels_per_s": last.voxels_per_s,
        "final_loss": last.loss,
        "predict_s": predict_s,
        "dice": {k: v["dice"] for k, v in scores["classes"].items()},
        "mean_fg_dice": scores["mean_foreground"]["dice"],
        "load_avg": os.getloadavg()[0],
    }


def run_all(args, state: dict) -> list[dict]:
    """Screen every candidate at the first budget and seed, then run the finalists fully.

    ``state`` holds ``rows`` and calibrated ``speeds``; it is saved after every run, and
    what it already holds (``--resume``) is not measured again.
    """
    samples = {s: make_sample(shape=SHAPE, slices_per_axis=2, seed=s) for s in args.seeds}
    first = (args.budgets[0], args.seeds[0])
    candidates = CANDIDATES[: args.max_candidates]
    for candidate in candidates:
        _ensure(candidate, *first, samples, state, args)
    screened = [r for r in state["rows"] if (r["budget"], r["seed"]) == first and _spec(r) in candidates]
    for candidate in finalists(screened, args.finalists):
        for budget in args.budgets:
            for seed in args.seeds:
                _ensure(candidate, budget, seed, samples, state, args)
    return state["rows"]


def _ensure(candidate, budget, seed, samples, state, args) -> None:
    """Run (candidate, budget, seed) unless a row for it exists; calibrate on first use."""
    rows, speeds = state["rows"], state["speeds"]
    if any(r["candidate"] == candidate.name and (r["budget"], r["seed"]) == (budget, seed) for r in rows):
        return
    if candidate.name not in speeds:
        speeds[candidate.name] = speed = calibrate(candidate, samples[args.seeds[0]])
        print(f"# {candidate.name}: {speed[0]:.3f} s/iteration, first iteration +{speed[1]:.2f} s (unloaded)",
              flush=True)  # fmt: skip
    rows.append(_run(candidate, samples, speeds[candidate.name], budget, seed, args))
    save(args, state)


def _spec(row: dict) -> Candidate:
    return Candidate(**{k: tuple(v) if isinstance(v, list) else v for k, v in row["spec"].items()})


def finalists(screened: list[dict], count: int) -> list[Candidate]:
    """The first candidate (the current default, as baseline) plus the ``count`` best screened."""
    ranked = [_spec(r) for r in sorted(screened, key=lambda r: -r["mean_fg_dice"])]
    return list(dict.fromkeys([CANDIDATES[0], *ranked[:count]]))


def _run(candidate, samples, speed, budget, seed, args) -> dict:
    config = budget_config(candidate, budget, args.budget_mode, speed, seed)
    if args.budget_mode == "time":
        wait_quiet()
    torch.set_num_threads(args.train_threads)
    try:
        row = run_one(candidate, samples[seed], config)
    finally:
        torch.set_num_threads(args.threads)
    row.update(candidate=candidate.name, spec=asdict(candidate), budget=budget, seed=seed,
               mode=args.budget_mode, step_s=speed[0], first_step_extra_s=speed[1],
               train_threads=args.train_threads)  # fmt: skip
    print(json.dumps(_short(row)), flush=True)
    return row


def _short(row: dict) -> dict:
    keys = ("candidate", "budget", "seed", "iterations", "mean_fg_dice", "train_s", "load_avg")
    return {k: round(row[k], 3) if isinstance(row[k], float) else row[k] for k in keys}


def summarize(rows: list[dict]) -> list[dict]:
    """Mean over seeds per (candidate, budget)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["candidate"], row["budget"]), []).append(row)
    out = []
    for (name, budget), group in groups.items():
        dice = [r["mean_fg_dice"] for r in group]
        out.append(
            {
                "candidate": name,
                "budget": budget,
                "seeds": len(group),
                "mean_fg_dice": float(np.mean(dice)),
                "min_fg_dice": float(np.min(dice)),
                "max_fg_dice": float(np.max(dice)),
                "lumen_dice": float(np.mean([r["dice"]["1"] for r in group])),
                "wall_dice": float(np.mean([r["dice"]["2"] for r in group])),
                "iterations": float(np.mean([r["iterations"] for r in group])),
                "step_s": group[0]["step_s"],
                "kvox_per_s": _voxels(group[0]["spec"]) / group[0]["step_s"] / 1e3,
                "predict_s": float(np.median([r["predict_s"] for r in group])),
            }
        )
    return out


def _voxels(spec: dict) -> int:
    return spec["batch"] * int(np.prod(spec["patch"]))


def markdown_table(summary: list[dict]) -> str:
    """Markdown table, one row per candidate, one Dice column group per budget."""
    budgets = sorted({s["budget"] for s in summary})
    head = ["candidate", "s/iter (unloaded)", "train kvox/s", "predict s"]
    for b in budgets:
        head += [f"iters @{b:g}s", f"fg Dice @{b:g}s (seed range)", f"lumen / wall @{b:g}s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in dict.fromkeys(s["candidate"] for s in summary):
        lines.append("| " + " | ".join(_table_row(name, summary, budgets)) + " |")
    return "\n".join(lines)


def _table_row(name: str, summary: list[dict], budgets) -> list[str]:
    mine = {s["budget"]: s for s in summary if s["candidate"] == name}
    first = next(iter(mine.values()))
    cells = [f"`{name}`", f"{first['step_s']:.2f}", f"{first['kvox_per_s']:.0f}", f"{first['predict_s']:.1f}"]
    for b in budgets:
        s = mine.get(b)
        if s is None:
            cells += ["–", "–", "–"]
            continue
        spread = f"{s['min_fg_dice']:.3f}–{s['max_fg_dice']:.3f}" if s["seeds"] > 1 else "1 seed"
        cells += [
            f"{s['iterations']:.0f}",
            f"**{s['mean_fg_dice']:.3f}** ({spread})",
            f"{s['lumen_dice']:.3f} / {s['wall_dice']:.3f}",
        ]
    return cells


def recommend(summary: list[dict]) -> str:
    """Name of the candidate with the best mean foreground Dice averaged over the budgets."""
    scores: dict[str, list[float]] = {}
    for s in summary:
        scores.setdefault(s["candidate"], []).append(s["mean_fg_dice"])
    return max(scores, key=lambda name: np.mean(scores[name]))


def load_state(args) -> dict:
    """Rows and speeds of an earlier run in the same budget mode (``--resume``), else empty."""
    if not (args.resume and args.out.is_file()):
        return {"rows": [], "speeds": {}}
    data = json.loads(args.out.read_text())
    if data["meta"]["mode"] != args.budget_mode:
        return {"rows": [], "speeds": data.get("speeds", {})}
    return {"rows": data["rows"], "speeds": data.get("speeds", {})}


def save(args, state: dict) -> None:
    """Write rows, speeds, the per-candidate summary and the best candidate to ``args.out``."""
    summary = summarize(state["rows"])
    meta = {"machine": describe(), "budgets": args.budgets, "seeds": args.seeds, "mode": args.budget_mode,
            "shape": SHAPE, "threads": args.threads, "train_threads": args.train_threads,
            "quick": args.quick}  # fmt: skip
    data = {"meta": meta, "speeds": state["speeds"], "rows": state["rows"], "summary": summary,
            "best": recommend(summary) if summary else None}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1))


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        _machine.MAX_WAIT_S = 0.0
    start = time.perf_counter()
    state = load_state(args)
    rows = run_all(args, state)
    save(args, state)
    summary = summarize(rows)
    print("\n" + markdown_table(summary))
    print(f"\nBest mean foreground Dice over budgets {args.budgets}: {recommend(summary)}")
    print(f"Total {time.perf_counter() - start:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
