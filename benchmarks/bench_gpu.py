"""GPU speed: bf16 matmul GFLOP/s and the train step's GFLOP/s for the default and paper presets.

The step's FLOPs (forward and backward) are counted by ``torch.utils.flop_counter``; its time is
the median of ``--steps`` steps after warm-up, synchronised. Writes ``results/bench_gpu.json`` and
the "GPU" section of docs/benchmarks.md. Run by ``benchmarks/gpu.sh``.

    .venv/bin/python benchmarks/bench_gpu.py --steps 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from _docs import replace_section  # run as a script from benchmarks/, like bench_core.py
from napari_sparseseg.core import device as dev
from napari_sparseseg.core.config import preset, replace
from napari_sparseseg.core.loss import sparse_loss
from napari_sparseseg.core.model import UNet3D

HERE = Path(__file__).resolve().parent
HEADING = "## GPU"


def matmul_gflops(n: int = 8192, repeats: int = 20) -> float:
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def step_gflops(name: str, steps: int) -> dict:
    """GFLOP/s of one AMP training step of preset ``name`` on synthetic (input, target) batches."""
    p = preset(name)
    model = replace(p.model, pools=None)
    net = dev.prepare(UNet3D(model, 3), torch.device("cuda")).train()
    x = torch.randn(p.train.batch_size, net.stage_channels, *p.train.patch_size, device="cuda")
    x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(-1, 3, (p.train.batch_size, *p.train.patch_size), device="cuda")
    optim = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step():
        optim.zero_grad(set_to_none=True)
        with dev.autocast(torch.device("cuda")):
            loss = sparse_loss(net.from_features(x), y)
        loss.backward()
        optim.step()

    with FlopCounterMode(display=False) as counter:
        step()
    times = []
    for _ in range(steps + 3):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times[3:])
    flops = counter.get_total_flops()
    return {"preset": name, "patch": list(p.train.patch_size), "batch": p.train.batch_size,
            "step_s": seconds, "gflops": flops / seconds / 1e9}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu: torch sees no CUDA GPU; run it on a GPU machine (benchmarks/gpu.sh).")
    train = [step_gflops(name, args.steps) for name in ("fast", "paper")]
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
              "matmul_bf16_gflops": matmul_gflops(), "train": train}
    (HERE / "results" / "bench_gpu.json").write_text(json.dumps(result, indent=1))
    lines = [HEADING, "", "Reproduce with `bash benchmarks/gpu.sh` on a GPU machine.", "",
             f"- GPU: {result['gpu']}, torch {result['torch']}; "
             f"bf16 matmul {result['matmul_bf16_gflops']:.0f} GFLOP/s.",
             "", "| preset | patch × batch | step s | GFLOP/s | ÷ bf16 matmul |", "|---|---|---|---|---|"]
    for t in result["train"]:
        ratio = t["gflops"] / result["matmul_bf16_gflops"]
        lines.append(f"| {t['preset']} | {'×'.join(map(str, t['patch']))} × {t['batch']} | {t['step_s']:.3f} "
                     f"| {t['gflops']:.0f} | {100 * ratio:.0f} % |")
    replace_section(HEADING, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
