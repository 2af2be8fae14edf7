"""The first answer as napari and the command line give it (criterion 1 of issue 13), K = 3.

A training job with the early answer runs through the worker's own job code
(:func:`napari_sparseseg.core.jobs.run`, as napari's worker runs it, without the viewer): the
time from the start of the job to its first complete prediction (``PredictionReady``), and that
prediction's mean foreground Dice on the unpainted voxels. The job is stopped right after. The
same through napari's worker process, and as ``sparseseg segment --first-answer`` (until the file
is on disk). Each
run appends a JSON line to ``results/accuracy/first_answer.jsonl``; ``--docs`` writes the latest
row per dataset, with the forest's K = 3 row from the engine-v2 table, into docs/benchmarks.md
(no dataset named: only that).

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.first_answer all --docs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from napari_sparseseg.core import io, jobs
from napari_sparseseg.core.config import preset, replace
from napari_sparseseg.core.events import PredictionReady, TrainRequest

from .._docs import replace_section
from . import commands, data, protocol
from .run import RESULTS, engine, machine, write_annotation

LOG = RESULTS / "first_answer.jsonl"
DOCK_OPEN_S = 10.0  # napari's dock starts its worker this long before the first Train (the user paints)
HEADING = "## The first answer in napari and on the command line (K = 3, default preset)"
INTRO = ("Command: `python -m benchmarks.accuracy.first_answer all --docs`. Seconds from the "
         "start of a training job with the early answer (napari's Train) to its first complete "
         "prediction: *job* runs `core.jobs.run` in the benchmark's process, *new worker* submits the "
         "same request to napari's `Worker`, a new child process (spawned, importing torch) as when "
         "Train is pressed as the dock opens, *dock's worker* submits it to a `Worker` warmed 10 s "
         "before (the dock starts its child when it opens: napari's first Train), and *its 2nd job* "
         "submits it again to that process once the first job has ended (a later Train); *command* "
         "starts `sparseseg segment IMAGE ANNOTATIONS -o MASK "
         "--first-answer FIRST --max-time 120` (interpreter, imports and reading the files included) "
         "and stops when FIRST is on disk. The early answer's mean foreground Dice on the unpainted voxels "
         "(the command's file scores the same; a row where it differs says so), "
         "and the forest's from the engine-v2 table (K = 3). The criterion: within 20 s on a 160³ "
         "volume, Dice at least the forest's − 0.005.")


def run(name: str, gflops: float, k: int = 3, budget: float = 120.0) -> dict:
    """Train on ``name`` twice, stopping at the first complete prediction: in this process through
    the job code, then through napari's :class:`~napari_sparseseg._worker.Worker` (a new child
    process started with ``spawn``, as napari's first Train starts it)."""
    dataset = data.load(name)
    annotation = protocol.paint(dataset.truth, k)
    chosen = preset("fast")
    request = TrainRequest((dataset.image,), (annotation,), dataset.spacing, dataset.class_names,
                           chosen.model, replace(chosen.train, max_time=budget), chosen.infer,
                           early_answer=True)
    cpu, start = os.times(), time.perf_counter()
    answers = []
    jobs.run(request, lambda e: _first_answer(e, start, answers), should_stop=lambda: bool(answers))
    used = os.times()
    ratio = (used.user + used.system - cpu.user - cpu.system) / (time.perf_counter() - start)
    seconds, labels = answers[0]
    score = protocol.score(labels, dataset.truth, annotation == 0, dataset.class_names)
    cold, dock, again = _through_worker(request)
    command, on_disk = _command_line(name, dataset, annotation, budget)
    written = protocol.score(on_disk, dataset.truth, annotation == 0, dataset.class_names)["mean_fg_dice"]
    return {"dataset": name, "k": k, "voxels": int(dataset.image.size), "first_answer_s": round(seconds, 1),
            "worker_s": round(cold, 1), "dock_worker_s": round(dock, 1), "worker_again_s": round(again, 1),
            "command_s": round(command, 1),
            "command_dice": written, "mean_fg_dice": score["mean_fg_dice"], "cpu_per_wall": round(ratio, 2),
            "date": machine()["date"], "cpu": machine().get("cpu", ""),
            "bf16_matmul_gflops": round(gflops), "engine": engine()}


def _first_answer(event, start: float, answers: list) -> None:
    if isinstance(event, PredictionReady) and not answers:
        answers.append((time.perf_counter() - start, event.labels))


def _through_worker(request) -> tuple[float, float, float]:
    """Seconds from submitting ``request`` until its first prediction arrives: to a new Worker (a
    child spawned then, importing torch: Train pressed as the dock opens); to a Worker warmed
    :data:`DOCK_OPEN_S` s earlier (napari's first Train: the dock starts its child when it opens);
    and again to that worker once its job has ended (a later Train)."""
    cold = _worker_answers(request, None, 1)
    dock = _worker_answers(request, DOCK_OPEN_S, 2)
    return cold[0], dock[0], dock[1]


def _worker_answers(request, warmed: float | None, count: int) -> list[float]:
    """:func:`_through_worker`'s seconds for ``count`` submissions to one new Worker, started
    ``warmed`` s before the first (None: by the first)."""
    from napari_sparseseg._worker import Worker

    worker, seconds = Worker(), []
    try:
        if warmed is not None:
            worker.warm()
            time.sleep(warmed)
        for _ in range(count):
            answers, start = [], time.perf_counter()
            worker.submit(request)
            while worker.busy and not answers:
                for event in worker.poll():
                    _first_answer(event, start, answers)
                time.sleep(0.02)
            seconds.append(answers[0][0])
            worker.stop()
            while worker.busy:  # the stopped job still predicts with its model: wait for the end
                worker.poll()
                time.sleep(0.05)
    finally:
        worker.close()
    return seconds


def _command_line(name: str, dataset, annotation, budget: float) -> tuple[float, np.ndarray]:
    """Seconds from starting ``sparseseg segment IMAGE ANNOTATIONS -o MASK --first-answer FIRST``
    (interpreter, imports and reading the NIfTI files included) until FIRST is on disk (written
    atomically: it appears complete), and its labels; the command is killed then."""
    folder = data.CACHE / "work" / f"v2_{name}"
    folder.mkdir(parents=True, exist_ok=True)
    image = write_annotation(folder, "image", dataset.image, dataset.spacing)
    painted = write_annotation(folder, "annotation_k3", annotation, dataset.spacing)
    first = folder / "first_answer_k3.nii.gz"
    first.unlink(missing_ok=True)
    command = [*commands.SPARSESEG, "segment", str(image), str(painted), "-o",
               str(folder / "mask.nii.gz"), "--first-answer", str(first), "--max-time", f"{budget:g}"]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not first.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    proc.kill()
    proc.communicate()
    return seconds, io.read_volume(first).data


def forest(name: str, k: int = 3) -> float | None:
    """The forest's Dice at ``k`` in the engine-v2 table, if it ran."""
    path = RESULTS / f"v2_{name}.json"
    runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    found = [r["mean_fg_dice"] for r in runs if (r["method"], r["k"]) == ("forest", k)]
    return found[-1] if found else None


def table(rows: list[dict]) -> list[str]:
    latest = {r["dataset"]: r for r in rows}
    lines = ["| dataset | voxels (× 160³) | job (s) | new worker (s) | dock's worker (s) | its 2nd job (s) | "
             "command (s) | Dice | forest | − forest | engine, date |", "|" + "---|" * 11]
    for name in (n for n in data.NAMES if n in latest):
        r, wood = latest[name], forest(name, latest[name]["k"])
        gap = f"{r['mean_fg_dice'] - wood:+.4f}" if wood is not None else "–"
        lines.append(f"| {name} | {r['voxels'] / 160**3:.2f} | {r['first_answer_s']:.1f} | "
                     f"{r.get('worker_s', '–')} | {r.get('dock_worker_s', '–')} | "
                     f"{r.get('worker_again_s', '–')} | "
                     f"{r.get('command_s', '–')} | "
                     f"{r['mean_fg_dice']:.4f}{_differs(r)} | {'–' if wood is None else f'{wood:.4f}'} | "
                     f"{gap.replace('-', '−')} | `{r['engine']}`, {r['date']} |")
    return [*lines, "", *(f"Machine: {cpu}, 2 cores, CPU s ÷ wall s {min(ratios)}–{max(ratios)}, bf16 matmul "
                          f"{'/'.join(sorted(gflops))} GFLOP/s (`bench_core.matmul_gflops`, before the runs)."
                          for cpu, ratios, gflops in _machines(latest.values()))]


def _differs(row: dict) -> str:
    """The command's file's Dice where it is not the job's early answer's."""
    command = row.get("command_dice", row["mean_fg_dice"])
    return f" (command {command:.4f})" if abs(command - row["mean_fg_dice"]) > 5e-5 else ""


def _machines(rows) -> list[tuple[str, list[float], set[str]]]:
    """(CPU model, CPU s ÷ wall s of its rows, bf16 matmul GFLOP/s measured) per CPU model."""
    found = {}
    for r in rows:
        ratios, gflops = found.setdefault(r["cpu"], ([], set()))
        ratios.append(r["cpu_per_wall"])
        gflops.add(str(r.get("bf16_matmul_gflops", "not measured")))
    return [(cpu, ratios, gflops) for cpu, (ratios, gflops) in found.items()]


def _matmul_gflops() -> float:
    """bench_core's bf16 matmul GFLOP/s (bench_core runs as a script beside its helpers)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench_core import matmul_gflops

    return matmul_gflops()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=[], help="all, or some of: " + ", ".join(data.NAMES))
    parser.add_argument("--docs", action="store_true")
    args = parser.parse_args(argv)
    names = data.NAMES if "all" in args.datasets else args.datasets
    gflops = _matmul_gflops() if names else 0.0
    for name in names:
        row = run(name, gflops)
        print(row, flush=True)
        with LOG.open("a") as log:
            log.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in LOG.read_text().splitlines()] if LOG.is_file() else []
    if args.docs and rows:
        replace_section(HEADING, "\n".join([HEADING, "", INTRO, "", *table(rows)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
