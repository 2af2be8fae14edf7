"""Pick the compute device and the fast path for it."""

from __future__ import annotations

import contextlib
import functools

import torch

from .config import DEVICES


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``'auto'`` to cuda, then mps, then cpu; check an explicit choice exists."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"Unknown device {name!r}; choose one of {', '.join(DEVICES)}.")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("Device 'cuda' was requested but no CUDA GPU is available; use --device cpu.")
    if name == "mps" and not _mps_available():
        raise ValueError("Device 'mps' was requested but Apple MPS is not available; use --device cpu.")
    return torch.device(name)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX tiles).

    oneDNN also "supports" bf16 on plain AVX-512 by emulation, but there a bf16 training step
    is about 3.5 times slower than float32 (measured on a 2-core Xeon without AVX512_BF16), so
    only native support turns on bf16 autocast.
    """
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    probes = [getattr(torch.cpu, name, None) for name in names]
    return any(probe is not None and bool(probe()) for probe in probes)


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision for the device: bf16 on capable CPUs, fp16 AMP on CUDA."""
    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device):
    """channels_last_3d on CPU and CUDA (10x faster convolutions on the CPU here)."""
    return torch.channels_last_3d if device.type in ("cpu", "cuda") else torch.contiguous_format


def prepare(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``model`` to ``device`` in the fast memory format."""
    return model.to(device=device, memory_format=memory_format(device))
