"""The sparseseg command, run in-process on tiny synthetic files."""

import json

import nibabel as nib
import numpy as np
import pytest

from napari_sparseseg import cli
from napari_sparseseg._terminal import ProgressBar
from napari_sparseseg.core import checkpoint, io
from napari_sparseseg.core.config import FILTER_SIGMAS, PRESETS, ModelConfig, Preset, TrainConfig, replace
from napari_sparseseg.core.synthetic import make_sample

FAST = ["--preset", "tiny", "--iterations", "3", "--device", "cpu"]


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    base = PRESETS["fast"]
    tiny = Preset(ModelConfig(features=(4, 8)), TrainConfig(patch_size=(8, 16, 16)), base.infer)
    monkeypatch.setitem(PRESETS, "tiny", tiny)
    trees = ModelConfig(features=(4, 8), filters=FILTER_SIGMAS[:2], trees=5, predict_prior_weight=0.6)
    monkeypatch.setitem(PRESETS, "tinytrees", replace(tiny, model=trees))


@pytest.fixture
def files(tmp_path):
    sample = make_sample(shape=(10, 24, 20), slices_per_axis=1, seed=2)
    affine = np.array([[0, 0, 2.0, 10], [0, 0.5, 0, -4], [0.7, 0, 0, 3], [0, 0, 0, 1]])
    for name, data in (("img", sample.image), ("ann", sample.annotation), ("truth", sample.truth)):
        nib.save(nib.Nifti1Image(data.transpose(2, 1, 0), affine), tmp_path / f"{name}.nii.gz")
    return tmp_path, affine


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_segment_writes_mask_on_the_image_grid(capsys, files):
    d, affine = files
    code, _, err = run(capsys, "segment", d / "img.nii.gz", d / "ann.nii.gz", "--output", d / "mask.nii.gz",
                       "--save-model", d / "m.pt", "--probabilities", d / "p.nii.gz", *FAST)
    assert code == 0, err
    mask = nib.load(d / "mask.nii.gz")
    assert mask.shape == (20, 24, 10) and np.allclose(mask.affine, affine)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2}
    assert nib.load(d / "p.nii.gz").shape == (20, 24, 10, 3)
    assert checkpoint.load(d / "m.pt").n_classes == 3
    assert "training [" in err and "(iterations)" in err


def test_segment_writes_a_first_answer_while_the_u_net_trains(capsys, files):
    d, affine = files
    code, _, err = run(capsys, "segment", d / "img.nii.gz", d / "ann.nii.gz", "-o", d / "mask.nii.gz",
                       "--first-answer", d / "first.nii.gz", *FAST, "--preset", "tinytrees")
    assert code == 0, err
    first = nib.load(d / "first.nii.gz")  # on the image's grid, as the mask is
    assert first.shape == (20, 24, 10) and np.allclose(first.affine, affine)
    assert set(np.unique(np.asarray(first.dataobj))) <= {0, 1, 2}
    said = err.index(f"\nfirst answer written to {d / 'first.nii.gz'}")
    bars = [line for line in err.split("\n") if "training [" in line]
    assert bars and not any("predicted" in line or "written" in line for line in bars)  # lines of their own
    assert said < err.index("(iterations)") < err.index(f"mask written to {d / 'mask.nii.gz'}")


@pytest.mark.parametrize("option, name, preset, says", [
    ("--first-answer", "mask.tif", "tinytrees", "named for two outputs"),
    ("--probabilities", "mask.tif", "tiny", "named for two outputs"),  # the mask would be lost
    ("--first-answer", "first.tif", "tiny", "no first stage"),
    ("--first-answer", "ann.nii.gz", "tinytrees", "one of the inputs"),  # the strokes would be lost
])
def test_outputs_that_cannot_be_written_are_refused_first(capsys, files, option, name, preset, says):
    d, _ = files
    before = {path: path.read_bytes() for path in d.iterdir()}
    code, _, err = run(capsys, "segment", d / "img.nii.gz", d / "ann.nii.gz", "-o", d / "mask.tif",
                       option, d / name, *FAST, "--preset", preset)
    assert code == 2 and says in err and "Traceback" not in err and "training [" not in err
    assert {path: path.read_bytes() for path in d.iterdir()} == before  # no file new, none changed


def test_train_predict_evaluate(capsys, files):
    d, _ = files
    assert run(capsys, "train", d / "img.nii.gz", d / "ann.nii.gz", "-o", d / "m.pt", *FAST)[0] == 0
    code, _, err = run(capsys, "predict", d / "img.nii.gz", "--model", d / "m.pt", "-o", d / "mask.tif")
    assert code == 0, err
    mask = io.read_volume(d / "mask.tif")
    assert mask.data.shape == (10, 24, 20) and mask.spacing == pytest.approx((2.0, 0.5, 0.7))
    code, out, _ = run(capsys, "evaluate", d / "mask.tif", d / "truth.nii.gz", "--json",
                       "--unpainted", d / "ann.nii.gz")
    result = json.loads(out)
    assert code == 0 and set(result["classes"]) == {"0", "1", "2"}
    assert result["n_voxels"] == int((io.read_volume(d / "ann.nii.gz").data == 0).sum())


def test_a_model_keeps_the_inference_settings_of_its_preset(capsys, files):
    d, _ = files
    code, _, err = run(capsys, "train", d / "img.nii.gz", d / "ann.nii.gz", "-o", d / "m.pt",
                       "--preset", "paper", "--iterations", "1", "--device", "cpu")
    assert code == 0, err
    assert checkpoint.load(d / "m.pt").infer == PRESETS["paper"].infer  # window 64x128x128, batch 1
    code, _, err = run(capsys, "predict", d / "img.nii.gz", "-m", d / "m.pt", "-o", d / "mask.tif", "--tta")
    assert code == 0 and "(window 10×24×24, flip TTA)" in err  # paper's window, shrunk to the volume


def test_continue_training_from_a_model(capsys, files):
    d, _ = files
    run(capsys, "train", d / "img.nii.gz", d / "ann.nii.gz", "-o", d / "m.pt", *FAST)
    code, _, err = run(capsys, "train", d / "img.nii.gz", d / "ann.nii.gz", "-o", d / "m2.pt",
                       "--init", d / "m.pt", *FAST)
    assert code == 0, err


def _npy(tmp_path, name, data):
    np.save(tmp_path / name, data)
    return tmp_path / name


def test_model_for_other_classes_or_wrong_file(capsys, files):
    d, _ = files
    run(capsys, "train", d / "img.nii.gz", d / "ann.nii.gz", "-o", d / "m.pt", *FAST)
    ann = io.read_volume(d / "ann.nii.gz").data
    ann[0, 0, :3] = 4  # a fourth label the model does not know
    np.save(d / "ann4.npy", ann)
    code, _, err = run(capsys, "segment", d / "img.nii.gz", d / "ann4.npy", "-o", d / "x.tif",
                       "--init", d / "m.pt", *FAST)
    assert code == 2 and "predicts 3 classes" in err
    code, _, err = run(capsys, "predict", d / "img.nii.gz", "--model", d / "img.nii.gz", "-o", d / "x.tif")
    assert code == 2 and "not a napari-sparseseg model" in err and not (d / "x.tif").exists()


def test_demo_prints_dice(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "--iterations", "2", "--device", "cpu", "--output-dir", tmp_path)
    assert code == 0 and "dice" in out and "tubule wall" in out
    assert io.read_volume(tmp_path / "mask.tif").data.shape == (32, 96, 96)


def test_ctrl_c_before_the_first_step_writes_nothing_and_exits_130(capsys, files, monkeypatch):
    from contextlib import contextmanager

    @contextmanager
    def pressed_at_once():  # as if Ctrl-C came while the command was still reading its inputs
        yield lambda: True

    monkeypatch.setattr(cli, "_stop_on_interrupt", pressed_at_once)
    d, _ = files
    code, _, err = run(capsys, "segment", d / "img.nii.gz", d / "ann.nii.gz", "-o", d / "mask.tif",
                       "--save-model", d / "m.pt", *FAST)
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert not (d / "mask.tif").exists() and not (d / "m.pt").exists()


def test_a_full_disk_is_one_sentence_and_leaves_no_output(capsys, files, monkeypatch):
    import errno

    from napari_sparseseg.core import io as core_io

    tiff = core_io._write_tiff

    def fills_up(path, *args, **kwargs):  # the disk fills while the probabilities are written
        if "probs" in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return tiff(path, *args, **kwargs)

    monkeypatch.setattr(core_io, "_write_tiff", fills_up)
    d, _ = files
    before = set(d.iterdir())
    code, _, err = run(capsys, "segment", d / "img.nii.gz", d / "ann.nii.gz", "-o", d / "mask.tif",
                       "--save-model", d / "m.pt", "--probabilities", d / "probs.tif", *FAST)
    assert code == 2 and "no space left on device" in err and "Traceback" not in err
    assert "written to" not in err  # nothing was said to be written, and nothing was
    assert set(d.iterdir()) == before  # no mask, no model, no temporary file


def test_too_little_free_space_is_refused_before_training(capsys, files, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6, 1000))
    d, _ = files
    code, _, err = run(capsys, "segment", d / "img.nii.gz", d / "ann.nii.gz", "-o", d / "mask.tif", *FAST)
    assert code == 2 and "MB are free" in err and "training" not in err
    assert not (d / "mask.tif").exists()


def test_too_little_free_memory_is_refused_before_training(capsys, files, monkeypatch):
    import psutil

    memory = psutil.virtual_memory()._replace(available=50_000)  # a run needs over 1 GB
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory)
    d, _ = files
    code, _, err = run(capsys, "segment", d / "img.nii.gz", d / "ann.nii.gz", "-o", d / "mask.tif",
                       "--save-model", d / "m.pt", *FAST)
    assert code == 2 and "Traceback" not in err
    assert "img.nii.gz" in err and "10 × 24 × 20 voxels" in err and "0.0 GB are free" in err
    assert not (d / "mask.tif").exists() and not (d / "m.pt").exists()


def test_ctrl_c_while_starting_is_one_sentence(capsys, monkeypatch):
    import sys

    from napari_sparseseg.__main__ import main

    class InterruptedImport:  # Ctrl-C arrives while the command's modules are being imported
        def find_spec(self, name, path=None, target=None):
            if name == "napari_sparseseg.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "napari_sparseseg.cli")
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(), *sys.meta_path])
    assert main(["demo"]) == 130
    assert capsys.readouterr().err == "sparseseg: interrupted while starting; nothing was written.\n"


def test_surprises_are_said(capsys, files):
    d, _ = files
    assert run(capsys, "train", d / "img.nii.gz", d / "ann.nii.gz", "-o", d / "m.pt", *FAST)[0] == 0
    two = io.read_volume(d / "ann.nii.gz").data
    two[two == 3] = 0  # this time only background and class 1 are painted
    code, _, err = run(capsys, "segment", d / "img.nii.gz", _npy(d, "two.npy", two), "-o", d / "m1.tif",
                       "--init", d / "m.pt", *FAST)
    assert code == 0 and "keeps class(es) class 2 from before" in err
    flat = _npy(d, "flat.npy", np.full((10, 24, 20), 7.0, np.float32))
    code, _, err = run(capsys, "segment", flat, _npy(d, "a.npy", io.read_volume(d / "ann.nii.gz").data),
                       "-o", d / "m2.tif", *FAST)
    assert code == 0 and "is constant (7 everywhere)" in err


def test_the_progress_bar_says_why_training_ended_early(capsys):
    from napari_sparseseg.core.events import Progress

    last = Progress(1270, 0.1, 240.0, 1e6, None, 600.0, done=True, reason="passes", passes=1000.4,
                    max_passes=1000)
    ProgressBar("Training").update(last)
    err = capsys.readouterr().err
    assert "it 1270" in err and "100%" in err and "paint or correct more slices" in err and err.endswith("\n")
    assert "the trees'" not in err
    ProgressBar("Training").update(replace(last, reason="time", kept_first=True))
    err = capsys.readouterr().err
    assert "(time)\nThe U-Net did not yet label the painted slices better than the trees" in err
