import pytest
import torch

from napari_sparseseg.core import device


def test_auto_picks_an_available_device():
    chosen = device.resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else chosen.type
    assert chosen.type == expected and chosen.type in ("cuda", "mps", "cpu")


def test_unknown_or_missing_device_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown device"):
        device.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            device.resolve_device("cuda")


def test_cpu_fast_path_settings():
    cpu = torch.device("cpu")
    assert device.memory_format(cpu) == torch.channels_last_3d
    net = device.prepare(torch.nn.Conv3d(1, 2, 3), cpu)
    assert net.weight.is_contiguous(memory_format=torch.channels_last_3d)
    with device.autocast(cpu):
        y = net(torch.randn(1, 1, 4, 4, 4))
    assert y.dtype == (torch.bfloat16 if device.cpu_supports_bf16() else torch.float32)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, native):
    # oneDNN emulates bf16 on plain AVX-512, 3.5x slower than float32: that must stay float32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    device.cpu_supports_bf16.cache_clear()
    try:
        with device.autocast(torch.device("cpu")):
            y = torch.nn.Linear(3, 2)(torch.randn(4, 3))
        assert y.dtype == (torch.bfloat16 if native else torch.float32)
    finally:
        device.cpu_supports_bf16.cache_clear()
