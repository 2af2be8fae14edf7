"""Train on the synthetic tubule sample and check Dice on the voxels nobody painted."""

from napari_sparseseg.core.config import ModelConfig, TrainConfig
from napari_sparseseg.core.inference import predict
from napari_sparseseg.core.metrics import evaluate
from napari_sparseseg.core.synthetic import make_sample
from napari_sparseseg.core.trainer import fit

MIN_DICE = {"background": 0.97, "tubule lumen": 0.92, "tubule wall": 0.85}


def test_learns_dense_tubules_from_sparse_slices():
    sample = make_sample(shape=(24, 64, 64), slices_per_axis=2, seed=1)
    model = ModelConfig(features=(8, 16, 32), norm="instance")
    config = TrainConfig(patch_size=(16, 48, 48), batch_size=2, iterations=250, device="cpu", seed=0)
    segmenter = fit([sample.image], [sample.annotation], model, config, sample.spacing,
                    class_names=sample.class_names)
    labels = predict(segmenter, sample.image).labels
    result = evaluate(labels, sample.truth, n_classes=3, mask=sample.annotation == 0,
                      class_names=sample.class_names)
    dice = {name: m["dice"] for name, m in result["classes"].items()}
    assert all(dice[name] >= floor for name, floor in MIN_DICE.items()), dice
