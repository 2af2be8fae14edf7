"""A dask/zarr-backed image: annotate a crop, train on it, predict the whole layer lazily."""

import os
import time

import dask.array as da
import numpy as np
import pytest

from napari_sparseseg import _lazy
from napari_sparseseg.core import checkpoint, zarr_io
from napari_sparseseg.core.config import PRESETS, InferConfig, ModelConfig, Preset, TrainConfig
from napari_sparseseg.core.inference import predict
from napari_sparseseg.core.synthetic import make_sample

pytestmark = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (xvfb-run)")


@pytest.fixture
def large(make_napari_viewer, monkeypatch, tmp_path):
    from napari_sparseseg._widget import SparseSegWidget

    tiny = Preset(ModelConfig(features=(4, 8)), TrainConfig(patch_size=(8, 16, 16)),
                  InferConfig(window=(8, 16, 16)))
    monkeypatch.setitem(PRESETS, "tiny", tiny)
    monkeypatch.setattr(_lazy, "CROP", (8, 24, 24))
    errors = []
    monkeypatch.setattr("napari_sparseseg._widget.show_error", errors.append)
    monkeypatch.setattr("napari_sparseseg._qt_parts.show_error", errors.append)
    sample = make_sample(shape=(16, 48, 40), slices_per_axis=1, seed=5)
    image = da.from_array(sample.image, chunks=(8, 24, 20))
    zarr_io.write_image(tmp_path / "image.zarr", image, spacing=sample.spacing)
    viewer = make_napari_viewer()
    layer = viewer.add_image(da.from_zarr(str(tmp_path / "image.zarr"), component="0"), name="big",
                             scale=sample.spacing)
    widget = SparseSegWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.options.preset_combo.addItem("tiny")
    widget.options.preset_combo.setCurrentText("tiny")
    widget.options.device_combo.setCurrentText("cpu")
    yield viewer, widget, sample, layer, errors
    widget.worker.close()


def _wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.worker.busy and not widget._poll_timer.isActive(), timeout=180_000)


def test_annotate_a_crop_train_and_predict_the_whole_dask_layer(qtbot, large, tmp_path):
    viewer, widget, sample, image, errors = large
    assert _lazy.is_lazy(image)
    ann = widget.inputs.new_annotation_layer()
    assert ann.data.shape == (8, 24, 24)  # a crop around the plane on screen, not the whole volume
    region = _lazy.annotation_region(image, ann)
    ann.data[...] = sample.annotation[region]
    ann.data[0] = 1 + sample.truth[region][0]  # make sure background and tubule are both painted
    ann.events.data(value=ann.data)
    widget.options.iterations_spin.setValue(3)
    widget.train()
    _wait_idle(qtbot, widget)
    assert widget.session.model is not None and not errors
    assert "big prediction" not in viewer.layers  # no full-size in-memory layer was made

    started = time.perf_counter()
    widget.predict(str(tmp_path / "mask.zarr"))
    assert time.perf_counter() - started < 2.0 and widget.worker.busy  # the work is in the child
    _wait_idle(qtbot, widget)
    assert not errors, errors
    layer = viewer.layers["big prediction"]
    assert isinstance(layer.data, da.Array) and layer.data.shape == sample.image.shape
    assert tuple(layer.scale) == pytest.approx(sample.spacing)
    segmenter = checkpoint.from_bytes(widget.session.model)
    reference = predict(segmenter, sample.image)  # the model's own settings: the tiny preset's window
    np.testing.assert_array_equal(np.asarray(layer.data), reference.labels)
    assert zarr_io.open_lazy(tmp_path / "mask.zarr").spacing == pytest.approx(sample.spacing)
    widget.results.export_prediction(str(tmp_path / "mask.tif"))
    assert "already saved as OME-Zarr" in errors[-1]


def test_crop_box_stays_inside_the_volume():
    assert _lazy.crop_box((10, 100, 50), (9.6, 0, 25), (8, 64, 64)) == ((2, 0, 0), (8, 64, 50))
