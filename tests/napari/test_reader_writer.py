"""NIfTI reader and labels writers: axis order, spacing, affine round trip, user errors."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import tifffile

pytest.importorskip("napari")

from napari_sparseseg._metadata import (
    NIFTI_AFFINE,
    NIFTI_HEADER,
    SOURCE_PATH,
    geometry_for,
    volume_like,
)
from napari_sparseseg._reader import get_reader, looks_like_labels
from napari_sparseseg._writer import write_labels, write_labels_nifti, write_labels_tiff
from napari_sparseseg.core import io

SHAPE_IJK = (7, 6, 5)
ZOOMS = (0.8, 0.9, 2.0)


def _oblique_affine() -> np.ndarray:
    """Rotation about z by 20 degrees, zooms (0.8, 0.9, 2.0), offsets."""
    t = np.deg2rad(20)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(ZOOMS)
    affine[:3, 3] = (-12.5, 40.0, 7.25)
    return affine


def _save(path, data, affine=None):
    img = nib.Nifti1Image(data, _oblique_affine() if affine is None else affine)
    img.set_qform(img.affine, code="scanner")
    img.set_sform(img.affine, code="scanner")
    img.to_filename(path)
    return path


@pytest.fixture
def image_path(tmp_path):
    data = np.random.default_rng(0).normal(size=SHAPE_IJK).astype(np.float32)
    return _save(tmp_path / "scan.nii.gz", data)


def _read(path):
    reader = get_reader(str(path))
    assert callable(reader)
    (layer,) = reader(str(path))
    return layer


def _as_napari_meta(attrs):
    """Attributes the way napari hands them to a writer."""
    return {"scale": attrs["scale"], "metadata": attrs["metadata"], "translate": (0.0, 0.0, 0.0)}


def test_get_reader_accepts_nifti_and_3d_tiffs_only(tmp_path):
    assert get_reader("x.tif") is None  # not there (or not a TIFF): another reader may try
    assert get_reader("x.nii.gz.bak") is None
    assert callable(get_reader("scan.nii.gz"))
    assert callable(get_reader("scan.nii"))
    assert callable(get_reader(["a.nii", "b.NII.GZ"]))
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8))
    io.write_volume(tmp_path / "stack.tif", np.zeros((3, 8, 8), np.uint8))
    assert get_reader(str(tmp_path / "rgb.tif")) is None  # napari's reader handles RGB and 2D
    assert callable(get_reader(str(tmp_path / "stack.tif")))
    assert callable(get_reader(["a.nii", str(tmp_path / "stack.tif")]))


def test_float_nifti_opens_as_image_in_zyx_with_affine(image_path):
    data, attrs, kind = _read(image_path)
    source = nib.load(image_path)
    assert kind == "image" and data.shape == (5, 6, 7)
    assert attrs["name"] == "scan"
    np.testing.assert_allclose(attrs["scale"], (2.0, 0.9, 0.8), rtol=1e-6)
    np.testing.assert_array_equal(data, np.asarray(source.dataobj).T)
    np.testing.assert_allclose(attrs["metadata"][NIFTI_AFFINE], source.affine)
    assert isinstance(attrs["metadata"][NIFTI_HEADER], nib.Nifti1Header)
    assert attrs["metadata"][SOURCE_PATH] == str(image_path)


def test_integer_label_file_opens_as_labels(tmp_path):
    labels = np.random.default_rng(1).integers(0, 3, size=SHAPE_IJK).astype(np.uint8)
    data, attrs, kind = _read(_save(tmp_path / "mask.nii", labels))
    assert kind == "labels" and attrs["name"] == "mask"
    assert set(np.unique(data)) == {0, 1, 2}


def test_ct_like_int16_opens_as_image(tmp_path):
    ct = np.random.default_rng(2).integers(-1000, 2000, size=SHAPE_IJK).astype(np.int16)
    assert _read(_save(tmp_path / "ct.nii.gz", ct))[2] == "image"
    many = np.arange(np.prod(SHAPE_IJK), dtype=np.uint16).reshape(SHAPE_IJK)
    assert _read(_save(tmp_path / "many.nii.gz", many))[2] == "image"


def test_labels_rule_sees_values_the_subsample_misses():
    data = np.zeros((64, 64, 64), np.uint16)
    data[1::2, 1::2, 1::2] = np.arange(32**3).reshape(32, 32, 32) % 200
    assert looks_like_labels(data[::2, ::2, ::2])
    assert not looks_like_labels(data)
    assert not looks_like_labels(np.zeros((4, 4, 4), np.float32))


def test_uppercase_suffix_and_4d(tmp_path):
    data = np.random.default_rng(3).normal(size=(*SHAPE_IJK, 3)).astype(np.float32)
    path = _save(tmp_path / "SERIES.NII.GZ", data)
    layer, attrs, kind = _read(path)
    assert attrs["name"] == "SERIES" and kind == "image"
    assert layer.shape == (3, 5, 6, 7)
    np.testing.assert_allclose(attrs["scale"], (1.0, 2.0, 0.9, 0.8), rtol=1e-6)
    np.testing.assert_array_equal(layer[1], data[..., 1].T)


def test_reader_reads_each_path_of_a_list(image_path, tmp_path):
    other = _save(tmp_path / "b.nii", np.ones(SHAPE_IJK, np.uint8))
    layers = get_reader([str(image_path), str(other)])([str(image_path), str(other)])
    assert [(attrs["name"], kind) for _, attrs, kind in layers] == [("scan", "image"), ("b", "labels")]


@pytest.mark.parametrize("name", ["mask.nii.gz", "mask.nii"])
def test_nifti_labels_get_the_source_grid(image_path, tmp_path, name):
    data, attrs, _ = _read(image_path)
    labels = (data > 0).astype(np.int32) * 2
    (out,) = write_labels_nifti(str(tmp_path / name), labels, _as_napari_meta(attrs))
    written, source = nib.load(out), nib.load(image_path)
    assert written.shape == source.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    np.testing.assert_array_equal(io.read_volume(out).data, labels)


def test_tiff_labels_keep_spacing(image_path, tmp_path):
    data, attrs, _ = _read(image_path)
    labels = (data > 0).astype(np.uint8)
    (out,) = write_labels_tiff(str(tmp_path / "mask.tif"), labels, _as_napari_meta(attrs))
    back = io.read_volume(out)
    np.testing.assert_array_equal(back.data, labels)
    np.testing.assert_allclose(back.spacing, attrs["scale"], rtol=1e-5)
    assert tifffile.imread(out).shape == (5, 6, 7)


def test_labels_without_nifti_source_get_affine_from_scale_and_translate(tmp_path):
    meta = {"scale": (2.0, 0.5, 0.25), "translate": (10.0, 20.0, 30.0), "metadata": {}}
    (out,) = write_labels(str(tmp_path / "m.nii.gz"), np.ones((4, 5, 6), np.uint8), meta)
    expected = np.diag([0.25, 0.5, 2.0, 1.0])
    expected[:3, 3] = (30.0, 20.0, 10.0)
    img = nib.load(out)
    assert img.shape == (6, 5, 4)
    np.testing.assert_allclose(img.affine, expected)
    np.testing.assert_allclose(img.header.get_zooms(), (0.25, 0.5, 2.0))


def test_source_affine_is_not_used_for_another_grid(image_path, tmp_path):
    _, attrs, _ = _read(image_path)
    like = volume_like((3, 3, 3), _as_napari_meta(attrs))
    assert like.data.shape == (3, 3, 3) and like.data.strides == (0, 0, 0)
    np.testing.assert_allclose(like.affine, np.diag([0.8, 0.9, 2.0, 1.0]), rtol=1e-6)


def test_geometry_for_keeps_grid_and_nifti_entries_only(image_path):
    _, attrs, _ = _read(image_path)
    layer_meta = {**_as_napari_meta(attrs), "name": "scan", "opacity": 0.5}
    layer_meta["metadata"] = {**attrs["metadata"], "other": 1}
    geometry = geometry_for(layer_meta)
    assert set(geometry) == {"scale", "translate", "metadata"}
    assert set(geometry["metadata"]) == {NIFTI_AFFINE, NIFTI_HEADER, SOURCE_PATH}
    assert geometry["scale"] == tuple(attrs["scale"])


def test_bad_input_raises_value_error(tmp_path):
    meta = {"scale": (1.0, 1.0, 1.0), "metadata": {}}
    with pytest.raises(ValueError, match="only 3D labels"):
        write_labels(str(tmp_path / "m.tif"), np.zeros((4, 4), np.uint8), meta)
    with pytest.raises(ValueError, match=r"\.tif, \.tiff, \.nii"):
        write_labels(str(tmp_path / "m.png"), np.zeros((2, 4, 4), np.uint8), meta)
    with pytest.raises(ValueError, match="NIFTI writer"):
        write_labels_nifti(str(tmp_path / "m.tif"), np.zeros((2, 4, 4), np.uint8), meta)
    missing = tmp_path / "no" / "such" / "m.nii.gz"
    with pytest.raises(ValueError, match="does not exist") as info:
        write_labels(str(missing), np.zeros((2, 4, 4), np.uint8), meta)
    assert str(missing) in str(info.value)


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="the viewer needs a display (run under xvfb-run)")
def test_an_exported_tiff_mask_reopens_as_labels_on_its_scan(make_napari_viewer, tmp_path):
    mask = np.random.default_rng(3).integers(0, 3, (4, 6, 5)).astype(np.uint8)
    io.write_volume(tmp_path / "mask.tif", mask, spacing=(2.0, 0.5, 0.25))
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "mask.tif"), plugin="napari-sparseseg")
    (layer,) = viewer.layers
    assert layer._type_string == "labels" and layer.name == "mask"
    np.testing.assert_allclose(layer.scale, (2.0, 0.5, 0.25), rtol=1e-5)
    np.testing.assert_array_equal(layer.data, mask)


def test_open_and_save_through_a_viewer(make_napari_viewer, image_path, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(str(image_path), plugin="napari-sparseseg")
    assert len(viewer.layers) == 1
    image = viewer.layers[0]
    np.testing.assert_allclose(image.scale, (2.0, 0.9, 0.8), rtol=1e-6)
    geometry = geometry_for(image.as_layer_data_tuple()[1])
    labels = viewer.add_labels((image.data > 0).astype(np.uint8), name="mask", **geometry)
    out = tmp_path / "mask.nii.gz"
    labels.save(str(out), plugin="napari-sparseseg")
    np.testing.assert_allclose(nib.load(out).affine, nib.load(image_path).affine, atol=1e-6)
