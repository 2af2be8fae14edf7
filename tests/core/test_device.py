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
