"""The Measure dock in a real napari viewer (needs a display: run under xvfb-run)."""

import os

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (xvfb-run)")


@pytest.fixture
def mask_file(tmp_path):
    data = np.zeros((10, 40, 40), np.uint8)
    data[2:8, 5:25, 5:25] = 1  # 2400 voxels of 2 x 0.5 x 0.5 mm: 1.2 mL
    data[2:4, 30:34, 30:34] = 2
    data[6:8, 30:34, 30:34] = 2
    image = nib.Nifti1Image(data.transpose(2, 1, 0).copy(), np.diag([0.5, 0.5, 2.0, 1.0]))
    image.header.set_xyzt_units("mm")
    nib.save(image, tmp_path / "mask.nii.gz")
    return tmp_path / "mask.nii.gz", data


def _dock(make_napari_viewer, path):
    from napari_sparseseg._measure_widget import MeasureWidget

    viewer = make_napari_viewer()
    viewer.open(path, plugin="napari-sparseseg")
    widget = MeasureWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def test_measure_a_nifti_mask_jump_to_an_object_and_export(make_napari_viewer, qtbot, mask_file, tmp_path,
                                                           errors):
    viewer, widget = _dock(make_napari_viewer, mask_file[0])
    layer = viewer.layers[-1]
    assert widget.layer_combo.layer() is layer and widget.unit == "mm"  # from the NIfTI header
    widget.measure()
    qtbot.waitUntil(lambda: widget.measure_button.isEnabled() and bool(widget.objects), timeout=30_000)
    assert widget.class_table.rowCount() == 2 and widget.class_table.item(0, 2).text() == "1.200 mL"
    assert widget.object_table.rowCount() == 3
    widget.object_table.cellClicked.emit(2, 0)  # the second small object, z = 6..7
    assert layer.selected_label == 2
    assert 6 <= viewer.dims.point[0] / 2.0 <= 7  # a slice through the object
    assert viewer.camera.center[-1] == pytest.approx(31.5 * 0.5)
    widget.export_csv(str(tmp_path / "volumes"))
    assert (tmp_path / "volumes.csv").read_text().splitlines()[1].startswith("1,class 1,2400,1200.0")
    assert len((tmp_path / "volumes-objects.csv").read_text().splitlines()) == 4
    assert errors == []


def test_a_renamed_layer_is_still_measured_and_an_unknown_unit_is_said(make_napari_viewer, qtbot, mask_file,
                                                                       errors):
    from napari_sparseseg._measure_widget import MeasureWidget

    viewer = make_napari_viewer()
    layer = viewer.add_labels(mask_file[1], scale=(2.0, 0.5, 0.5), name="mask")
    widget = MeasureWidget(viewer)
    viewer.window.add_dock_widget(widget)
    layer.name = "liver mask"
    assert widget.layer_combo.layer() is layer and widget.unit == ""
    widget.measure()
    qtbot.waitUntil(lambda: widget.measure_button.isEnabled() and bool(widget.objects), timeout=30_000)
    assert "unknown unit" in widget.status.text() and errors == []


def test_an_image_layer_posing_as_labels_is_refused_in_one_sentence(make_napari_viewer, errors):
    from napari_sparseseg._measure_widget import MeasureWidget

    viewer = make_napari_viewer()
    widget = MeasureWidget(viewer)
    widget.measure()
    assert errors == ["Pick a Labels layer to measure."]
    viewer.add_labels(np.zeros((4, 4), np.uint8), name="flat")
    widget.measure()
    assert "2 dimensions" in errors[-1] and widget.measure_button.isEnabled()
