"""Is the dock's "Next slice to annotate" worth painting? A simulated user adds one plane per round.

    python -m benchmarks.accuracy.next_slice --dataset abdomen [--first 40] [--round 20] [--rounds 3]

The user starts from one evenly spaced plane per axis (K = 1) and trains ``--first`` seconds. Then,
each round, they paint one more whole plane with the truth and train ``--round`` seconds more:

- ``suggested``: the plane Next slice proposes (``core.uncertainty.rank_slices`` on the last
  prediction's uncertainty), then Continue training (the model goes on from where it was);
- ``even``: the middle of the widest unpainted gap, axes in turn (z, y, x), then Continue training;
- ``suggested, from scratch``: the same planes as ``suggested``, but each round trains a new model
  for the same ``--round`` seconds (the refine round trip against starting over);
- ``suggested, classifier kept``: the same planes, Continue training with the per-voxel classifier
  (measured with the perceptron first stage; boosted trees are refitted every round regardless)
  left as the first round made it (one step at a negligible rate), so only the U-Net learns the
  new planes (a diagnostic of why continuing can lose to starting over).

``--strategies`` picks some of them (``suggested`` always runs: the others take its planes).

Every round runs the product's own job (``core.jobs.run``, the dock's and the command's pipeline)
and is scored on the voxels that no strategy painted by the last round, so all rows are scored
on the same voxels. Results: ``results/accuracy/next_slice_<dataset>.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

from napari_sparseseg.core import jobs
from napari_sparseseg.core.config import resolve
from napari_sparseseg.core.events import ModelReady, PredictionReady, TrainRequest
from napari_sparseseg.core.uncertainty import painted_planes, rank_slices

from .._machine import wait_quiet
from . import data, protocol
from .run import RESULTS

STRATEGIES = ("suggested", "even", "suggested, from scratch", "suggested, classifier kept")


def train(dataset, annotation, seconds: float, init: bytes | None, **overrides) -> dict:
    """One Train / Continue training click: model bytes, labels, uncertainty and iterations."""
    chosen = resolve("fast", max_time=seconds, **overrides)
    request = TrainRequest((dataset.image,), (annotation,), dataset.spacing, None, chosen.model,
                           chosen.train, chosen.infer, init=init, uncertainty=True)
    events, start = [], time.perf_counter()
    jobs.run(request, events.append)
    model = next(e for e in reversed(events) if isinstance(e, ModelReady))
    prediction = next(e for e in reversed(events) if isinstance(e, PredictionReady))
    return {"model": model.model, "iterations": model.iterations, "labels": prediction.labels,
            "uncertainty": prediction.uncertainty, "wall_s": round(time.perf_counter() - start, 1)}


def widest_gap(annotation: np.ndarray, axis: int) -> int:
    """The middle of the widest run of unpainted planes along ``axis``."""
    edges = [-1, *sorted(painted_planes(annotation)[axis]), annotation.shape[axis]]
    start, stop = max(itertools.pairwise(edges), key=lambda pair: pair[1] - pair[0])
    return (start + stop) // 2


def add_plane(annotation: np.ndarray, truth: np.ndarray, axis: int, index: int) -> np.ndarray:
    painted = annotation.copy()
    plane = (slice(None),) * axis + (index,)
    painted[plane] = truth[plane] + 1
    return painted


def run_dataset(name: str, args) -> dict:
    dataset = data.load(name)
    start = protocol.paint(dataset.truth, 1)
    wait_quiet(max_wait=args.wait_quiet, verbose=False)
    first = train(dataset, start, args.first, None)
    runs = {strategy: {"annotation": start, "last": first, "rounds": [first]}
            for strategy in STRATEGIES if strategy == "suggested" or strategy in args.strategies}
    for round_ in range(args.rounds):
        for strategy, run in runs.items():
            if strategy == "even":
                axis = round_ % 3
                index = widest_gap(run["annotation"], axis)
            elif strategy == "suggested":
                axis, index, _ = rank_slices(run["last"]["uncertainty"], run["annotation"], top=1)[0]
            else:
                axis, index = runs["suggested"]["planes"][round_]
            run.setdefault("planes", []).append((int(axis), int(index)))
            run["annotation"] = add_plane(run["annotation"], dataset.truth, axis, index)
            init = None if "scratch" in strategy else run["last"]["model"]
            variant = {"pointwise_steps": 1, "pointwise_learning_rate": 1e-12} if "kept" in strategy else {}
            run["last"] = train(dataset, run["annotation"], args.round, init, **variant)
            run["rounds"].append(run["last"])
            print(f"{name} round {round_ + 1} {strategy}: plane {'zyx'[axis]} = {index}, "
                  f"{run['last']['iterations']} iterations", flush=True)
    return _scored(dataset, runs, args)


def _scored(dataset, runs: dict, args) -> dict:
    unpainted = np.logical_and.reduce([run["annotation"] == 0 for run in runs.values()])
    result = {"dataset": dataset.name, "first_s": args.first, "round_s": args.round,
              "scored_voxels": int(unpainted.sum()), "strategies": {}}
    for strategy, run in runs.items():
        scores = [protocol.score(r["labels"], dataset.truth, unpainted, dataset.class_names)["mean_fg_dice"]
                  for r in run["rounds"]]
        result["strategies"][strategy] = {"planes": run["planes"], "mean_fg_dice": scores,
                                          "iterations": [r["iterations"] for r in run["rounds"]]}
    return result


def table(results: list[dict]) -> list[str]:
    lines = ["| volume | strategy | planes added (axis = index) | K = 1 | +1 | +2 | +3 |",
             "|---|---|---|---|---|---|---|"]
    for result in results:
        for strategy, found in result["strategies"].items():
            planes = ", ".join(f"{'zyx'[a]} = {i}" for a, i in found["planes"])
            dice = " | ".join(f"{d:.4f}" for d in found["mean_fg_dice"])
            lines.append(f"| {result['dataset']} | {strategy} | {planes} | {dice} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="abdomen")
    parser.add_argument("--first", type=float, default=40.0)
    parser.add_argument("--round", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wait-quiet", type=float, default=60.0)
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES[:3]))
    args = parser.parse_args(argv)
    results = []
    for name in data.selected(args.dataset):
        results.append(run_dataset(name, args))
        suffix = "" if args.strategies == list(STRATEGIES[:3]) else "_" + "_".join(
            s.split(", ")[-1].replace(" ", "-") for s in args.strategies)
        (RESULTS / f"next_slice_{name}{suffix}.json").write_text(json.dumps(results[-1], indent=1) + "\n")
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
