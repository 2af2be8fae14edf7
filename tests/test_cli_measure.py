"""`sparseseg measure` and `segment --measure` as a user runs them: units, tables, CSV, bad input."""

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_sparseseg import cli
from napari_sparseseg.core import io
from napari_sparseseg.core.config import PRESETS, ModelConfig, Preset, TrainConfig
from napari_sparseseg.core.synthetic import make_sample


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def nifti(path, zyx, spacing=(2.0, 0.5, 0.5), unit="mm"):
    image = nib.Nifti1Image(np.ascontiguousarray(zyx.transpose(2, 1, 0)), np.diag([*spacing[::-1], 1.0]))
    image.header.set_xyzt_units(unit)
    nib.save(image, path)
    return path


@pytest.fixture
def mask():
    data = np.zeros((10, 40, 40), np.uint8)
    data[2:8, 5:25, 5:25] = 1  # 6 x 20 x 20 voxels of 0.5 mm³: 1.2 mL
    data[2:4, 30:34, 30:34] = 2
    data[6:8, 30:34, 30:34] = 2  # two separate objects of class 2
    return data


def test_measure_reads_the_unit_from_the_nifti_header_and_writes_csv(capsys, tmp_path, mask):
    path = nifti(tmp_path / "m.nii.gz", mask)
    code, out, err = run(capsys, "measure", path, "--names", "liver", "node", "--csv", tmp_path / "t.csv")
    assert code == 0, err
    assert "volume (mm³)" in out and "1.200 mL" in out and "liver" in out
    csv = (tmp_path / "t.csv").read_text().splitlines()
    assert csv[0].startswith("class,name,voxels,volume") and csv[1].startswith("1,liver,2400,1200.0")


def test_objects_and_json(capsys, tmp_path, mask):
    path = nifti(tmp_path / "m.nii.gz", mask, unit="micron")
    code, out, _ = run(capsys, "measure", path, "--objects", "--json")
    result = json.loads(out)
    assert code == 0 and result["unit"] == "um"
    assert [(r["class"], r["voxels"]) for r in result["rows"]] == [(1, 2400), (2, 32), (2, 32)]


def test_a_tiff_mask_with_imagej_microns_and_a_npy_mask_without_geometry(capsys, tmp_path, mask):
    tifffile.imwrite(tmp_path / "m.tif", mask, imagej=True, resolution=(2, 2),
                     metadata={"spacing": 1.0, "unit": "micron", "axes": "ZYX"})
    code, out, _ = run(capsys, "measure", tmp_path / "m.tif")
    assert code == 0 and "volume (µm³)" in out and "600" in out  # 2400 voxels of 0.25 µm³
    np.save(tmp_path / "m.npy", mask)
    code, out, _ = run(capsys, "measure", tmp_path / "m.npy")
    assert code == 0 and "unit unknown" in out
    image = nifti(tmp_path / "img.nii.gz", mask.astype(np.float32) * 10)
    code, out, _ = run(capsys, "measure", tmp_path / "m.npy", "--image", image)
    assert code == 0 and "1.200 mL" in out and "10 ± 0" in out


def test_follow_up_lists_a_class_that_disappeared(capsys, tmp_path, mask):
    later = mask.copy()
    later[later == 2] = 0
    first, second = nifti(tmp_path / "a.nii.gz", mask), nifti(tmp_path / "b.nii.gz", later)
    code, out, _ = run(capsys, "measure", first, second)
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("class 2"))
    assert "-100.0" in line


@pytest.mark.parametrize(("data", "message"), [
    (np.full((4, 4, 4), 0.5, np.float32), "non-integer"),
    (np.zeros((4, 4), np.uint8), "2 dimensions"),
])
def test_bad_masks_are_one_sentence_and_write_nothing(capsys, tmp_path, data, message):
    np.save(tmp_path / "bad.npy", data)
    code, out, err = run(capsys, "measure", tmp_path / "bad.npy", "--csv", tmp_path / "t.csv")
    assert code == 2 and message in err and "Traceback" not in err and out == ""
    assert not (tmp_path / "t.csv").exists()


def test_probabilities_on_another_grid_are_refused(capsys, tmp_path, mask):
    path = nifti(tmp_path / "m.nii.gz", mask)
    io.write_probabilities(tmp_path / "p.npy", np.zeros((3, 5, 40, 40), np.uint8))
    code, _, err = run(capsys, "measure", path, "--probabilities", tmp_path / "p.npy")
    assert code == 2 and "grid" in err


def test_segment_measure_prints_the_volume_of_every_class(capsys, tmp_path, monkeypatch):
    tiny = Preset(ModelConfig(features=(4, 8)), TrainConfig(patch_size=(8, 16, 16)), PRESETS["fast"].infer)
    monkeypatch.setitem(PRESETS, "tiny", tiny)
    sample = make_sample(shape=(10, 24, 20), slices_per_axis=1, seed=2)
    image, ann = nifti(tmp_path / "i.nii.gz", sample.image), nifti(tmp_path / "a.nii.gz", sample.annotation)
    code, out, err = run(capsys, "segment", image, ann, "-o", tmp_path / "m.nii.gz", "--measure",
                         "--preset", "tiny", "--iterations", "2", "--device", "cpu")
    assert code == 0, err
    assert "volume (mm³)" in out and "soft volume" in out and "image mean" in out
    written = io.read_volume(tmp_path / "m.nii.gz")
    assert written.unit == "mm"
    voxels = int(np.count_nonzero(written.data == 1))
    assert f"{voxels:,}" in out
