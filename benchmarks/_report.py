"""Render docs/benchmarks.md from the JSON results of bench_core.py and compare_presets.py.

Only the sections these scripts own are rewritten; the text between the ``decision`` markers
is written by a person after reading the numbers and kept across runs, and the sections of
other scripts are left alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from _docs import replace_section

START, END = "<!-- decision:start -->", "<!-- decision:end -->"
CORE_CMD = "PYTHONPATH=src .venv/bin/python benchmarks/bench_core.py"
PRESETS_CMD = "PYTHONPATH=src .venv/bin/python benchmarks/compare_presets.py"
CONTENTION_CMD = "PYTHONPATH=src .venv/bin/python benchmarks/bench_contention.py"
PLACEHOLDER = "_No decision recorded yet: read the table above and write it here._"


def kept_decision(path: Path) -> str:
    """The hand-written decision text of an existing file (or a placeholder)."""
    if path.is_file():
        found = re.search(re.escape(START) + r"\n(.*?)\n" + re.escape(END), path.read_text(), re.S)
        if found:
            return found.group(1)
    return PLACEHOLDER


def machine_lines(machine: dict) -> list[str]:
    return [
        f"- CPU: {machine['cpu']} ({machine['cores']} cores visible; ISA: {machine['isa']})",
        f"- torch {machine['torch']}, {machine['threads']} threads, Python {machine['python']}",
        f"- Date: {machine['date']}",
    ]


def core_section(results: dict, block: str) -> list[str]:
    return [
        "## Core speed",
        "",
        "Reproduce with:",
        "",
        "```bash",
        CORE_CMD,
        "```",
        "",
        *machine_lines(results["machine"]),
        "",
        block,
        "",
        "GFLOP/s of a training step = FLOPs of one forward + backward counted by",
        "`torch.utils.flop_counter.FlopCounterMode` (convolutions only; norms, activations, loss and",
        "the optimizer are not counted but their time is) ÷ median wall time of a full step",
        "(forward, `sparse_loss`, backward, AdamW). Timings wait until the CPUs are idle (see",
        "`benchmarks/_machine.py`) and the last line above says how much CPU other processes took",
        "anyway. On this 2-core machine a second busy torch job made our 2-thread training steps",
        "about 10× slower (3.0 s instead of 0.3 s per iteration in one observed case), not 2×: the",
        "OpenMP threads of each job wait for each other at every parallel region.",
    ]


def presets_section(path: Path) -> list[str]:
    if not path.is_file():
        return ["## Preset comparison", "", f"Not measured yet: run `{PRESETS_CMD}`."]
    data = json.loads(path.read_text())
    meta = data["meta"]
    return [
        "## Preset comparison (choosing the default CPU preset)",
        "",
        "Reproduce with:",
        "",
        "```bash",
        PRESETS_CMD,
        "```",
        "",
        *machine_lines(meta["machine"]),
        f"- Data: `make_sample(shape={tuple(meta['shape'])}, slices_per_axis=2, seed=s)`, spacing (2, 1, 1), "
        f"seeds {meta['seeds']}; Dice on unpainted voxels (annotation == 0), mean over the two "
        "foreground classes (lumen, wall), averaged over seeds.",
        f"- Budgets {meta['budgets']} s in mode `{meta['mode']}`: " + _mode_text(meta["mode"]),
        "- Every candidate is screened at the first budget and seed; the best few ('finalists') and the",
        "  first row (the `fast` preset of the code when this ran) are then run at every budget and seed.",
        "  `–` = not run.",
        f"- `s/iter` and `train kvox/s`: unloaded training speed with {meta['threads']} threads (minimum",
        "  of 3 short timed runs). The training runs themselves used "
        f"{meta.get('train_threads', meta['threads'])} thread(s): with a fixed",
        "  iteration count the result does not depend on speed, and one thread is far less hurt by other",
        "  processes on this shared machine than two spinning OpenMP threads. `predict s`: `predict` on the",
        "  48×128×128 sample with those threads on the loaded machine; indicative only (see below).",
        "",
        _table(data["rows"]),
        "",
        f"Best mean foreground Dice averaged over the budgets: `{_best(data['rows'])}`.",
    ]


def _mode_text(mode: str) -> str:
    if mode == "time":
        return "`TrainConfig(max_time=T, iterations=None)`."
    return (
        "each candidate's unloaded step time was measured first and it was trained for "
        "`iterations = (T - first-step overhead) / step time`, i.e. what `max_time=T` gives on an "
        "idle machine, without load spikes from other processes biasing one candidate."
    )


def _table(rows: list[dict]) -> str:
    from compare_presets import markdown_table, summarize

    return markdown_table(summarize(rows))


def _best(rows: list[dict]) -> str:
    from compare_presets import recommend, summarize

    return recommend(summarize(rows))


def contention_section(path: Path) -> list[str]:
    if not path.is_file():
        return []
    from bench_contention import markdown

    data = json.loads(path.read_text())
    return [
        "## Training next to another busy process",
        "",
        "Reproduce with:",
        "",
        "```bash",
        CONTENTION_CMD,
        "```",
        "",
        *machine_lines(data["machine"]),
        "",
        f"Default preset (`{data.get('model', 'not recorded')}`), trainer path, median of",
        f"{data['steps']} steps in a fresh process, while a",
        "second process keeps one core busy (100 %) or busy in 20 ms bursts (50 %): stand-ins for a",
        "busy napari GUI (or any other job) next to a training child process. Best of 3 fresh processes.",
        "",
        markdown(data["results"]),
    ]


def write_docs(path: Path, results: dict, block: str, presets_json: Path) -> None:
    """Rewrite this script's sections of the benchmarks page, keeping the others and the decision."""
    decision = kept_decision(path)
    presets = presets_section(presets_json) + ["", "### Chosen default", "", START, decision, END]
    replace_section(presets[0], "\n".join(presets), path)
    core = core_section(results, block)
    replace_section(core[0], "\n".join(core), path)
    contention = contention_section(presets_json.parent / "bench_contention.json")
    if contention:
        replace_section(contention[0], "\n".join(contention), path)
