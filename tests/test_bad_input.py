"""Every bad input the sparseseg command rejects: one sentence on stderr, exit 2, nothing written.

One table row per case: how the bad file or option is made, the command, and a fragment of the
sentence the user must read. Each run also checks that no output appeared, that an existing
output was left byte for byte, and that no traceback or warning reached the terminal.
"""

import gzip
import os
import pickle

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_sparseseg import cli
from napari_sparseseg.core import checkpoint
from napari_sparseseg.core.config import PRESETS, ModelConfig, Preset, TrainConfig
from napari_sparseseg.core.normalize import Normalization
from napari_sparseseg.core.synthetic import make_sample

SHAPE = (10, 24, 20)  # z, y, x
FAST = ("--preset", "tiny", "--iterations", "2", "--device", "cpu")
AFFINE = np.diag([0.7, 0.5, 2.0, 1.0])


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    tiny = Preset(ModelConfig(features=(4, 8)), TrainConfig(patch_size=(8, 16, 16)), PRESETS["fast"].infer)
    monkeypatch.setitem(PRESETS, "tiny", tiny)


def nifti(path, zyx, affine=AFFINE):
    zyx = np.asarray(zyx)
    zyx = zyx.astype(np.int16) if zyx.dtype == np.int64 else zyx
    nib.save(nib.Nifti1Image(zyx.transpose(2, 1, 0), affine), path)
    return path


def npy(d, name, data):
    np.save(d / name, data, allow_pickle=True)
    return d / name


def raw(d, name, content: bytes):
    (d / name).write_bytes(content)
    return d / name


class Exploit:
    """A pickle that would create a file when unpickled."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.fixture
def d(tmp_path):
    sample = make_sample(shape=SHAPE, slices_per_axis=1, seed=2)
    nifti(tmp_path / "img.nii.gz", sample.image)
    nifti(tmp_path / "ann.nii.gz", sample.annotation)
    nifti(tmp_path / "truth.nii.gz", sample.truth)
    segmenter = checkpoint.Segmenter.create(ModelConfig(features=(4, 8)), 3, Normalization(0, 1, 0, 1),
                                            None, (2.0, 0.5, 0.7))
    checkpoint.save(segmenter, tmp_path / "m.pt")
    (tmp_path / "folder").mkdir()
    (tmp_path / "keep.tif").write_bytes(b"an earlier result")
    return tmp_path


def segment(image="img.nii.gz", ann="ann.nii.gz", *extra, out="out.nii.gz"):
    return ("segment", image, ann, "-o", out, *extra, *FAST)


def predict(model="m.pt", *extra, image="img.nii.gz", out="out.nii.gz"):
    return ("predict", image, "-m", model, "-o", out, "--device", "cpu", *extra)


def evaluate(mask="truth.nii.gz", truth="truth.nii.gz", *extra):
    return ("evaluate", mask, truth, *extra)


def flat(value):
    return np.full(SHAPE, value)


def painted(*labels):
    """An annotation painting ``labels`` in stripes, the rest unlabeled."""
    ann = np.zeros(SHAPE, np.int64)
    for k, label in enumerate(labels):
        ann[k, :4] = label
    return ann


# id: (make files in folder d -> None, command, expected fragment)
CASES = {
    # the image
    "2D image": (lambda d: npy(d, "i.npy", np.zeros((8, 8))), segment("i.npy"), "2 dimensions"),
    "4D image": (lambda d: npy(d, "i.npy", np.zeros((2, *SHAPE))), segment("i.npy"), "4 dimensions"),
    "RGB image": (lambda d: npy(d, "i.npy", np.zeros((*SHAPE, 3), np.uint8)), segment("i.npy"), "RGB"),
    "one voxel thick": (lambda d: npy(d, "i.npy", np.zeros((1, 24, 20))), segment("i.npy"),
                        "every axis needs at least 2 voxels"),
    "complex image": (lambda d: npy(d, "i.npy", flat(1 + 2j)), segment("i.npy"), "complex-valued"),
    "NaN image": (lambda d: npy(d, "i.npy", flat(np.nan)), segment("i.npy"), "NaN or infinite voxels"),
    "infinite image": (lambda d: npy(d, "i.npy", flat(np.inf)), segment("i.npy"), "NaN or infinite voxels"),
    "beyond float32": (lambda d: npy(d, "i.npy", flat(1e39)), segment("i.npy"), "the float32 range"),
    "text image": (lambda d: npy(d, "i.npy", np.full(SHAPE, "a")), segment("i.npy"), "non-numeric type"),
    "missing image": (lambda d: None, segment("nothing.nii.gz"), "does not exist"),
    "folder as image": (lambda d: os.mkdir(d / "x.nii.gz"), segment("x.nii.gz"), "it is a folder"),
    "empty file": (lambda d: raw(d, "e.nii.gz", b""), segment("e.nii.gz"), "not a valid nifti file"),
    "truncated NIfTI": (lambda d: raw(d, "t.nii.gz", (d / "img.nii.gz").read_bytes()[:300]),
                        segment("t.nii.gz"), "not a valid nifti file"),
    "model named .tif": (lambda d: raw(d, "n.tif", (d / "m.pt").read_bytes()),
                       segment("n.tif"), "not a valid tiff file"),
    "text named .npy": (lambda d: raw(d, "t.npy", b"hello"), segment("t.npy"), "not a valid npy file"),
    "pickled npy": (lambda d: npy(d, "p.npy", np.array([Exploit(d / "pwned")] * 2, dtype=object)),
                    segment("p.npy"), "not a valid npy file"),
    "gzip, not NIfTI": (lambda d: raw(d, "g.nii.gz", gzip.compress(b"not a nifti header" * 30)),
                        segment("g.nii.gz"), "not a valid nifti file"),
    "unknown suffix": (lambda d: raw(d, "i.png", b"\x89PNG"), segment("i.png"), "Unsupported file type"),
    # the annotations
    "other shape": (lambda d: npy(d, "a.npy", np.zeros((3, 3, 3), np.uint8)), segment(ann="a.npy"),
                    "but the image has shape"),
    "other grid": (lambda d: nifti(d / "a.nii.gz", painted(1, 2), np.diag([1.4, 1.0, 4.0, 1.0])),
                   segment(ann="a.nii.gz"), "lies on another grid"),
    "unpainted": (lambda d: npy(d, "a.npy", flat(0).astype(np.uint8)), segment(ann="a.npy"), "no painted"),
    "one class": (lambda d: npy(d, "a.npy", flat(1).astype(np.uint8)), segment(ann="a.npy"), "only label 1"),
    "negative labels": (lambda d: npy(d, "a.npy", painted(1, -2)), segment(ann="a.npy"), "negative labels"),
    "fractional labels": (lambda d: npy(d, "a.npy", flat(0.5)), segment(ann="a.npy"), "non-integer"),
    "NaN labels": (lambda d: npy(d, "a.npy", np.where(painted(1, 2) > 0, np.nan, 0.0)), segment(ann="a.npy"),
                   "non-integer"),
    "gapped labels": (lambda d: npy(d, "a.npy", painted(1, 3)), segment(ann="a.npy"),
                      "no voxel of label(s) [2]"),
    "too many labels": (lambda d: npy(d, "a.npy", painted(1, 300)), segment(ann="a.npy"),
                        "at most 254 classes"),
    "text labels": (lambda d: npy(d, "a.npy", np.full(SHAPE, "x")), segment(ann="a.npy"), "non-numeric type"),
    # the outputs
    "missing output folder": (lambda d: None, segment(out="nodir/m.nii.gz"), "Cannot write"),
    "output inside a file": (lambda d: None, segment(out="keep.tif/m.nii.gz"), "Cannot write"),
    "output is a folder": (lambda d: None, segment(out="folder"), "Unsupported file type"),
    "output suffix": (lambda d: None, segment(out="mask.png"), "Unsupported file type"),
    "model into missing folder": (lambda d: None, segment("img.nii.gz", "ann.nii.gz", "--save-model",
                                                         "nodir/m.pt"), "Cannot write"),
    "probabilities suffix": (lambda d: None, predict("m.pt", "--probabilities", "p.png"),
                             "Unsupported file type"),
    # options
    "max-time nan": (lambda d: None, segment("img.nii.gz", "ann.nii.gz", "--max-time", "nan"),
                     "max_time must be a positive, finite number"),
    "max-time inf": (lambda d: None, segment("img.nii.gz", "ann.nii.gz", "--max-time", "inf"),
                     "max_time must be a positive, finite number"),
    "max-time negative": (lambda d: None, segment("img.nii.gz", "ann.nii.gz", "--max-time", "-5"),
                          "max_time must be a positive, finite number"),
    "max-passes 0": (lambda d: None, segment("img.nii.gz", "ann.nii.gz", "--max-passes", "0"),
                     "max_passes must be a positive, finite number"),
    "iterations 0": (lambda d: None, ("train", "img.nii.gz", "ann.nii.gz", "-o", "m2.pt",
                                      "--iterations", "0"), "iterations must be at least 1"),
    "dice weight nan": (lambda d: None, segment("img.nii.gz", "ann.nii.gz", "--dice-weight", "nan"),
                        "dice_weight (alpha) must lie in [0, 1]"),
    "dice weight 2": (lambda d: None, segment("img.nii.gz", "ann.nii.gz", "--dice-weight", "2"),
                      "dice_weight (alpha) must lie in [0, 1]"),
    "unknown device": (lambda d: None, predict("m.pt", "--device", "tpu"), "Unknown device 'tpu'"),
    "class names count": (lambda d: None, segment("img.nii.gz", "ann.nii.gz", "--class-names", "a,b,c,d"),
                          "class names"),
    "missing --init model": (lambda d: None, segment("img.nii.gz", "ann.nii.gz", "--init", "none.pt"),
                             "does not exist"),
    "bad chunks": (lambda d: None, predict("m.pt", "--chunks", "big", out="o.zarr"), "--chunks 'big'"),
    # models
    "missing model": (lambda d: None, predict("none.pt"), "does not exist"),
    "folder as model": (lambda d: None, predict("folder"), "it is a folder"),
    "empty model": (lambda d: raw(d, "e.pt", b""), predict("e.pt"), "not a napari-sparseseg model file"),
    "random bytes": (lambda d: raw(d, "r.pt", np.random.default_rng(7).bytes(4096)), predict("r.pt"),
                     "not a napari-sparseseg model file"),
    "truncated model": (lambda d: raw(d, "t.pt", (d / "m.pt").read_bytes()[:2000]), predict("t.pt"),
                        "not a napari-sparseseg model file"),
    "foreign checkpoint": (lambda d: torch.save({"weight": torch.zeros(3)}, d / "f.pt"), predict("f.pt"),
                           "format"),
    "malicious pickle": (lambda d: raw(d, "x.pt", pickle.dumps(Exploit(d / "pwned"))), predict("x.pt"),
                         "not a napari-sparseseg model file"),
    "model for fewer classes": (lambda d: None, segment("img.nii.gz", "ann.nii.gz", "--init", "m2c.pt"),
                            "train a new model"),
    # evaluate
    "masks of other shapes": (lambda d: npy(d, "s.npy", np.zeros((3, 3, 3), np.uint8)), evaluate("s.npy"),
                              "but the truth"),
    "mask on another grid": (lambda d: nifti(d / "g.nii.gz", flat(1), np.diag([1.4, 1.0, 4.0, 1.0])),
                             evaluate("g.nii.gz"), "lies on another grid"),
    "complex mask": (lambda d: npy(d, "c.npy", flat(1j)), evaluate("c.npy"), "complex"),
    "negative truth": (lambda d: npy(d, "n.npy", flat(-4)), evaluate("truth.nii.gz", "n.npy"), "-4"),
    "region of other shape": (lambda d: npy(d, "r.npy", np.zeros((3, 3, 3), np.uint8)),
                              evaluate("truth.nii.gz", "truth.nii.gz", "--unpainted", "r.npy"),
                              "The region to score"),
}


@pytest.mark.parametrize("make, command, expected", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_sentence_and_writes_nothing(capsys, d, make, command, expected):
    if "m2c.pt" in command:
        fewer = checkpoint.Segmenter.create(ModelConfig(features=(4, 8)), 2, Normalization(0, 1, 0, 1))
        checkpoint.save(fewer, d / "m2c.pt")
    make(d)
    before = sorted(p.name for p in d.iterdir())
    cwd = os.getcwd()
    os.chdir(d)
    try:
        code = cli.main(list(command))
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err and "Warning" not in err
    assert sorted(p.name for p in d.iterdir()) == before  # no output, no temporary file, nothing run
    assert (d / "keep.tif").read_bytes() == b"an earlier result"
    assert not (d / "pwned").exists()


def test_any_junk_as_a_model_is_one_sentence():
    for seed in range(200):
        junk = np.random.default_rng(seed).bytes(int(np.random.default_rng(seed).integers(1, 5000)))
        with pytest.raises(ValueError, match="not a napari-sparseseg model file"):
            checkpoint.from_bytes(junk, "junk.pt")
