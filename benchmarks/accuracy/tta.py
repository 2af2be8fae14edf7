"""Mirror test-time augmentation: one 120 s training per volume (K = 3), predicted with and without ``--tta``.

    python -m benchmarks.accuracy.tta --dataset all

Each model is trained once by ``sparseseg segment --save-model``; ``sparseseg predict`` then applies it
twice, so the two rows differ only in the prediction. Results: ``results/accuracy/tta.json``.
"""

from __future__ import annotations

import argparse
import json

from .._machine import wait_quiet
from . import commands, data, protocol
from .run import RESULTS, score_mask, write_annotation


def predict(image, model, output, tta: bool) -> dict:
    command = [*commands.SPARSESEG, "predict", str(image), "--model", str(model), "--output", str(output)]
    command += ["--tta"] if tta else []
    run = commands.timed(command)
    if run["returncode"] != 0:
        raise RuntimeError(run["stderr"][-2000:])
    return {"wall_s": run["wall_s"], "cpu_s": run["cpu_s"]}


def run_dataset(name: str, args) -> list[dict]:
    dataset = data.load(name)
    folder = data.CACHE / "work" / f"v2_{name}"
    folder.mkdir(parents=True, exist_ok=True)
    image = write_annotation(folder, "image", dataset.image, dataset.spacing)
    annotation = protocol.paint(dataset.truth, args.k)
    path = write_annotation(folder, f"annotation_k{args.k}", annotation, dataset.spacing)
    model = folder / "tta_model.pt"
    wait_quiet(max_wait=args.wait_quiet, verbose=False)
    trained = folder / "tta_trained.nii.gz"
    commands.net(image, path, trained, args.budget, "fast", ("--save-model", str(model)))
    rows = []
    for tta in (False, True):
        mask = folder / f"tta_{tta}.nii.gz"
        found = predict(image, model, mask, tta) | score_mask(mask, dataset, annotation == 0)
        rows.append({"dataset": name, "tta": tta, "budget_s": args.budget, **found})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="all")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--wait-quiet", type=float, default=60.0)
    args = parser.parse_args(argv)
    rows = [row for name in data.selected(args.dataset) for row in run_dataset(name, args)]
    (RESULTS / "tta.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
