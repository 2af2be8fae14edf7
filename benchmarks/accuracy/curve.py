"""Dice against training iterations for engine variants, through the Python API.

One training run per variant; between iterations the generator from
``napari_sparseseg.core.trainer.train`` is paused, the current segmenter predicts the whole
volume and is scored on the unpainted voxels, then training goes on (prediction time is not
counted as training time). The learning rate decays over the whole iteration budget, so the
Dice at iteration 100 of a 400-iteration run is a lower bound of what a 100-iteration run
reaches. Iteration counts, unlike seconds, do not depend on what else loads the machine.

    nice -n 10 .venv/bin/python -m benchmarks.accuracy.curve --dataset synthetic --k 3 \\
        --eval-at 25 50 100 200 --label fast
    ... --norm batch --class-balance --recompute-bn --label batch-norm
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from dataclasses import replace

import numpy as np
import torch

from napari_sparseseg.core import checkpoint
from napari_sparseseg.core import device as dev
from napari_sparseseg.core.config import InferConfig, preset
from napari_sparseseg.core.inference import predict
from napari_sparseseg.core.sampling import PatchSampler, annotation_to_target
from napari_sparseseg.core.trainer import prepare, train

from . import data, protocol
from .run import RESULTS


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=data.NAMES, default="synthetic")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--eval-at", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--label", default="fast", help="name of this variant in the results")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--norm", choices=["none", "batch", "instance", "group"])
    parser.add_argument("--features", type=int, nargs="+", help="encoder widths, e.g. 8 16 32")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--dice-weight", type=float)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--patch", type=int, nargs=3)
    parser.add_argument("--class-balance", action="store_true", help="inverse-frequency CE weights")
    parser.add_argument("--no-augment", action="store_true", help="no flips or turns")
    parser.add_argument("--intensity", type=float, default=0.0, help="intensity augmentation range")
    parser.add_argument("--recompute-bn", action="store_true",
                        help="also score with batch-norm statistics recomputed over 30 batches")
    parser.add_argument("--tta", action="store_true", help="mirror test-time augmentation at each point")
    parser.add_argument("--quick", action="store_true", help="small centre crop")
    parser.add_argument("--save", help="write the final model here (for windows.py)")
    return parser.parse_args(argv)


def configs(args: argparse.Namespace):
    """Model and training configs of the preset with the command-line overrides."""
    chosen = preset(args.preset)
    model = replace(
        chosen.model,
        norm=args.norm or chosen.model.norm,
        features=tuple(args.features or chosen.model.features),
    )
    changes = {
        "iterations": max(args.eval_at),
        "max_time": None,
        "class_balance": args.class_balance,
        "augment": not args.no_augment,
        "intensity_augment": args.intensity,
    }
    for key, value in (
        ("learning_rate", args.lr),
        ("dice_weight", args.dice_weight),
        ("batch_size", args.batch),
        ("patch_size", tuple(args.patch or ()) or None),
    ):
        if value is not None:
            changes[key] = value
    return model, replace(chosen.train, **changes), replace(chosen.infer, flip_tta=args.tta)


def points(dataset: data.Dataset, k: int, model, train_config, infer: InferConfig, eval_at,
           recompute_bn: bool = False):
    """Dice on the unpainted voxels after each iteration count in ``eval_at``; also the segmenter."""
    annotation = protocol.paint(dataset.truth, k)
    unpainted = annotation == 0
    segmenter, images, annotations = prepare(
        [dataset.image], [annotation], model, train_config, dataset.spacing
    )
    found, paused = [], 0.0
    for event in train(segmenter, images, annotations, train_config):
        if event.done or event.iteration not in eval_at:
            continue
        start = time.perf_counter()
        labels = predict(segmenter, dataset.image, infer).labels
        infer_s = time.perf_counter() - start
        score = protocol.score(labels, dataset.truth, unpainted, dataset.class_names)
        if recompute_bn:
            score["recomputed_bn_dice"] = recomputed_bn_score(segmenter, dataset, annotation, infer)
        segmenter.net.train()
        found.append(
            {
                "iteration": event.iteration,
                "train_s": round(event.elapsed - paused, 1),
                "infer_s": round(infer_s, 1),
                "loss": round(event.loss, 4),
                **score,
            }
        )
        paused += time.perf_counter() - start
        print(
            f"  it {event.iteration:4d}  train {found[-1]['train_s']:6.1f} s  "
            f"mean fg Dice {score['mean_fg_dice']:.4f}  {score['dice']}"
            + (f"  recomputed BN {score['recomputed_bn_dice']:.4f}" if recompute_bn else ""),
            flush=True,
        )
    return found, segmenter


def recomputed_bn_score(segmenter, dataset: data.Dataset, annotation, infer, batches: int = 30) -> float:
    """Mean fg Dice after re-estimating batch-norm statistics over ``batches`` unaugmented training
    batches (a cumulative average instead of the running one); the weights are restored after."""
    net = segmenter.net
    saved = copy.deepcopy(net.state_dict())
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    sampler = PatchSampler([segmenter.normalization.apply(dataset.image)], [annotation_to_target(annotation)],
                           (32, 64, 64), dataset.spacing, np.random.default_rng(5), augment=False,
                           n_classes=segmenter.n_classes)
    net.train()
    with torch.no_grad(), dev.autocast(torch.device("cpu")):
        for _ in range(batches):
            x = torch.from_numpy(sampler.sample(2)[0]).contiguous(memory_format=torch.channels_last_3d)
            net(x)
    labels = predict(segmenter, dataset.image, infer).labels
    net.load_state_dict(saved)
    for m in norms:
        m.momentum = 0.1
    score = protocol.score(labels, dataset.truth, annotation == 0, dataset.class_names)
    return score["mean_fg_dice"]


def main(argv=None) -> int:
    args = parse_args(argv)
    dataset = data.load(args.dataset, args.quick)
    model, train_config, infer = configs(args)
    print(f"{args.dataset} K={args.k} {args.label}: {model} {train_config}", flush=True)
    load_start = os.getloadavg()
    found, segmenter = points(dataset, args.k, model, train_config, infer, set(args.eval_at),
                              args.recompute_bn)
    if args.save:
        checkpoint.save(segmenter, args.save)
    run = {
        "label": args.label,
        "k": args.k,
        "model": repr(model),
        "train": repr(train_config),
        "tta": args.tta,
        "load_average": [load_start, os.getloadavg()],
        "points": found,
    }
    save(RESULTS / f"curve_{args.dataset}{'_quick' if args.quick else ''}.json", dataset, run)
    return 0


def save(path, dataset: data.Dataset, run: dict) -> None:
    """Add ``run`` to the curve file, replacing an earlier run of the same label and K."""
    results = {"dataset": data.describe(dataset), "runs": []}
    if path.exists():
        results = json.loads(path.read_text())
    results["runs"] = [r for r in results["runs"] if (r["label"], r["k"]) != (run["label"], run["k"])]
    results["runs"].append(run)
    path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
