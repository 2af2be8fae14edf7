import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_sparseseg.core.config import TrainConfig
from napari_sparseseg.core.sampling import (
    PatchSampler,
    _reach,
    _sample_at,
    annotation_to_target,
    fit_patch,
    held_apart,
)


def _sampler(ann, patch=(4, 8, 8), spacing=(1.0, 1.0, 1.0), augment=True, seed=0):
    image = np.random.default_rng(seed).normal(size=ann.shape).astype(np.float32)
    target = annotation_to_target(ann)
    return PatchSampler([image], [target], patch, spacing, np.random.default_rng(seed), augment)


def test_every_patch_holds_painted_voxels_and_classes_are_balanced():
    ann = np.zeros((20, 40, 40), np.uint8)
    ann[10] = 1
    ann[10, 5:7, 5:7] = 2  # 4 voxels of the rare class among 1600
    sampler = _sampler(ann)
    seen = np.zeros(2)
    for _ in range(100):
        x, y = sampler.sample(2)
        assert x.shape == (2, 1, 4, 8, 8) and y.shape == (2, 4, 8, 8)
        assert (y >= 0).any(axis=(1, 2, 3)).all()
        seen += [(y == 0).any(), (y == 1).any()]
    assert seen[1] >= 40  # the 4-voxel class appears in about half the batches, not 0.25 %


@pytest.mark.parametrize("rotate", [0.0, 1.0])
def test_held_out_squares_travel_in_patches_but_centre_none_and_split_back(rotate):
    """``hold_out``: whole 16-voxel squares of a painted plane become class + n_classes; no patch is
    centred on them, patches still carry them (turned or not), and ``held_apart`` gives back the
    painted classes, split in two."""
    ann = np.zeros((20, 64, 64), np.uint8)
    ann[10] = 1
    ann[10, 20:40, 20:40] = 2
    target = annotation_to_target(ann)
    sampler = PatchSampler([np.zeros(ann.shape, np.float32)], [target.copy()], (4, 16, 16), (1.0, 1.0, 1.0),
                           np.random.default_rng(0), rotate=rotate)
    assert not sampler.held
    sampler.hold_out(0.3)
    marked = sampler.targets[0]
    assert sampler.held
    learn, held = held_apart(marked, 2)
    squares = (held[10] >= 0).reshape(4, 16, 4, 16).any(axis=(1, 3))
    assert 0 < squares.sum() < 16 and (held[10] >= 0).sum() == 256 * squares.sum()  # whole squares
    np.testing.assert_array_equal(np.maximum(learn, held), target)  # together: the painted classes
    assert not ((learn >= 0) & (held >= 0)).any()
    assert all((marked.ravel()[flat] < 2).all() for _, flat in sampler.centres)
    batches = [sampler.sample(4)[1] for _ in range(20)]
    assert any((y >= 2).any() for y in batches)
    assert all(set(np.unique(y)) <= {-1, 0, 1, 2, 3} for y in batches)
    torch_learn, torch_held = held_apart(torch.from_numpy(marked.astype(np.int64)), 2)
    np.testing.assert_array_equal(torch_held.numpy(), held)
    np.testing.assert_array_equal(torch_learn.numpy(), learn)


def test_partial_slice_and_volume_smaller_than_patch():
    ann = np.zeros((3, 5, 6), np.uint8)
    ann[1, 1:3, 1:4] = 1
    ann[1, 3, 4] = 2
    sampler = _sampler(ann, patch=(8, 8, 8))
    x, y = sampler.sample(3)
    assert x.shape == (3, 1, 8, 8, 8)
    assert set(np.unique(y)) <= {-1, 0, 1}
    assert (y == 1).sum() == 3 and (y == 0).sum() == 18


def test_augmentation_keeps_image_and_target_aligned():
    ann = np.zeros((6, 12, 12), np.uint8)
    ann[3] = 1
    ann[3, 2:5, 7:10] = 2
    image = (ann == 2).astype(np.float32) * 10
    sampler = PatchSampler([image], [annotation_to_target(ann)], (6, 12, 12), (1.0, 1.0, 1.0),
                           np.random.default_rng(1))
    rotations = set()
    for _ in range(40):
        x, y = sampler.sample(1)
        bright = x[0, 0] > x[0, 0].mean() + 2
        assert np.array_equal(bright, y[0] == 1)
        rotations.add(tuple(np.argwhere(y[0] == 1).mean(0).round(1)))
    assert len(rotations) > 4


def test_no_quarter_turns_when_in_plane_spacing_differs():
    ann = np.zeros((4, 8, 8), np.uint8)
    ann[2] = 1
    ann[2, 0, 1:7] = 2  # a horizontal line in the first row
    rows = set()
    sampler = _sampler(ann, patch=(4, 8, 8), spacing=(1.0, 1.0, 2.0))
    for _ in range(40):
        _, y = sampler.sample(1)
        rows.add(tuple(np.unique(np.argwhere(y[0] == 1)[:, 1])))
    assert rows <= {(0,), (7,)}  # flips only: the line never turns vertical


def test_fit_patch_rounds_to_pool_multiples():
    assert fit_patch((32, 64, 64), (5, 100, 30), (2, 4, 4)) == (6, 64, 32)
    assert fit_patch((30, 62, 64), (100, 100, 100), (2, 4, 4)) == (30, 64, 64)


def test_intensities_are_kept_unless_intensity_augmentation_is_asked_for():
    ann = np.zeros((6, 12, 12), np.uint8)
    ann[3] = 1
    image = np.full(ann.shape, 2.0, np.float32)
    target = annotation_to_target(ann)
    plain = PatchSampler([image], [target], (6, 12, 12), (1.0, 1.0, 1.0), np.random.default_rng(0))
    assert all(np.all(plain.sample(1)[0] == 2.0) for _ in range(10))
    varied = PatchSampler([image], [target], (6, 12, 12), (1.0, 1.0, 1.0), np.random.default_rng(0),
                          intensity=0.2)
    values = np.array([varied.sample(1)[0].mean() for _ in range(20)])
    assert values.min() >= 2 * 0.8 - 0.2 and values.max() <= 2 * 1.2 + 0.2
    assert values.std() > 0.05


def _ellipse_volume():
    """Every voxel painted: class 1 inside a long, thin ellipse (along x) extruded along z,
    background elsewhere; the image holds the class as intensity."""
    _, y, x = np.mgrid[:8, :40, :40]
    inside = ((y - 20) / 3) ** 2 + ((x - 20) / 12) ** 2 < 1
    ann = np.where(inside, 2, 1).astype(np.uint8)
    return ann.astype(np.float32) - 1, annotation_to_target(ann)


def _slant(mask: np.ndarray) -> float:
    """Angle (degrees, 0..90) between the long axis of ``mask``'s voxels (y, x) and the nearest
    image axis."""
    ys, xs = np.argwhere(mask).T
    angle = 0.5 * np.degrees(np.arctan2(2 * np.cov(ys, xs)[0, 1], np.var(ys) - np.var(xs)))
    return float(min(angle % 90, 90 - angle % 90))


@pytest.mark.parametrize("elastic", [0.0, 3.0])
def test_turned_and_scaled_patches_keep_image_and_labels_together(elastic):
    image, target = _ellipse_volume()
    sampler = PatchSampler([image], [target], (8, 24, 24), (1.0, 1.0, 1.0), np.random.default_rng(0),
                           rotate=1.0, elastic=elastic)
    slants = []
    for _ in range(30):
        x, y = sampler.sample(1)
        painted = y[0] >= 0
        assert x.shape == (1, 1, 8, 24, 24) and set(np.unique(y)) <= {-1, 0, 1}
        # trilinear image, nearest labels: they may disagree only on the ellipse's edge
        assert np.mean(np.abs(x[0, 0][painted] - y[0][painted]) < 0.5) > 0.95
        if (y[0, 4] == 1).sum() > 20:
            slants.append(_slant(y[0, 4] == 1))
    # right-angle turns and flips keep the ellipse along an axis; free turns slant it
    assert sum(s > 15 for s in slants) >= 5


def _plane_sheet_depth(elastic: float, spacing=(1.0, 1.0, 1.0)) -> list[int]:
    """How many z slices of each of 20 turned patches hold the voxels of one painted xy plane."""
    ann = np.zeros((24, 48, 48), np.uint8)
    ann[12] = 1 + (np.arange(48) > 24)[None, :]
    image = ann.astype(np.float32)
    sampler = PatchSampler([image], [annotation_to_target(ann)], (16, 32, 32), spacing,
                           np.random.default_rng(1), rotate=1.0, elastic=elastic)
    depths = []
    for _ in range(20):
        _, y = sampler.sample(1)
        depths.append(int(np.any(y[0] >= 0, axis=(1, 2)).sum()))
    return depths


def test_elastic_patches_bend_a_painted_plane_into_a_sheet():
    """Turning and scaling keep a painted xy plane flat (scaling by < 1 may repeat its slice); a
    smooth random displacement bends it across several slices, less where z is coarse."""
    assert max(_plane_sheet_depth(0.0)) <= 2
    bent = _plane_sheet_depth(4.0)
    assert np.median(bent) >= 5
    assert np.median(_plane_sheet_depth(4.0, (4.0, 1.0, 1.0))) < np.median(bent)


def test_elastic_displacement_is_smooth_and_of_the_asked_size():
    sampler = PatchSampler([np.zeros((4, 8, 8), np.float32)], [np.zeros((4, 8, 8), np.int16)], (32, 64, 64),
                           (2.0, 1.0, 1.0), np.random.default_rng(0), rotate=1.0, elastic=4.0)
    fields = np.stack([sampler._displacement().numpy() for _ in range(50)])
    assert fields.shape == (50, 3, 32, 64, 64)
    corner = fields[:, :, 0, 0, 0].std(0)  # a grid point: the vectors' own spread
    np.testing.assert_allclose(corner, [2.0, 4.0, 4.0], rtol=0.3)  # z in voxels twice as long
    assert np.abs(np.diff(fields, axis=-1)).max() < 1.0  # neighbours move together


def test_elastic_size_is_checked():
    with pytest.raises(ValueError, match="elastic_augment"):
        TrainConfig(elastic_augment=-1.0)


def test_voxels_from_outside_the_volume_are_unpainted():
    image, target = _ellipse_volume()
    sampler = PatchSampler([image], [target], (8, 40, 40), (1.0, 1.0, 1.0), np.random.default_rng(3),
                           rotate=1.0)
    outside = [np.mean(sampler.sample(1)[1] < 0) for _ in range(10)]
    assert min(outside) > 0.05  # a 40 x 40 patch turned inside a 40 x 40 volume reaches past its corners


def test_no_free_rotation_when_in_plane_spacing_differs_or_augmentation_is_off():
    image, target = _ellipse_volume()
    for spacing, augment in (((1.0, 1.0, 2.0), True), ((1.0, 1.0, 1.0), False)):
        sampler = PatchSampler([image], [target], (8, 24, 24), spacing, np.random.default_rng(0), augment,
                               rotate=1.0)
        assert all(np.all(sampler.sample(1)[1] >= 0) for _ in range(10))


def test_extra_channels_travel_with_their_patches_turned_or_not():
    """The trainer appends the frozen classifier's logits per volume: every patch must carry the
    same voxels of them as of the features, through crops, flips, quarter and free turns."""
    image, target = _ellipse_volume()
    for rotate in (0.0, 1.0):
        sampler = PatchSampler([image], [target], (8, 24, 24), (1.0, 1.0, 1.0), np.random.default_rng(0),
                               rotate=rotate)
        sampler.extra = [np.concatenate([2 * image[None], -image[None]])]
        for _ in range(10):
            x, _ = sampler.sample(2)
            assert x.shape == (2, 3, 8, 24, 24)
            np.testing.assert_allclose(x[:, 1], 2 * x[:, 0], atol=1e-5)
            np.testing.assert_allclose(x[:, 2], -x[:, 0], atol=1e-6)


def test_sampling_a_turned_patch_reads_a_box_but_gives_the_whole_volumes_values():

    rng = np.random.default_rng(4)
    for shape in ((9, 10, 11), (1, 2, 5)):  # also axes of one and two voxels
        volume = rng.random((2, *shape)).astype(np.float16)  # stored features are float16
        labels = rng.integers(0, 3, (1, *shape)).astype(np.uint8)
        for low, high in ((-3.0, 13.0), (2.0, 5.5), (9.2, 14.0), (-4.0, -0.7)):  # across, inside, past an end
            points = tuple(torch.tensor(rng.uniform(low, high, (3, 4, 5)), dtype=torch.float32)
                           for _ in range(3))
            grid = torch.stack([2 * points[a] / max(shape[a] - 1, 1) - 1 for a in (2, 1, 0)], -1)[None]
            for data, mode, padding in ((volume, "bilinear", "border"), (labels, "nearest", "zeros")):
                whole = torch.from_numpy(data.astype(np.float32))[None]
                expected = F.grid_sample(whole, grid, mode=mode, padding_mode=padding, align_corners=True)[0]
                ours = _sample_at(data, points, mode, padding)
                assert ours.dtype == torch.float32
                torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_channels_last_sampling_gives_the_same_values_as_channels_first():
    """The box is laid out channels last for speed; every value must be what ``grid_sample`` gives
    on the box as the volume lays it out, to the bit."""

    volume = np.random.default_rng(5).standard_normal((7, 20, 30, 30)).astype(np.float16)
    angle, scale = 0.7, 1.1
    axes = [(torch.arange(p, dtype=torch.float32) - (p - 1) / 2) * scale for p in (8, 16, 16)]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    cos, sin = math.cos(angle), math.sin(angle)
    points = (z + 10, cos * y - sin * x + 15, sin * y + cos * x + 14)
    box = _reach(points, volume.shape[1:])
    part = torch.from_numpy(volume[(slice(None), *box)].astype(np.float32))
    grid = torch.stack([2 * (points[a] - box[a].start) / (box[a].stop - box[a].start - 1) - 1
                        for a in (2, 1, 0)], -1)
    expected = F.grid_sample(part[None], grid[None], padding_mode="border", align_corners=True)[0]
    assert torch.equal(_sample_at(volume, points, "bilinear", "border"), expected)


def test_a_batch_of_float16_features_comes_out_float32_and_contiguous_with_their_values():
    """Patches are written into the batch in one pass from flipped and turned views."""
    features = np.random.default_rng(6).standard_normal((3, 8, 12, 12)).astype(np.float16)
    target = np.zeros((8, 12, 12), np.int16)
    for rotate in (0.0, 1.0):
        sampler = PatchSampler([features], [target], (8, 12, 12), (1.0, 1.0, 1.0), np.random.default_rng(0),
                               rotate=rotate)
        for _ in range(5):
            x, y = sampler.sample(3)
            assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape == (3, 3, 8, 12, 12)
            assert y.dtype == np.int64 and y.shape == (3, 8, 12, 12)
            if not rotate:  # flips and quarter turns only move voxels: the same values, resorted
                every = np.sort(features.astype(np.float32).ravel())
                for patch in x:
                    np.testing.assert_array_equal(np.sort(patch.ravel()), every)
