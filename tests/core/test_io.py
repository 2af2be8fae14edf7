"""Tests for napari_sparseseg.core.io."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_sparseseg.core import io
from napari_sparseseg.core.io import (
    Volume,
    file_format,
    read_volume,
    write_probabilities,
    write_volume,
)

SPACING = (2.5, 0.5, 0.25)


def _oblique_affine(zooms=(0.8, 0.9, 2.0)) -> np.ndarray:
    angle = np.deg2rad(20)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(zooms)
    affine[:3, 3] = (-12.5, 30.0, 7.25)
    return affine


@pytest.fixture
def nifti_source(tmp_path):
    """Float NIfTI (i, j, k) = (7, 6, 5) with an oblique affine; returns (path, ijk array)."""
    ijk = np.arange(7 * 6 * 5, dtype=np.float32).reshape(7, 6, 5)
    img = nib.Nifti1Image(ijk, _oblique_affine())
    img.set_qform(img.affine, code="scanner")
    img.set_sform(img.affine, code="aligned")
    path = tmp_path / "image.nii"
    img.to_filename(path)
    return path, ijk


def test_file_format():
    assert file_format("a/b.TIF") == "tiff"
    assert file_format("x.tiff") == "tiff"
    assert file_format("x.Nii.GZ") == "nifti"
    assert file_format("x.nii") == "nifti"
    assert file_format("x.npy") == "npy"
    with pytest.raises(ValueError, match=r"x\.png"):
        file_format("x.png")
    with pytest.raises(ValueError, match="gz"):
        file_format("x.gz")


def test_tiff_round_trip_keeps_data_and_spacing(tmp_path):
    data = np.random.default_rng(0).random((4, 9, 11), dtype=np.float32)
    path = write_volume(tmp_path / "img.tif", data, spacing=SPACING)
    vol = read_volume(path)
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, data)
    assert vol.spacing == pytest.approx(SPACING)
    assert vol.affine is None and vol.path == path


def test_tiff_spacing_from_like_and_mask_dtype(tmp_path):
    like = Volume(np.zeros((3, 4, 5), np.float32), spacing=(3.0, 0.3, 0.7))
    mask = np.zeros((3, 4, 5), np.int64)
    mask[1, 2, 3] = 2
    vol = read_volume(write_volume(tmp_path / "mask.tiff", mask, like=like))
    assert vol.data.dtype == np.uint8
    np.testing.assert_array_equal(vol.data, mask)
    assert vol.spacing == pytest.approx((3.0, 0.3, 0.7), rel=1e-5)
    big = mask * 200
    assert read_volume(write_volume(tmp_path / "big.tif", big)).data.dtype == np.uint16
    with pytest.raises(ValueError, match="neg.tif"):
        write_volume(tmp_path / "neg.tif", -mask)


def test_ome_tiff_physical_size(tmp_path):
    path = tmp_path / "ome.ome.tif"
    data = np.zeros((3, 8, 6), np.uint16)
    metadata = {"axes": "ZYX", "PhysicalSizeZ": 3.0, "PhysicalSizeY": 0.4, "PhysicalSizeX": 0.2}
    tifffile.imwrite(path, data, ome=True, metadata=metadata)
    vol = read_volume(path)
    assert vol.data.shape == (3, 8, 6)
    assert vol.spacing == pytest.approx((3.0, 0.4, 0.2))


def test_plain_tiff_defaults_to_unit_spacing(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(
        path, np.ones((2, 3, 4), np.uint8), resolution=(300, 300), resolutionunit="INCH"
    )
    assert read_volume(path).spacing == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_axes_and_mask_on_source_grid(tmp_path, nifti_source, suffix):
    src_path, ijk = nifti_source
    vol = read_volume(src_path)
    assert vol.data.shape == (5, 6, 7)
    assert vol.spacing == pytest.approx((2.0, 0.9, 0.8))
    np.testing.assert_array_equal(vol.data, ijk.transpose(2, 1, 0))
    assert vol.data[4, 1, 2] == ijk[2, 1, 4]

    mask = (vol.data % 3).astype(np.int64)
    out = write_volume(tmp_path / f"mask{suffix}", mask, like=vol)
    src, written = nib.load(src_path), nib.load(out)
    np.testing.assert_allclose(written.affine, src.affine)
    assert written.shape == (7, 6, 5)
    assert written.get_data_dtype() == np.uint8
    assert int(written.header["qform_code"]) == int(src.header["qform_code"]) == 1
    assert int(written.header["sform_code"]) == int(src.header["sform_code"]) == 2
    np.testing.assert_allclose(written.header.get_qform(), src.header.get_qform())
    nib_data = np.asanyarray(written.dataobj)
    np.testing.assert_array_equal(nib_data, (ijk % 3).astype(np.uint8))
    np.testing.assert_array_equal(mask, nib_data.transpose(2, 1, 0))


def _write_scaled_nifti(path, raw, slope, inter):
    """Write int16 `raw` with scl_slope/scl_inter by hand (nibabel would rescale on save)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(raw.shape)
    hdr.set_data_dtype(raw.dtype)
    hdr.set_qform(np.diag([1.5, 1.0, 1.0, 1.0]), code="scanner")
    hdr["scl_slope"], hdr["scl_inter"] = slope, inter
    hdr.set_data_offset(352)
    with open(path, "wb") as fh:
        hdr.write_to(fh)
        fh.write(raw.tobytes(order="F"))


def test_nifti_scaled_integers_read_scaled_and_mask_not_rescaled(tmp_path):
    raw = np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2)
    src_path = tmp_path / "scaled.nii"
    _write_scaled_nifti(src_path, raw, 0.5, 10.0)
    assert (nib.load(src_path).dataobj.slope, nib.load(src_path).dataobj.inter) == (0.5, 10.0)

    vol = read_volume(src_path)
    assert vol.spacing == pytest.approx((1.0, 1.0, 1.5))
    np.testing.assert_allclose(vol.data, (raw * 0.5 + 10.0).transpose(2, 1, 0))

    mask = np.zeros(vol.data.shape, np.uint8)
    mask[1, 2, 3] = 3
    out = write_volume(tmp_path / "mask.nii.gz", mask, like=vol)
    written = nib.load(out)
    assert written.get_data_dtype() == np.uint8
    assert (written.dataobj.slope, written.dataobj.inter) == (1.0, 0.0)
    unscaled = written.dataobj.get_unscaled()
    assert unscaled[3, 2, 1] == 3 and unscaled.sum() == 3
    np.testing.assert_allclose(written.affine, nib.load(src_path).affine)


def test_nifti_without_like_uses_spacing(tmp_path):
    data = np.random.default_rng(1).random((3, 4, 5)).astype(np.float32)
    out = write_volume(tmp_path / "img.nii.gz", data, spacing=SPACING)
    written = nib.load(out)
    np.testing.assert_allclose(written.affine, np.diag([0.25, 0.5, 2.5, 1.0]))
    vol = read_volume(out)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.spacing == pytest.approx(SPACING)


def test_nifti_like_with_other_grid_falls_back_to_spacing(tmp_path, nifti_source):
    vol = read_volume(nifti_source[0])
    out = write_volume(tmp_path / "small.nii", np.ones((2, 2, 2), np.uint8), like=vol)
    np.testing.assert_allclose(nib.load(out).affine, np.diag([0.8, 0.9, 2.0, 1.0]), rtol=1e-6)


def test_npy_round_trip(tmp_path):
    data = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    path = write_volume(tmp_path / "arr.npy", data)
    vol = read_volume(path)
    assert vol.data.dtype == np.int32
    np.testing.assert_array_equal(vol.data, data)
    assert vol.spacing == (1.0, 1.0, 1.0)


def test_failed_write_leaves_target_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "mask.tif"
    target.write_bytes(b"previous contents")

    def explode(path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(io.tifffile, "imwrite", explode)
    with pytest.raises(OSError, match="disk full"):
        write_volume(target, np.ones((2, 3, 4), np.uint8))
    assert target.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]


def test_successful_write_leaves_no_temp(tmp_path):
    write_volume(tmp_path / "m.nii.gz", np.ones((2, 3, 4), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["m.nii.gz"]


@pytest.mark.parametrize("name", ["missing.tif", "missing.nii.gz", "missing.npy"])
def test_missing_file(tmp_path, name):
    with pytest.raises(ValueError, match="does not exist") as err:
        read_volume(tmp_path / name)
    assert name in str(err.value)


def test_a_folder_is_named_as_a_folder(tmp_path):
    (tmp_path / "scan.nii.gz").mkdir()
    with pytest.raises(ValueError, match="scan.nii.gz: it is a folder, not a file"):
        read_volume(tmp_path / "scan.nii.gz")


def test_unknown_suffix(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match="image.png"):
        read_volume(path)
    with pytest.raises(ValueError, match="out.jpg"):
        write_volume(tmp_path / "out.jpg", np.zeros((2, 2, 2)))


@pytest.mark.parametrize("name", ["corrupt.tif", "corrupt.nii.gz", "corrupt.nii", "corrupt.npy"])
def test_corrupt_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(2).bytes(1000))
    with pytest.raises(ValueError, match=f"Cannot read .*{name}") as err:
        read_volume(path)
    assert err.value.__cause__ is not None


def test_unwritable_directory(tmp_path):
    path = tmp_path / "no_such_dir" / "mask.tif"
    with pytest.raises(ValueError, match="does not exist") as err:
        write_volume(path, np.zeros((2, 2, 2), np.uint8))
    assert "mask.tif" in str(err.value)
    with pytest.raises(ValueError, match="probs.nii"):
        write_probabilities(tmp_path / "nope" / "probs.nii", np.zeros((2, 2, 2, 2), np.uint8))


def test_bad_spacing_and_shape(tmp_path):
    with pytest.raises(ValueError, match="Spacing"):
        write_volume(tmp_path / "a.tif", np.zeros((2, 2, 2), np.uint8), spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="a.tif"):
        write_volume(tmp_path / "a.tif", np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="p.tif"):
        write_probabilities(tmp_path / "p.tif", np.zeros((2, 2, 2), np.float32))


def test_probabilities_tiff(tmp_path):
    probs = np.random.default_rng(3).random((3, 4, 5, 6), dtype=np.float32)
    path = write_probabilities(tmp_path / "probs.tif", probs, spacing=SPACING)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "ZCYX"
        stored = tif.asarray()
    np.testing.assert_array_equal(stored, probs.transpose(1, 0, 2, 3))
    vol = read_volume(path)
    assert vol.spacing == pytest.approx(SPACING)


def test_probabilities_float16_and_npy(tmp_path):
    probs = np.random.default_rng(4).random((2, 3, 4, 5)).astype(np.float16)
    stored = read_volume(write_probabilities(tmp_path / "p.tif", probs)).data
    np.testing.assert_array_equal(stored, probs.astype(np.float32).transpose(1, 0, 2, 3))
    vol = read_volume(write_probabilities(tmp_path / "p.npy", probs))
    assert vol.data.dtype == np.float16
    np.testing.assert_array_equal(vol.data, probs)


def test_probabilities_nifti_keeps_affine(tmp_path, nifti_source):
    src_path, _ = nifti_source
    vol = read_volume(src_path)
    probs = np.random.default_rng(5).integers(0, 256, (3, *vol.data.shape), dtype=np.uint8)
    out = write_probabilities(tmp_path / "probs.nii.gz", probs, like=vol)
    written = nib.load(out)
    assert written.shape == (7, 6, 5, 3)
    np.testing.assert_allclose(written.affine, nib.load(src_path).affine)
    assert written.header.get_zooms() == pytest.approx((0.8, 0.9, 2.0, 1.0))
    data = np.asanyarray(written.dataobj)
    assert data.dtype == np.uint8
    np.testing.assert_array_equal(data, probs.transpose(3, 2, 1, 0))
    assert data[6, 5, 4, 2] == probs[2, 4, 5, 6]


@pytest.mark.parametrize("name", ["UP.TIF", "UP.NII.GZ", "UP.NPY"])
def test_upper_case_suffix_round_trip(tmp_path, name):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_volume(write_volume(tmp_path / name, data)).data, data)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_the_unit_travels_from_nifti_to_tiff_and_back_and_is_never_guessed(tmp_path):
    image = nib.Nifti1Image(np.zeros((4, 3, 2), np.uint8), np.diag([0.5, 0.5, 2.0, 1.0]))
    image.header.set_xyzt_units("mm")
    nib.save(image, tmp_path / "a.nii.gz")
    source = io.read_volume(tmp_path / "a.nii.gz")
    assert source.unit == "mm"
    io.write_volume(tmp_path / "b.tif", source.data, like=source)
    assert io.read_volume(tmp_path / "b.tif").unit == "mm"
    io.write_volume(tmp_path / "c.nii.gz", source.data, like=io.read_volume(tmp_path / "b.tif"))
    assert io.read_volume(tmp_path / "c.nii.gz").unit == "mm"
    io.write_volume(tmp_path / "d.tif", source.data, spacing=(1, 1, 1))
    assert io.read_volume(tmp_path / "d.tif").unit == ""
