"""`sparseseg predict` on chunked inputs and outputs (zarr, OME-Zarr, TIFF read lazily)."""

import numpy as np
import pytest
import torch

from napari_sparseseg import cli
from napari_sparseseg.core import checkpoint, io, zarr_io
from napari_sparseseg.core.checkpoint import Segmenter
from napari_sparseseg.core.config import InferConfig, ModelConfig, Preset, TrainConfig
from napari_sparseseg.core.normalize import Normalization
from napari_sparseseg.core.synthetic import make_sample


@pytest.fixture
def files(tmp_path):
    tiny = Preset(ModelConfig(features=(4, 8)), TrainConfig(patch_size=(8, 16, 16)),
                  InferConfig(window=(8, 16, 16)))
    torch.manual_seed(1)
    segmenter = Segmenter.create(tiny.model, 3, Normalization(0.0, 1.0, 0.4, 0.3), infer=tiny.infer)
    checkpoint.save(segmenter, tmp_path / "m.pt")
    sample = make_sample(shape=(16, 40, 36), slices_per_axis=1, seed=3)
    io.write_volume(tmp_path / "img.tif", sample.image, spacing=(2.0, 0.5, 0.5))
    return tmp_path


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_zarr_output_equals_the_in_memory_mask_and_reads_back_as_input(capsys, files):
    d = files
    model = ["-m", d / "m.pt", "--device", "cpu"]
    code, _, err = run(capsys, "predict", d / "img.tif", *model, "-o", d / "mask.tif")
    assert code == 0 and "(window 8×16×16)" in err  # the model's own window, not the default preset's
    code, _, err = run(capsys, "predict", d / "img.tif", *model, "-o", d / "mask.zarr", "--probabilities",
                       d / "p.zarr", "--chunks", "8,16,16", "--workers", "2")
    assert code == 0, err
    assert "in 8 chunks of (8, 16, 16) on 2 local thread(s)" in err
    mask = zarr_io.open_lazy(d / "mask.zarr")
    assert mask.spacing == pytest.approx((2.0, 0.5, 0.5))
    np.testing.assert_array_equal(np.asarray(mask.dask()), io.read_volume(d / "mask.tif").data)
    # A zarr input predicted in memory (small, TIFF output) and at level 0 of the OME-Zarr.
    code, _, err = run(capsys, "predict", f"{d / 'mask.zarr'}:0", "-m", d / "m.pt", "-o", d / "again.tif")
    assert code == 0, err
    assert io.read_volume(d / "again.tif").spacing == pytest.approx((2.0, 0.5, 0.5))


@pytest.mark.parametrize(
    "extra, message",
    [(["-o", "{d}/mask.tif", "--cluster", "local:2"], r"--cluster was given.*name .*mask.tif \*.zarr"),
     (["-o", "{d}/mask.zarr", "--chunks", "8,x"], "--chunks '8,x' is not understood"),
     (["-o", "{d}/mask.zarr", "--cluster", "local:0"], "use local:N"),
     (["-o", "{d}/mask.zarr", "--level", "2"], "no resolution level|has 1 resolution level"),
     (["-o", "{d}/missing/mask.zarr"], "does not exist"),
     (["-o", "{d}/mask.zarr", "--probabilities", "{d}/mask.zarr"], "named for two outputs")],
)
def test_bad_chunked_requests_exit_2_with_one_sentence(capsys, files, extra, message):
    d = files
    code, _, err = run(capsys, "predict", d / "img.tif", "-m", d / "m.pt", *[e.format(d=d) for e in extra])
    assert code == 2
    assert err.startswith("sparseseg: error:") and "Traceback" not in err
    assert __import__("re").search(message, err), err


def test_an_output_never_replaces_the_image_it_predicts(capsys, files):
    d = files
    assert run(capsys, "predict", d / "img.tif", "-m", d / "m.pt", "-o", d / "in.zarr")[0] == 0
    before = {p: p.read_bytes() for p in [*(d / "in.zarr").rglob("*"), d / "img.tif"] if p.is_file()}
    for image, output in ((f"{d / 'in.zarr'}:0", d / "in.zarr"), (d / "img.tif", d / "img.tif")):
        code, _, err = run(capsys, "predict", image, "-m", d / "m.pt", "-o", output)
        assert code == 2 and "is one of the inputs" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.parametrize("oblique", [False, True])
def test_a_rotated_nifti_predicted_to_zarr_says_the_rotation_is_not_kept(capsys, files, oblique):
    import nibabel as nib

    d = files
    image = io.read_volume(d / "img.tif").data
    turn = np.array([[0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(image.T, turn if oblique else np.diag([0.5, 0.5, 2, 1.0])), d / "img.nii.gz")
    code, _, err = run(capsys, "predict", d / "img.nii.gz", "-m", d / "m.pt", "--device", "cpu",
                       "-o", d / "mask.zarr")
    assert code == 0, err
    assert ("not the rotation in its affine" in err) == oblique
