"""The dock widget driven in a real napari viewer (needs a display: run under xvfb-run)."""

import os
import time

import nibabel as nib
import numpy as np
import pytest

from napari_sparseseg.core import io
from napari_sparseseg.core.config import PRESETS, InferConfig, ModelConfig, Preset, TrainConfig
from napari_sparseseg.core.synthetic import make_sample
from napari_sparseseg.core.uncertainty import painted_planes

pytestmark = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (xvfb-run)")


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    tiny = Preset(ModelConfig(features=(4, 8)), TrainConfig(patch_size=(8, 16, 16)),
                  InferConfig(window=(8, 32, 32)))
    monkeypatch.setitem(PRESETS, "tiny", tiny)


def _viewer_with_widget(make_napari_viewer):
    from napari_sparseseg._widget import SparseSegWidget

    viewer = make_napari_viewer()
    sample = make_sample(shape=(12, 40, 36), slices_per_axis=1, seed=4)
    viewer.add_image(sample.image, name="tubules", scale=sample.spacing)
    widget = SparseSegWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.options.preset_combo.addItem("tiny")
    widget.options.preset_combo.setCurrentText("tiny")
    widget.options.device_combo.setCurrentText("cpu")
    return viewer, widget, sample


@pytest.fixture
def setup(make_napari_viewer, errors):
    viewer, widget, sample = _viewer_with_widget(make_napari_viewer)
    yield viewer, widget, sample
    widget.worker.close()


def _wait_idle(qtbot, widget, timeout=180_000):
    qtbot.waitUntil(lambda: not widget.worker.busy and not widget._poll_timer.isActive(), timeout=timeout)


def _train_briefly(qtbot, widget, sample):
    """New annotation layer, paint the sample's planes, train 3 iterations; returns the layer."""
    ann = widget.inputs.new_annotation_layer()
    _paint(ann, sample.annotation)
    widget.options.iterations_spin.setValue(3)
    widget.train()
    _wait_idle(qtbot, widget)
    return ann


def _hex(rgba) -> str:
    from qtpy.QtGui import QColor

    return QColor.fromRgbF(*[float(c) for c in rgba]).name()


def _paint(layer, annotation):
    layer.data[...] = annotation  # the test plays the user: painting writes the layer
    layer.events.data(value=layer.data)


def test_annotate_train_stop_continue_predict_next_slice(qtbot, setup, errors, monkeypatch):
    from napari_sparseseg import _layers

    viewer, widget, sample = setup
    previews, show_plane = [], _layers.show_prediction_plane
    monkeypatch.setattr(_layers, "show_prediction_plane", lambda *a: previews.append(a) or show_plane(*a))
    ann = widget.inputs.new_annotation_layer()
    assert ann.data.shape == sample.image.shape and tuple(ann.scale) == tuple(sample.spacing)
    assert widget.inputs.class_table.names() == ["background", "class 1"]
    swatches = [widget.inputs.class_table.cellWidget(row, 2).styleSheet() for row in range(2)]
    assert swatches == [f"background-color: {_hex(ann.get_color(value))};" for value in (1, 2)]
    widget.inputs.add_class()
    assert widget.inputs.class_table.rowCount() == 3
    _paint(ann, sample.annotation)
    qtbot.waitUntil(lambda: "xy (z): 1 painted" in widget.slice_list.item(0).text(), timeout=5000)
    before = ann.data.copy()

    widget.options.iterations_spin.setValue(100_000)
    widget.options.time_spin.setValue(600)
    widget.options.preview_spin.setValue(0.5)
    widget.go_to(1, 20)  # look at the xz plane y = 20 while training
    widget.train()
    assert widget.worker.busy and not errors
    qtbot.waitUntil(lambda: len(widget.loss_plot.values) >= 2, timeout=120_000)
    qtbot.waitUntil(lambda: "tubules prediction" in viewer.layers, timeout=60_000)
    assert widget.worker.busy  # the live preview arrived before training ended
    assert previews[0][2:4] == (1, 20)  # the plane on screen
    widget.stop()
    _wait_idle(qtbot, widget)
    assert widget.session.model is not None and not errors
    assert widget.train_button.text() == "Continue training"
    prediction = viewer.layers["tubules prediction"]
    assert prediction.data.shape == sample.image.shape and tuple(prediction.scale) == tuple(sample.spacing)
    np.testing.assert_array_equal(ann.data, before)  # the annotation layer is never written

    first_model = widget.session.model
    widget.options.iterations_spin.setValue(3)
    widget.train()  # continues from the current weights
    _wait_idle(qtbot, widget)
    assert widget.session.model != first_model and not errors
    assert viewer.layers["tubules prediction"] is prediction  # updated in place

    axis, index = widget.results.next_slice()
    assert viewer.dims.order[0] == axis
    assert index not in painted_planes(ann.data)[axis] and not errors
    assert round(viewer.dims.point[axis] / ann.scale[axis]) == index
    assert viewer.layers.selection.active is ann and ann.mode == "paint"


def test_save_load_predict_export_and_evaluate(qtbot, setup, errors, tmp_path):
    viewer, widget, sample = setup
    _train_briefly(qtbot, widget, sample)
    widget.results.save_model(str(tmp_path / "m.pt"))

    widget.session.model = None
    widget.results.load_model(str(tmp_path / "m.pt"))
    _wait_idle(qtbot, widget)  # the worker reads the file and reports its classes
    assert widget.session.model == (tmp_path / "m.pt").read_bytes()
    assert widget.results.predict_button.isEnabled()
    viewer.layers.remove("tubules prediction")
    widget.predict()
    _wait_idle(qtbot, widget)
    assert "tubules prediction" in viewer.layers and not errors

    widget.results.export_prediction(str(tmp_path / "mask.tif"))
    widget.results.export_prediction(str(tmp_path / "mask.nii.gz"))
    assert nib.load(tmp_path / "mask.nii.gz").shape == sample.image.shape[::-1]
    assert nib.load(tmp_path / "mask.nii.gz").header.get_zooms() == sample.spacing[::-1]
    tiff = io.read_volume(tmp_path / "mask.tif")
    assert tiff.data.shape == sample.image.shape and tiff.spacing == pytest.approx(sample.spacing)
    np.testing.assert_array_equal(tiff.data, viewer.layers["tubules prediction"].data)
    viewer.add_labels(sample.truth, name="truth", scale=sample.spacing)
    evaluation = widget.results.evaluation
    evaluation.truth_combo.setCurrentText("truth")
    evaluation.evaluate()  # in a thread: the viewer stays responsive
    qtbot.waitUntil(lambda: evaluation.metrics is not None, timeout=30_000)
    assert set(evaluation.metrics["classes"]) == {"background", "class 1", "class 2"}
    table = evaluation.metrics_table
    assert table.rowCount() == 4 and table.verticalHeaderItem(3).text() == "mean" and not errors
    assert table.item(3, 0).text() == f"{evaluation.metrics['mean_foreground']['dice']:.3f}"
    # the dock fits a 1366×768 laptop screen, with the metrics shown: narrow, and it scrolls
    assert widget.maximumWidth() <= 420 and widget.minimumSizeHint().width() <= 420
    assert widget.minimumSizeHint().height() < 500

    widget.results.load_model(str(tmp_path / "mask.tif"))
    _wait_idle(qtbot, widget)
    assert errors and "not a napari-sparseseg model" in errors[-1]
    assert widget.session.model == (tmp_path / "m.pt").read_bytes()  # the good model stays


def test_train_leaves_the_users_layer_active_and_the_pickers_skip_the_plugins_layers(
        qtbot, setup, errors, tmp_path, monkeypatch):
    from napari_sparseseg.core.events import ModelReady, PredictionReady, Progress

    viewer, widget, sample = setup
    infos = []
    for module in ("_widget", "_requests"):
        monkeypatch.setattr(f"napari_sparseseg.{module}.show_info", infos.append)
    assert not (widget.results.next_button.isEnabled() or widget.results.export_button.isEnabled()
                or widget.results.evaluation.evaluate_button.isEnabled())  # nothing to act on yet
    ann = widget.inputs.new_annotation_layer()
    _paint(ann, sample.annotation)
    ann.mode, ann.selected_label = "paint", 3
    widget.options.iterations_spin.setValue(3)
    widget.train()  # adds the prediction layer at once
    assert viewer.layers.selection.active is ann and ann.mode == "paint" and ann.selected_label == 3
    _wait_idle(qtbot, widget)
    prediction = viewer.layers["tubules prediction"]
    assert viewer.layers.selection.active is ann and ann.mode == "paint" and not errors
    assert widget.results.next_button.isEnabled() and widget.results.export_button.isEnabled()
    labels = [widget.annotation_combo.itemText(i) for i in range(widget.annotation_combo.count())]
    truth_combo = widget.results.evaluation.truth_combo
    truths = [truth_combo.itemText(i) for i in range(truth_combo.count())]
    assert prediction.name not in labels + truths

    uncertainty = widget.session.uncertainty
    early = PredictionReady(np.zeros_like(prediction.data), np.zeros((3, *prediction.data.shape), np.uint8),
                            None, early=True)  # a next round's early answer: only its labels count
    widget._on_prediction(early)
    assert widget.session.uncertainty is uncertainty is not None and not prediction.data.any()
    assert widget.results.next_button.isEnabled() and "First answer" in widget.status.text()

    viewer.layers.selection.active = prediction
    widget.results.next_slice()  # back on the annotation layer, brush in hand
    assert viewer.layers.selection.active is ann and ann.mode == "paint"

    viewer.layers.remove(ann)  # the picker must not fall back to the prediction
    assert widget.annotation_combo.layer() is None
    truth = viewer.add_labels(sample.truth + 1, name="truth mask", scale=sample.spacing)
    widget.annotation_combo.select(truth)
    widget.train()
    _wait_idle(qtbot, widget)
    assert any("looks like a full mask" in m for m in infos)

    widget.results.save_model(str(tmp_path / "model"))  # no suffix: the one Load model lists is added
    widget.results.export_prediction(str(tmp_path / "mask"))
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "mask.tif").is_file() and not errors

    widget.stop()  # the status says so until the model arrives, whatever progress comes first
    widget._on_progress(Progress(7, 0.5, 1.0, 1e5, 100))
    assert widget.status.text().startswith("Stopping")
    widget._on_model(ModelReady(widget.session.model, ("background", "lumen", "wall"), 5, "time"))
    assert "Only 5 iterations" in widget.status.text() and "Continue training" in widget.status.text()
    widget._on_model(ModelReady(widget.session.model, ("background", "lumen", "wall"), 1242, "passes"))
    assert "paint or correct more slices" in widget.status.text() and "Only" not in widget.status.text()
    assert "the trees'" not in widget.status.text()
    widget._on_model(ModelReady(widget.session.model, ("background", "lumen", "wall"), 90, "time", True))
    assert "this answer is the trees'" in widget.status.text() and "train longer" in widget.status.text()


def test_a_surprise_about_the_result_is_a_warning(qtbot, setup, errors, monkeypatch):
    _, widget, sample = setup
    warnings = []
    monkeypatch.setattr("napari_sparseseg._widget.show_warning", warnings.append)
    ann = _train_briefly(qtbot, widget, sample)
    assert not warnings and not errors
    ann.data = np.where(ann.data == 3, 0, ann.data)  # continue without painting the wall
    widget.train()
    _wait_idle(qtbot, widget)
    assert len(warnings) == 1 and "keeps class(es) class 2 from before" in warnings[0] and not errors


def test_renamed_layers_keep_working(qtbot, setup, errors, tmp_path):
    viewer, widget, sample = setup
    ann = _train_briefly(qtbot, widget, sample)
    image, prediction = viewer.layers["tubules"], viewer.layers["tubules prediction"]
    image.name, prediction.name, ann.name = "scan", "my result", "my strokes"
    assert widget.image_combo.layer() is image and widget.annotation_combo.layer() is ann
    widget.predict()
    _wait_idle(qtbot, widget)
    assert viewer.layers["my result"] is prediction and "scan prediction" not in viewer.layers
    widget.results.export_prediction(str(tmp_path / "mask.tif"))
    np.testing.assert_array_equal(io.read_volume(tmp_path / "mask.tif").data, prediction.data)
    assert widget.results.next_slice() is not None and not errors
    image.scale = (4.0, 1.5, 1.5)  # the user corrects the voxel size after predicting
    assert tuple(prediction.scale) == (4.0, 1.5, 1.5)


@pytest.mark.parametrize("case", ["nothing painted", "one class", "2D image", "RGB", "other shape"])
def test_bad_input_is_a_notification(qtbot, setup, errors, case):
    viewer, widget, sample = setup
    ann = widget.inputs.new_annotation_layer()
    if case == "one class":
        _paint(ann, np.where(sample.annotation > 0, 1, 0))
    elif case in ("2D image", "RGB"):
        data = np.zeros((20, 20), np.float32) if case == "2D image" else np.zeros((20, 20, 3), np.uint8)
        viewer.add_image(data, name="flat", rgb=case == "RGB")
        widget.image_combo.setCurrentText("flat")
    elif case == "other shape":
        viewer.add_labels(np.zeros((3, 4, 5), np.uint8), name="small")
        widget.annotation_combo.setCurrentText("small")
    widget.train()
    assert len(errors) == 1 and not widget.worker.busy
    expected = {"nothing painted": "no painted voxel", "one class": "only label 1",
                "2D image": "2 dimensions", "RGB": "RGB", "other shape": "shape"}[case]
    assert expected in errors[0]


def test_crash_in_training_is_a_notification_and_the_last_model_survives(qtbot, setup, errors):
    import signal

    viewer, widget, sample = setup
    ann = _train_briefly(qtbot, widget, sample)
    model, painted = widget.session.model, ann.data.copy()

    widget.options.iterations_spin.setValue(100_000)
    widget.options.time_spin.setValue(600)
    widget.train()
    qtbot.waitUntil(lambda: len(widget.loss_plot.values) >= 1, timeout=120_000)
    os.kill(widget.worker._process.pid, signal.SIGKILL)  # as the kernel's OOM killer would
    _wait_idle(qtbot, widget)
    assert len(errors) == 1 and "ended unexpectedly" in errors[0]
    assert widget.session.model == model and widget.results.predict_button.isEnabled()
    np.testing.assert_array_equal(ann.data, painted)

    widget.predict()  # a fresh child process takes over
    _wait_idle(qtbot, widget)
    assert len(errors) == 1 and "tubules prediction" in viewer.layers
    shown = viewer.layers["tubules prediction"].data.copy()

    widget.predict()
    os.kill(widget.worker._process.pid, signal.SIGKILL)  # killed while predicting
    _wait_idle(qtbot, widget)
    assert len(errors) == 2 and "ended unexpectedly" in errors[1]
    np.testing.assert_array_equal(viewer.layers["tubules prediction"].data, shown)
    assert widget.session.model == model and widget.results.predict_button.isEnabled()
    np.testing.assert_array_equal(ann.data, painted)


def test_sample_data_opens_ready_to_train(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sparseseg", "tubules")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sparseseg", "Sparse segmentation")
    assert widget.image_combo.currentText() == "tubules"
    assert widget.annotation_combo.currentText() == "tubules annotations"
    assert widget.inputs.class_table.names() == ["background", "tubule lumen", "tubule wall"]
    assert [len(p) for p in painted_planes(viewer.layers["tubules annotations"].data)] == [2, 2, 2]
    widget.worker.close()


def test_faults_are_one_notification_and_lose_nothing(qtbot, setup, errors, tmp_path, monkeypatch):
    import errno

    from napari_sparseseg.core import io as core_io

    viewer, widget, sample = setup
    ann = _train_briefly(qtbot, widget, sample)
    model = widget.session.model

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(core_io, "_write_tiff", full_disk)
    widget.results.export_prediction(str(tmp_path / "mask.tif"))
    assert "no space left on device" in errors[-1] and list(tmp_path.iterdir()) == []
    widget.results.save_model(str(tmp_path / "gone" / "m.pt"))
    assert "does not exist" in errors[-1] and len(errors) == 2

    widget.options.iterations_spin.setValue(100_000)
    widget.options.time_spin.setValue(600)
    widget.train()
    widget.train()  # a second click while the first job runs
    assert "busy" in errors[-1] and len(errors) == 3
    qtbot.waitUntil(lambda: len(widget.loss_plot.values) >= 1, timeout=120_000)
    painted = ann.data.copy()
    viewer.layers.remove(ann)  # the user deletes the annotations mid-training
    widget.stop()
    _wait_idle(qtbot, widget)
    assert len(errors) == 3 and widget.session.model not in (None, model)  # the round's model arrived
    np.testing.assert_array_equal(ann.data, painted)  # and the annotations were never written


def test_the_shown_dock_starts_its_child_before_train_and_ends_it_on_close(qtbot, make_napari_viewer, errors):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-sparseseg", "tubules")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sparseseg", "Sparse segmentation")
    qtbot.waitUntil(lambda: widget.worker._process is not None, timeout=10_000)
    child = widget.worker._process
    assert child.is_alive() and not widget.worker.busy  # importing the engine while the user paints
    widget.options.preset_combo.addItem("tiny")
    widget.options.preset_combo.setCurrentText("tiny")
    widget.options.iterations_spin.setValue(2)
    widget.train()
    _wait_idle(qtbot, widget)
    assert widget.worker._process is child and "tubules prediction" in viewer.layers and not errors
    viewer.window.remove_dock_widget(widget)  # what the dock's close button does
    deadline = time.monotonic() + 15
    while child.is_alive() and time.monotonic() < deadline:
        qtbot.wait(100)
    assert not child.is_alive()


@pytest.mark.parametrize("close", ["the viewer", "the dock"])
def test_closing_mid_training_ends_the_child(qtbot, make_napari_viewer, errors, close):
    viewer, widget, sample = _viewer_with_widget(make_napari_viewer)
    viewer.add_labels(sample.annotation, name="ann", scale=sample.spacing)
    widget.annotation_combo.setCurrentText("ann")
    widget.options.iterations_spin.setValue(100_000)
    widget.train()
    qtbot.waitUntil(lambda: len(widget.loss_plot.values) >= 1, timeout=120_000)
    process = widget.worker._process
    if close == "the dock":
        viewer.window.remove_dock_widget(widget)  # what the dock's close button does
    else:
        viewer.close()
    deadline = time.monotonic() + 15
    while process.is_alive() and time.monotonic() < deadline:
        qtbot.wait(100)
    assert not process.is_alive() and not widget.worker.busy


def test_every_control_has_a_tooltip(setup):
    from qtpy.QtWidgets import QAbstractSpinBox, QCheckBox, QComboBox, QListWidget, QPushButton, QTableWidget

    widget = setup[1]
    widget.inputs.new_annotation_layer()  # fills the class table (its colour swatches are buttons too)
    kinds = (QPushButton, QCheckBox, QAbstractSpinBox, QComboBox, QTableWidget, QListWidget)
    controls = [c for kind in kinds for c in widget.findChildren(kind)]
    missing = [c.text() if hasattr(c, "text") else type(c).__name__ for c in controls if not c.toolTip()]
    assert len(controls) >= 25 and not missing


def _key(qtbot, viewer, letter: str) -> None:
    """Shift+letter on the canvas, as a user presses it."""
    from qtpy.QtCore import Qt

    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, getattr(Qt.Key, f"Key_{letter}"), Qt.KeyboardModifier.ShiftModifier)


def test_shortcuts_undo_a_round_model_location_and_unpainted_scores(qtbot, setup, errors, tmp_path):
    viewer, widget, sample = setup
    ann = _train_briefly(qtbot, widget, sample)
    first, results = widget.session.model, widget.results
    assert results.model_label.text() == "Model in memory only (not saved)."
    assert not results.undo_button.isEnabled()  # nothing before the first round

    _key(qtbot, viewer, "T")  # Continue training
    assert widget.worker.busy
    _wait_idle(qtbot, widget)
    second = widget.session.model
    assert second != first and results.undo_button.isEnabled() and not errors
    results.undo_button.click()
    assert widget.session.model == first and widget.worker.busy  # predicting with the restored model
    _wait_idle(qtbot, widget)
    assert not results.undo_button.isEnabled() and not errors

    viewer.layers.selection.active = widget.session.prediction(viewer.layers["tubules"])
    _key(qtbot, viewer, "N")  # next slice to annotate: the annotation layer, ready to paint
    assert viewer.layers.selection.active is ann and ann.mode == "paint"
    _key(qtbot, viewer, "Y")
    assert viewer.dims.order[0] == 1  # xz planes
    _key(qtbot, viewer, "X")
    assert viewer.dims.order[0] == 2

    results.save_model(str(tmp_path / "round1"))
    assert results.model_label.text() == f"Model saved in {tmp_path / 'round1.pt'}."
    viewer.add_labels(sample.truth, name="truth", scale=sample.spacing)
    evaluation = results.evaluation
    evaluation.truth_combo.setCurrentText("truth")
    evaluation.unpainted_check.setChecked(True)
    evaluation.evaluate()
    qtbot.waitUntil(lambda: evaluation.metrics is not None, timeout=30_000)
    assert evaluation.metrics["n_voxels"] == int((ann.data == 0).sum()) < ann.data.size
    assert "unpainted voxels" in evaluation.metrics_label.text() and not errors

    viewer.window.remove_dock_widget(widget)  # closing the dock unbinds its keys
    _key(qtbot, viewer, "T")
    assert not widget.worker.busy


def test_remove_a_class_unpaints_its_strokes_after_asking(qtbot, setup, errors, monkeypatch):
    from napari_sparseseg import _inputs_panel

    _, widget, sample = setup
    ann = widget.inputs.new_annotation_layer()
    widget.inputs.add_class()  # background, class 1, class 2: values 1, 2, 3
    _paint(ann, sample.annotation)
    before, wall_colour = ann.data.copy(), ann.get_color(3)
    widget.inputs.class_table.setCurrentCell(1, 1)  # class 1 (value 2)
    asked = []
    monkeypatch.setattr(_inputs_panel, "ask_yes", lambda *a: asked.append(a[2]) or False)
    widget.inputs.remove_class()  # the user answers No
    assert asked and f"{int((before == 2).sum()):,} voxels" in asked[0]
    np.testing.assert_array_equal(ann.data, before)

    monkeypatch.setattr(_inputs_panel, "ask_yes", lambda *a: True)
    widget.inputs.remove_class()
    expected = np.where(before == 2, 0, np.where(before == 3, 2, before))
    np.testing.assert_array_equal(ann.data, expected)  # no gap: class 2 is value 2 now
    assert widget.inputs.class_table.names() == ["background", "class 2"] and not errors
    np.testing.assert_allclose(ann.get_color(2), wall_colour)  # its colour moved with it

    widget.inputs.class_table.setCurrentCell(0, 1)
    widget.inputs.remove_class()
    assert len(errors) == 1 and "not background" in errors[0]
    np.testing.assert_array_equal(ann.data, expected)


@pytest.mark.parametrize("close", ["the dock", "the viewer"])
def test_closing_keeps_an_unsaved_model(qtbot, setup, errors, recovery_in_tmp, monkeypatch, close):
    viewer, widget, sample = setup
    warnings = []
    monkeypatch.setattr("napari_sparseseg._results_panel.show_warning", warnings.append)
    _train_briefly(qtbot, widget, sample)
    model, session = widget.session.model, widget.session
    if close == "the dock":
        viewer.window.remove_dock_widget(widget)
    else:
        viewer.close()
        qtbot.wait(200)
    kept = list(recovery_in_tmp.glob("*.pt"))
    assert len(kept) == 1 and kept[0].read_bytes() == model and not errors
    assert len(warnings) == 1 and str(kept[0]) in warnings[0]
    assert session.where() == f"Model saved in {kept[0]}."
