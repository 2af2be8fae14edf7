"""The GPU path (CUDA AMP, channels-last; MPS): run with ``pytest --device cuda`` on a GPU machine.

Skipped on the default ``--device cpu``; ``benchmarks/gpu.sh`` runs them.
"""

import numpy as np

from napari_sparseseg.core import checkpoint
from napari_sparseseg.core.config import InferConfig, TrainConfig, preset, replace
from napari_sparseseg.core.inference import predict
from napari_sparseseg.core.metrics import evaluate
from napari_sparseseg.core.synthetic import make_sample
from napari_sparseseg.core.trainer import fit


def test_default_engine_learns_on_the_gpu_and_its_model_runs_on_the_cpu(device_name, tmp_path):
    sample = make_sample(shape=(24, 64, 64), slices_per_axis=2, seed=1)
    model = replace(preset("fast").model, features=(8, 16, 32))
    config = TrainConfig(patch_size=(16, 48, 48), iterations=60, pointwise_steps=600, device=device_name)
    segmenter = fit([sample.image], [sample.annotation], model, config, sample.spacing,
                    class_names=sample.class_names)
    on_gpu = predict(segmenter, sample.image, InferConfig(device=device_name)).labels
    dice = evaluate(on_gpu, sample.truth, n_classes=3, mask=sample.annotation == 0)["mean_foreground"]["dice"]
    assert dice >= 0.93
    loaded = checkpoint.load(checkpoint.save(segmenter, tmp_path / "gpu.pt"))
    on_cpu = predict(loaded, sample.image, InferConfig(device="cpu")).labels
    assert np.mean(on_cpu == on_gpu) >= 0.995  # bf16/fp16 autocast vs CPU bf16: a few boundary voxels


def test_paper_preset_trains_a_few_steps_with_amp(device_name):
    sample = make_sample(shape=(64, 128, 128), slices_per_axis=2, seed=2)
    p = preset("paper")
    config = replace(p.train, iterations=3, max_time=None, device=device_name)
    segmenter = fit([sample.image], [sample.annotation], p.model, config, sample.spacing)
    labels = predict(segmenter, sample.image, replace(p.infer, device=device_name)).labels
    assert labels.shape == sample.image.shape
