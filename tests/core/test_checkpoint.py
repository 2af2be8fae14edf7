import pickle
import warnings

import numpy as np
import pytest
import torch

from napari_sparseseg.core import checkpoint
from napari_sparseseg.core.inference import predict
from napari_sparseseg.core.trainer import fit


@pytest.fixture
def trained(tiny_model, tiny_train, blob_pair):
    image, ann, _ = blob_pair
    return fit([image], [ann], tiny_model, tiny_train, spacing=(2.0, 1.0, 1.0),
               class_names=["bg", "ball"]), image


def test_round_trip_predicts_the_same(tmp_path, trained):
    seg, image = trained
    path = checkpoint.save(seg, tmp_path / "model.pt")
    loaded = checkpoint.load(path)
    assert loaded.class_names == ("bg", "ball") and loaded.spacing == (2.0, 1.0, 1.0)
    assert loaded.normalization == seg.normalization and loaded.config == seg.config
    a, b = predict(seg, image), predict(loaded, image)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_loading_never_executes_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('pwned').touch()",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": checkpoint.FORMAT, "x": Evil()}, f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch warning before our sentence
        with pytest.raises(ValueError, match="not a napari-sparseseg model"):
            checkpoint.load(path)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ValueError, match="it is a folder, not a model file"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"garbage" * 100])
def test_corrupt_file_is_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.pt"):
        checkpoint.load(path)


def test_other_torch_file_and_damaged_model(tmp_path, trained):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a napari-sparseseg model file"):
        checkpoint.load(tmp_path / "other.pt")
    seg, _ = trained
    checkpoint.save(seg, tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["n_classes"] = 5
    torch.save(payload, tmp_path / "damaged.pt")
    with pytest.raises(ValueError, match="damaged"):
        checkpoint.load(tmp_path / "damaged.pt")


def test_missing_file_and_unwritable_target(tmp_path, trained):
    with pytest.raises(ValueError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="Cannot write"):
        checkpoint.save(trained[0], tmp_path / "no" / "dir" / "m.pt")


def test_model_for_another_channel_count_is_refused(blob_pair):
    from napari_sparseseg.core.checkpoint import Segmenter
    from napari_sparseseg.core.config import ModelConfig
    from napari_sparseseg.core.normalize import Normalization
    from napari_sparseseg.core.trainer import check_compatible

    two_channel = Segmenter.create(ModelConfig(features=(4, 8), in_channels=2), 2, Normalization(0, 1, 0, 1))
    with pytest.raises(ValueError, match="expects 2 input channels"):
        predict(two_channel, blob_pair[0])
    with pytest.raises(ValueError, match="expects 2 input channels"):
        check_compatible(two_channel, n_classes=2)
