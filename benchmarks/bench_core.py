"""Core speed figures from one run: matmul peak, train-step GFLOP/s, inference voxels/s.

1. bf16 matmul GFLOP/s (2048 x 2048, median of repeats): the practical peak.
2. Train-step GFLOP/s of the default preset: FLOPs of one forward + backward counted with
   ``torch.utils.flop_counter.FlopCounterMode``, divided by the median time of real
   training steps done the way ``core.trainer`` does them (channels_last_3d + bf16
   autocast, ``sparse_loss``, AdamW). For contrast also fp32 NCDHW (the slow path) and
   the ``paper`` preset at a smaller patch.
3. Single-layer convolution (32 -> 32, 3x3x3, 64^3) in the three formats of DESIGN.md §5.
4. Inference voxels/s: ``predict`` on a 64 x 192 x 192 volume with the preset's InferConfig.

Run::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_core.py            # ~5 min
    PYTHONPATH=src .venv/bin/python benchmarks/bench_core.py --quick    # smoke run

It prints a markdown block and rewrites ``docs/benchmarks.md`` (``--docs``), adding the
preset comparison from ``benchmarks/results/compare_presets.json`` when that file exists.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import _machine
from _machine import describe, foreign_load, wait_quiet
from _report import write_docs
from napari_sparseseg.core import device as dev
from napari_sparseseg.core.config import DEFAULT_PRESET, preset
from napari_sparseseg.core.inference import predict
from napari_sparseseg.core.loss import sparse_loss
from napari_sparseseg.core.synthetic import make_tubules
from napari_sparseseg.core.trainer import new_segmenter, train_step

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPACING = (2.0, 1.0, 1.0)  # the synthetic sample's spacing
CPU = torch.device("cpu")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny repeats, no docs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps (fast path)")
    parser.add_argument("--infer-shape", type=int, nargs=3, default=[64, 192, 192])
    parser.add_argument("--paper-patch", type=int, nargs=3, default=[32, 64, 64])
    parser.add_argument("--presets-json", type=Path, default=HERE / "results" / "compare_presets.json")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--docs-only", action="store_true", help="re-render the docs from the last results")
    parser.add_argument("--max-wait", type=float, default=900.0, help="seconds to wait for idle CPUs")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.infer_shape, args.no_docs = 3, [32, 64, 64], True
    return args


OTHER_LOAD: dict[str, float] = {}  # measurement -> CPU share other processes used meanwhile


def timed(fn, repeats: int, warmup: int = 1, label: str | None = None) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    Waits for idle CPUs first; with ``label``, records in ``OTHER_LOAD`` how much CPU
    other processes took during the timed calls.
    """
    for _ in range(warmup):
        fn()
    wait_quiet()
    times = []
    with foreign_load() as load:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    if label:
        OTHER_LOAD[label] = load["share"]
    return statistics.median(times)


def matmul_gflops(n: int = 2048, repeats: int = 7, dtype=torch.bfloat16) -> float:
    """GFLOP/s of an n x n x n matmul (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    seconds = timed(lambda: torch.matmul(a, b), repeats, warmup=2, label=f"matmul {dtype}")
    return 2 * n**3 / seconds / 1e9


def conv_gflops(fmt: str, repeats: int = 5) -> float:
    """Forward GFLOP/s of a 32->32 3x3x3 conv on (1, 32, 64, 64, 64), as in DESIGN.md §5."""
    conv = torch.nn.Conv3d(32, 32, 3, padding=1, bias=False)
    x = torch.randn(1, 32, 64, 64, 64)
    if fmt != "fp32 NCDHW":
        conv, x = (
            conv.to(memory_format=torch.channels_last_3d),
            x.contiguous(memory_format=torch.channels_last_3d),
        )
    use_bf16 = fmt.startswith("bf16")

    def run():
        with torch.no_grad(), dev.autocast(CPU, use_bf16):
            conv(x)

    return 2 * 27 * 32 * 32 * 64**3 / timed(run, repeats, label=f"conv {fmt}") / 1e9


def make_batch(net, patch, batch: int, n_classes: int = 3, painted: float = 0.1, seed: int = 0):
    """A random batch of what the training step sees: the stem's features (B, C, *patch), or the
    image without a stem, then the frozen classifier's logits where the model has one (the trainer
    computes them once per volume), and a sparse target (B, *patch), -1 where unpainted."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, net.stage_channels, *patch, generator=gen)  # logits: random, as costly
    y = torch.randint(0, n_classes, (batch, *patch), generator=gen)
    y[torch.rand(batch, *patch, generator=gen) > painted] = -1
    return x, y


def build_net(model_config, n_classes: int = 3) -> torch.nn.Module:
    """UNet3D with pooling resolved from the sample spacing, as ``trainer.new_segmenter`` does."""
    image = np.zeros((8, 8, 8), np.float32)
    return new_segmenter(model_config, [image], n_classes, SPACING).net


def count_train_flops(net, x, y) -> int:
    """FLOPs of one forward + backward (convolutions and matmuls, 2 per multiply-add)."""
    counter = FlopCounterMode(display=False)
    with counter:
        sparse_loss(net.from_features(x), y).backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def train_step_fn(net, x, y, fast: bool, bf16: bool):
    """The product's step (:func:`trainer.train_step`) when ``fast`` and ``bf16``; otherwise the
    same step on a path the product does not take (fp32, or NCDHW memory), for comparison."""
    if fast and bf16:
        net = dev.prepare(net, CPU).train()
        optim = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        weight, xs, ys = torch.ones(net.n_classes), x.numpy(), y.numpy()
        return lambda: train_step(net, optim, scaler, xs, ys, weight, 0.5, CPU)
    if fast:
        net = dev.prepare(net, CPU)
        x = x.contiguous(memory_format=dev.memory_format(CPU))
    net.train()
    optim = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)
    weight = torch.ones(net.n_classes)

    def step():
        optim.zero_grad(set_to_none=True)
        with dev.autocast(CPU, bf16):
            logits = net.from_features(x)
        sparse_loss(logits, y, weight, 0.5).backward()
        optim.step()

    return step


def bench_train(label, model_config, patch, batch, steps, fast=True, bf16=True) -> dict:
    """GFLOP/s of training steps for one model / path; median of ``steps`` timed steps."""
    net = build_net(model_config)
    x, y = make_batch(net, patch, batch)
    flops = count_train_flops(net, x, y)
    seconds = timed(train_step_fn(net, x, y, fast, bf16), steps, warmup=2, label=label)
    voxels = batch * int(np.prod(patch))
    return {
        "label": label, "patch": list(patch), "batch": batch, "steps": steps,
        "gflop_per_step": flops / 1e9, "step_s": seconds,
        "gflops": flops / seconds / 1e9, "kvox_per_s": voxels / seconds / 1e3,
    }  # fmt: skip


def bench_train_all(args) -> list[dict]:
    """The default preset on three paths, with the other norm, and the paper preset."""
    fast = preset(DEFAULT_PRESET)
    model, patch, batch = fast.model, fast.train.patch_size, fast.train.batch_size
    few = max(2, args.steps // 3)
    rows = [
        bench_train(
            f"{DEFAULT_PRESET}: bf16 + channels_last_3d (trainer path)", model, patch, batch, args.steps
        ),
        bench_train(f"{DEFAULT_PRESET}: fp32 + channels_last_3d", model, patch, batch, few, bf16=False),
        bench_train(
            f"{DEFAULT_PRESET}: fp32 NCDHW (DESIGN §5 'slow path')",
            model,
            patch,
            batch,
            few,
            fast=False,
            bf16=False,
        ),
    ]
    other = "instance" if model.norm == "batch" else "batch"
    label = f"{DEFAULT_PRESET} with norm={other!r}: bf16 + channels_last_3d"
    rows.append(bench_train(label, replace(model, norm=other), patch, batch, few))
    paper = preset("paper")
    rows.append(bench_train("paper: bf16 + channels_last_3d", paper.model, tuple(args.paper_patch),
                            paper.train.batch_size, few))  # fmt: skip
    return rows


def bench_sampler(batch: int, patch, repeats: int = 20) -> float:
    """Milliseconds to draw one augmented training batch (the data side of a step)."""
    from napari_sparseseg.core.sampling import PatchSampler, annotation_to_target
    from napari_sparseseg.core.synthetic import make_sample

    sample = make_sample(shape=(48, 128, 128), slices_per_axis=2, seed=0)
    rng = np.random.default_rng(0)
    sampler = PatchSampler([sample.image], [annotation_to_target(sample.annotation)], patch, SPACING, rng)
    return 1e3 * timed(lambda: sampler.sample(batch), repeats, label="sampler")


def bench_infer(shape, repeats: int = 3) -> dict:
    """Voxels/s of ``predict`` with the default preset (untrained weights: same compute)."""
    fast = preset(DEFAULT_PRESET)
    image, _ = make_tubules(shape=tuple(shape), seed=0)
    segmenter = new_segmenter(fast.model, [image], 3, SPACING)
    seconds = timed(lambda: predict(segmenter, image, fast.infer), repeats, label="predict")
    return {
        "shape": list(shape), "window": list(fast.infer.window), "overlap": fast.infer.overlap,
        "batch": fast.infer.batch_size, "repeats": repeats, "seconds": seconds,
        "mvox_per_s": float(np.prod(shape)) / seconds / 1e6,
    }  # fmt: skip


def run(args) -> dict:
    """Every measurement of this script, in one dictionary."""
    fast = preset(DEFAULT_PRESET)
    results = {"machine": describe(), "matmul_bf16_gflops": matmul_gflops(repeats=3 if args.quick else 7)}
    results["matmul_fp32_gflops"] = matmul_gflops(repeats=3, dtype=torch.float32)
    formats = ("fp32 NCDHW", "fp32 channels_last_3d", "bf16 channels_last_3d")
    results["conv"] = {fmt: conv_gflops(fmt, 2 if args.quick else 5) for fmt in formats}
    results["train"] = bench_train_all(args)
    results["sampler_ms"] = bench_sampler(fast.train.batch_size, fast.train.patch_size)
    results["infer"] = bench_infer(args.infer_shape, 1 if args.quick else 3)
    results["other_load"] = dict(OTHER_LOAD)
    results["preset"] = {"name": DEFAULT_PRESET, "model": repr(fast.model), "train": repr(fast.train)}
    return results


def markdown(results: dict) -> str:
    """The measurements as a markdown block."""
    peak = results["matmul_bf16_gflops"]
    lines = [
        f"- Default preset `{results['preset']['name']}`: `{results['preset']['model']}`, "
        f"`{results['preset']['train']}`",
        f"- bf16 matmul 2048³: **{peak:.0f} GFLOP/s** (fp32: {results['matmul_fp32_gflops']:.0f} GFLOP/s)",
        "- Conv3d 32→32, 3×3×3, 64³, forward: "
        + ", ".join(f"{k} **{v:.0f}** GFLOP/s" for k, v in results["conv"].items()),
        "",
        "| training step | patch × batch | GFLOP/step | s/step (median) | GFLOP/s "
        "| % of bf16 matmul | kvoxel/s |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [_train_row(r, peak) for r in results["train"]]
    inf = results["infer"]
    lines += [
        "",
        _speedup_line(results["train"]),
        f"- Drawing one augmented batch (sampler, data side of a step): {results['sampler_ms']:.1f} ms",
        f"- Inference `predict` on {_x(inf['shape'])} (window {_x(inf['window'])}, overlap {inf['overlap']}, "
        f"batch {inf['batch']}): {inf['seconds']:.2f} s → **{inf['mvox_per_s']:.2f} Mvoxel/s** "
        f"(median of {inf['repeats']})",
        "",
        _load_line(results["other_load"]),
    ]
    return "\n".join(lines)


def _speedup_line(train: list[dict]) -> str:
    """Step-time ratios of the default preset's three paths (first three rows)."""
    fast, fp32_cl, fp32_nc = (r["step_s"] for r in train[:3])
    return (
        f"- Step-time ratios, default preset: fp32 NCDHW / bf16 + channels_last_3d = {fp32_nc / fast:.2f}×; "
        f"fp32 NCDHW / fp32 channels_last_3d = {fp32_nc / fp32_cl:.2f}×."
    )


def _load_line(other_load: dict) -> str:
    """One line saying how much CPU other processes took during the timings."""
    worst = max(other_load.values(), default=0.0)
    noisy = [f"{k} {100 * v:.0f} %" for k, v in other_load.items() if v > 0.05]
    detail = f" ({'; '.join(noisy)})" if noisy else ""
    return f"- CPU share taken by other processes during the timings: at most {100 * worst:.0f} %{detail}."


def _x(sizes) -> str:
    return "×".join(map(str, sizes))


def _train_row(r: dict, peak: float) -> str:
    return (
        f"| {r['label']} | {_x(r['patch'])} × {r['batch']} | {r['gflop_per_step']:.1f} "
        f"| {r['step_s']:.3f} (n={r['steps']}) | **{r['gflops']:.0f}** | {100 * r['gflops'] / peak:.0f} % "
        f"| {r['kvox_per_s']:.0f} |"
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    _machine.MAX_WAIT_S = 0.0 if args.quick else args.max_wait
    saved = HERE / "results" / "bench_core.json"
    if args.docs_only:
        results = json.loads(saved.read_text())
        write_docs(args.docs, results, markdown(results), args.presets_json)
        print(f"Wrote {args.docs} from {saved}")
        return
    start = time.perf_counter()
    results = run(args)
    block = markdown(results)
    print(json.dumps(results["machine"]))
    print(block)
    print(f"\nTotal {time.perf_counter() - start:.0f} s")
    if not args.quick:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(results, indent=1, default=float))
    if not args.no_docs:
        write_docs(args.docs, results, block, args.presets_json)
        print(f"Wrote {args.docs}")


if __name__ == "__main__":
    main()
