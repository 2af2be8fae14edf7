"""Shared fixtures: tiny models and volumes so the suite stays fast on 2 CPU cores."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparseseg.core.config import ModelConfig, TrainConfig


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", choices=("cpu", "cuda", "mps"),
                     help="device for the tests marked as device tests (tests/core/test_cuda.py)")


@pytest.fixture
def device_name(request) -> str:
    """The ``--device`` option; device tests are skipped unless it names an available GPU."""
    name = request.config.getoption("--device")
    if name == "cpu":
        pytest.skip("GPU test: run with --device cuda (or mps) on a machine that has one")
    import torch

    available = torch.cuda.is_available() if name == "cuda" else torch.backends.mps.is_available()
    if not available:
        pytest.fail(f"--device {name} was given but torch sees no such device")
    return name


@pytest.fixture(autouse=True)
def _two_threads():
    import torch

    torch.set_num_threads(2)


@pytest.fixture
def tiny_model() -> ModelConfig:
    return ModelConfig(features=(4, 8), norm="instance")


@pytest.fixture
def tiny_train() -> TrainConfig:
    # no cap on passes: the time-budget tests must end on time however fast the host is
    return TrainConfig(patch_size=(8, 16, 16), batch_size=2, iterations=3, device="cpu", max_passes=None)


@pytest.fixture
def blob_pair():
    """A bright ball in noise (odd shape) with one painted slice per axis."""
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:11, :19, :17]
    truth = ((z - 5) ** 2 + (y - 9) ** 2 + (x - 8) ** 2 < 20).astype(np.uint8)
    image = (truth + 0.2 * rng.normal(size=truth.shape)).astype(np.float32)
    ann = np.zeros_like(truth)
    ann[5] = truth[5] + 1
    ann[:, 9] = truth[:, 9] + 1
    ann[:, :, 8] = truth[:, :, 8] + 1
    return image, ann, truth
