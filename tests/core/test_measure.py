"""Measurements on analytic shapes: volumes, diameters, counts, soft volumes, bad input."""

import math

import numpy as np
import pytest

from napari_sparseseg.core import measure

SPACING = (2.0, 0.5, 0.5)


def ellipsoid(radii, spacing=SPACING, shape=(40, 160, 160)):
    """Voxel centres inside the ellipsoid with semi-axes ``radii`` (z, y, x) centred on a voxel."""
    centre = [n // 2 for n in shape]
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    total = sum(((g - c) * s / r) ** 2 for g, c, s, r in zip(grids, centre, spacing, radii))
    return (total <= 1).astype(np.uint8)


def test_a_sphere_on_an_anisotropic_grid_has_its_analytic_volume_and_diameters():
    r = 30.0
    row = measure.class_table(ellipsoid((r, r, r)), SPACING)[0]
    assert row["volume"] == pytest.approx(4 / 3 * math.pi * r**3, rel=0.01)
    obj = measure.object_table(ellipsoid((r, r, r)), SPACING)[0]
    for key in ("extent_z", "extent_y", "extent_x", "max_diameter"):
        assert obj[key] == pytest.approx(2 * r, rel=0.02), key
    assert obj["surface_area"] == pytest.approx(4 * math.pi * r**2, rel=0.04)
    assert obj["centroid_z"] == pytest.approx(20 * 2.0) and obj["centroid_x"] == pytest.approx(80 * 0.5)


def test_an_ellipsoid_estimate_matches_the_exact_volume_of_an_ellipsoid():
    radii = (24.0, 36.0, 18.0)
    obj = measure.object_table(ellipsoid(radii), SPACING)[0]
    analytic = 4 / 3 * math.pi * math.prod(radii)
    assert obj["volume"] == pytest.approx(analytic, rel=0.01)
    assert obj["ellipsoid_volume"] == pytest.approx(obj["volume"], rel=0.02)
    assert (obj["extent_z"], obj["extent_y"], obj["extent_x"]) == pytest.approx((48, 72, 36), rel=0.02)
    assert obj["max_diameter"] == pytest.approx(72, rel=0.02)


def test_separate_objects_are_counted_and_corner_contact_depends_on_connectivity():
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    mask[3:5, 3:5, 3:5] = 1  # touches the first cube at one corner only
    mask[7:9, 7:9, 1:3] = 1  # apart
    mask[7:9, 1:3, 7:9] = 2  # another class
    six = measure.object_table(mask, (1, 1, 1))
    assert [(r["class"], r["voxels"]) for r in six] == [(1, 8), (1, 8), (1, 8), (2, 8)]
    joined = measure.object_table(mask, (1, 1, 1), connectivity=26)
    assert sorted(r["voxels"] for r in joined if r["class"] == 1) == [8, 16]
    face = mask.copy()
    face[1:3, 3:5, 1:3] = 1  # shares a face with the first cube: one object in both
    assert sorted(r["voxels"] for r in measure.object_table(face, (1, 1, 1)) if r["class"] == 1) == [8, 8, 16]


def test_soft_volume_and_its_range_come_from_the_probabilities():
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[:2] = 1
    probs = np.zeros((2, 4, 4, 4), np.uint8)
    probs[1, :2] = 255
    probs[1, 2] = 128  # unsure half: counted above 0.25, not above 0.75
    probs[0] = 255 - probs[1]
    row = measure.class_table(mask, (1, 1, 2), ("background", "tumour"), probabilities=probs)[0]
    assert row["name"] == "tumour" and row["volume"] == 64
    assert row["volume_p75"] == 64 and row["volume_p25"] == 96
    assert row["soft_volume"] == pytest.approx(64 + 32 * 128 / 255)


def test_an_empty_mask_reports_zero_volume_for_every_named_class():
    rows = measure.class_table(np.zeros((3, 3, 3), np.uint8), (1, 1, 1), ("background", "liver", "spleen"))
    assert [(r["name"], r["volume"]) for r in rows] == [("liver", 0.0), ("spleen", 0.0)]
    assert measure.object_table(np.zeros((3, 3, 3), np.uint8), (1, 1, 1)) == []


def test_image_statistics_per_class():
    mask = np.zeros((2, 2, 2), np.uint8)
    mask[0] = 1
    image = np.where(mask == 1, 40.0, -1000.0)
    row = measure.class_table(mask, (1, 1, 1), image=image)[0]
    assert row["image_mean"] == 40 and row["image_std"] == 0


def test_follow_up_change_per_class():
    before = [{"class": 1, "name": "tumour", "volume": 1000.0}]
    after = [{"class": 1, "name": "tumour", "volume": 1500.0}, {"class": 2, "name": "node", "volume": 10.0}]
    rows = measure.change_table(before, after)
    assert rows[0]["change"] == 500 and rows[0]["change_percent"] == 50
    assert rows[1]["volume_before"] == 0 and math.isnan(rows[1]["change_percent"])


@pytest.mark.parametrize(("mask", "spacing", "message"), [
    (np.zeros((4, 4), np.uint8), (1, 1, 1), "2 dimensions"),
    (np.full((2, 2, 2), 0.5), (1, 1, 1), "float64 values"),
    (np.full((2, 2, 2), -1, np.int16), (1, 1, 1), "negative labels"),
    (np.zeros((2, 2, 2), np.uint8), (1, 0, 1), "positive numbers"),
    (np.zeros((2, 2, 2), np.uint8), (1, float("nan"), 1), "positive numbers"),
])
def test_bad_input_is_one_sentence(mask, spacing, message):
    with pytest.raises(ValueError, match=message):
        measure.class_table(mask, spacing)


def test_probabilities_on_another_grid_are_refused():
    with pytest.raises(ValueError, match="grid"):
        measure.class_table(np.zeros((2, 2, 2), np.uint8), (1, 1, 1), probabilities=np.zeros((2, 3, 2, 2)))


def test_probabilities_with_too_few_classes_are_refused():
    mask = np.full((2, 2, 2), 2, np.uint8)
    with pytest.raises(ValueError, match="2 classes but the mask has labels up to 2"):
        measure.class_table(mask, (1, 1, 1), probabilities=np.zeros((2, 2, 2, 2)))


def test_readable_volumes():
    assert measure.readable_volume(12345.0, "mm") == "12.345 mL"
    assert measure.readable_volume(1500.0, "um") == "1500 µm³"
    assert measure.readable_volume(2.0, "") == "2 unknown unit³"
