"""Chunked files: OME-Zarr / zarr / TIFF read lazily, OME-Zarr written atomically with spacing."""

import json
import pickle

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from napari_sparseseg.core import zarr_io
from napari_sparseseg.core.inference import Prediction


def _prediction(shape=(10, 24, 20), k=3):
    labels = (np.arange(np.prod(shape)) % k).reshape(shape).astype(np.uint8)
    probs = np.stack([labels * 10 + c for c in range(k)]).astype(np.uint8)
    return Prediction(da.from_array(labels, chunks=(4, 16, 16)), da.from_array(probs, chunks=(k, 4, 16, 16)))


def test_zarr_round_trip_keeps_values_spacing_and_ome_metadata(tmp_path):
    result = _prediction()
    zarr_io.store_prediction(result, tmp_path / "mask.zarr", tmp_path / "probs.zarr", spacing=(2.5, 0.5, 0.7),
                             unit="micrometer", class_names=("background", "tubule", "lumen"))
    mask = zarr_io.open_lazy(tmp_path / "mask.zarr")
    assert mask.spacing == (2.5, 0.5, 0.7) and mask.unit == "micrometer" and mask.shape == (10, 24, 20)
    np.testing.assert_array_equal(np.asarray(mask.dask()), result.labels.compute())
    attrs = json.loads((tmp_path / "mask.zarr" / ".zattrs").read_text())
    scale = attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    assert scale == {"type": "scale", "scale": [2.5, 0.5, 0.7]}
    assert [a["name"] for a in attrs["multiscales"][0]["axes"]] == ["z", "y", "x"]
    assert attrs["multiscales"][0]["name"] == "mask.zarr"  # not the temporary folder it was written in
    assert attrs["sparseseg"]["class_names"] == ["background", "tubule", "lumen"]
    assert zarr.open_array(str(tmp_path / "mask.zarr" / "0"), mode="r").chunks == (4, 16, 16)
    probs = zarr.open_group(str(tmp_path / "probs.zarr"), mode="r")
    assert probs.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [
        1.0, 2.5, 0.5, 0.7]
    np.testing.assert_array_equal(probs["0"][:], result.probabilities.compute())
    level0 = zarr_io.open_lazy(tmp_path / "mask.zarr" / "0")  # the array itself: spacing from its group
    assert level0.spacing == (2.5, 0.5, 0.7)


def test_ome_zarr_0_5_levels_and_leading_axes(tmp_path):
    group = zarr.open_group(str(tmp_path / "image.zarr"), mode="w", zarr_format=3)
    data = np.arange(2 * 8 * 12 * 10, dtype=np.uint16).reshape(1, 2 * 8, 12, 10)
    group.create_array("s0", data=data, chunks=(1, 4, 6, 5))
    group.create_array("s1", data=data[:, ::2, ::2, ::2], chunks=(1, 4, 6, 5))
    datasets = [{"path": p, "coordinateTransformations": [{"type": "scale", "scale": [1, s, s / 2, s / 2]}]}
                for p, s in (("s0", 1.0), ("s1", 2.0))]
    space = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    axes = [{"name": "c", "type": "channel"}, *space]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
    full, half = zarr_io.open_lazy(tmp_path / "image.zarr"), zarr_io.open_lazy(tmp_path / "image.zarr", 1)
    assert full.shape == (16, 12, 10) and full.spacing == (1.0, 0.5, 0.5)
    assert half.shape == (8, 6, 5) and half.spacing == (2.0, 1.0, 1.0)
    np.testing.assert_array_equal(np.asarray(half.dask((3, 6, 5))), data[0, ::2, ::2, ::2])
    with pytest.raises(ValueError, match="has 2 resolution level"):
        zarr_io.open_lazy(tmp_path / "image.zarr", 2)


def test_large_tiff_is_read_lazily_with_its_spacing_and_pickles_as_a_path(tmp_path):
    data = np.random.default_rng(0).integers(0, 4000, (12, 40, 30), dtype=np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.4, 1 / 0.4),
                     metadata={"spacing": 3.0, "unit": "um", "axes": "ZYX"})
    volume = zarr_io.open_lazy(path)
    assert volume.spacing == pytest.approx((3.0, 0.4, 0.4)) and volume.nbytes == data.nbytes
    array = volume.dask((5, 16, 16))
    assert array.chunks == ((5, 5, 2), (16, 16, 8), (16, 14))
    assert array[7:9, 3:20, 29].compute().tolist() == data[7:9, 3:20, 29].tolist()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(array)).compute(), data)
    assert zarr_io.array_nbytes(path) == data.nbytes


@pytest.mark.parametrize(
    "make, message",
    [(lambda p: zarr.open_group(str(p), mode="w"), "without OME-Zarr multiscales"),
     (lambda p: zarr.create_array(str(p), shape=(2, 4, 4, 4), dtype="u1"), "leading axes"),
     (lambda p: p.mkdir(), "not a zarr array")],
)
def test_unreadable_zarr_inputs_say_what_to_do(tmp_path, make, message):
    make(tmp_path / "in.zarr")
    with pytest.raises(ValueError, match=message):
        zarr_io.open_lazy(tmp_path / "in.zarr")


def test_output_is_atomic_and_refuses_non_zarr_targets(tmp_path):
    zarr_io.store_prediction(_prediction(), tmp_path / "mask.zarr", spacing=(1, 1, 1))
    before = np.asarray(zarr_io.open_lazy(tmp_path / "mask.zarr").dask())

    def fail(job):
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        zarr_io.store_prediction(_prediction(), tmp_path / "mask.zarr", compute=fail)
    np.testing.assert_array_equal(np.asarray(zarr_io.open_lazy(tmp_path / "mask.zarr").dask()), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.zarr"]  # no temporary left behind
    (tmp_path / "data.zarr").mkdir()
    (tmp_path / "data.zarr" / "notes.txt").write_text("mine")
    targets = ((tmp_path / "mask.tif", r"name it \*.zarr"), (tmp_path / "data.zarr", "not a zarr"))
    for target, message in targets:
        with pytest.raises(ValueError, match=message):
            zarr_io.store_prediction(_prediction(), target)


def test_split_level():
    assert zarr_io.split_level("image.zarr:2") == ("image.zarr", 2)
    assert zarr_io.split_level("image.zarr") == ("image.zarr", None)
    assert zarr_io.split_level("C:image.zarr") == ("C:image.zarr", None)
