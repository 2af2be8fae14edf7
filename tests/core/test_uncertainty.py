import numpy as np
import pytest

from napari_sparseseg.core.synthetic import make_sample
from napari_sparseseg.core.uncertainty import entropy, painted_planes, rank_slices


def test_entropy_is_zero_when_sure_and_max_when_uniform():
    probs = np.zeros((2, 2, 3, 3), np.uint8)
    probs[0, 0] = 255  # sure
    probs[:, 1] = 128  # uniform
    h = entropy(probs)
    assert h.dtype == np.uint8 and h[0].max() == 0 and h[1].min() >= 254


def test_painted_planes_ignore_lines_from_orthogonal_slices():
    sample = make_sample(shape=(20, 40, 36), slices_per_axis=(2, 1, 3), seed=0)
    planes = painted_planes(sample.annotation)
    assert [len(p) for p in planes] == [2, 1, 3]
    for axis, indices in enumerate(planes):
        for i in indices:
            plane = np.take(sample.annotation, i, axis=axis)
            assert (plane > 0).all()


def test_partial_slices_still_count():
    sample = make_sample(shape=(20, 40, 36), slices_per_axis=2, partial=True, seed=1)
    assert [len(p) for p in painted_planes(sample.annotation)] == [2, 2, 2]


def test_a_few_strokes_on_one_plane_paint_only_that_plane():
    ann = np.zeros((32, 96, 96), np.uint8)
    ann[12, 40:43, 10:60] = 2  # three brush strokes across x on the xy plane z = 12
    ann[12, 50:70, 30:33] = 1  # and three down y
    assert painted_planes(ann) == [[12], [], []]
    ann[:, 70, :] = 1  # a whole xz plane as well
    assert painted_planes(ann) == [[12], [70], []]


def test_rank_skips_painted_planes_and_finds_the_uncertain_one():
    ann = np.zeros((6, 8, 10), np.uint8)
    ann[2] = 1
    unc = np.zeros(ann.shape, np.uint8)
    unc[2] = 255  # painted: must be skipped
    unc[:, :, 7] = 200  # the most uncertain unpainted plane: x = 7
    ranked = rank_slices(unc, ann, top=3)
    assert ranked[0][:2] == (2, 7)
    assert all((axis, index) != (0, 2) for axis, index, _ in ranked)
    with pytest.raises(ValueError, match="differ in shape"):
        rank_slices(unc[:3], ann)


def test_border_planes_are_never_suggested():
    ann = np.zeros((32, 96, 96), np.uint8)
    ann[16] = 1
    unc = np.full(ann.shape, 10, np.uint8)
    unc[:, :, 95] = unc[:, :, 0] = unc[:, 1] = 255  # unsure only for lack of context
    unc[:, 40] = 120
    ranked = rank_slices(unc, ann, top=1000)
    assert ranked[0][:2] == (1, 40)
    assert not [(a, i) for a, i, _ in ranked if i < 2 or i > ann.shape[a] - 3]
    assert {i for a, i, _ in ranked if a == 2} == set(range(6, 90))  # 96 // 16 = 6 planes at each end


def test_planes_beside_a_painted_one_come_after_the_others():
    ann = np.zeros((32, 96, 96), np.uint8)
    ann[:, :, 48] = 1  # a painted yz plane
    unc = np.full(ann.shape, 10, np.uint8)
    unc[:, :, 49] = 250  # most unsure right beside it
    unc[:, 30] = 100
    ranked = rank_slices(unc, ann, top=1000)
    assert ranked[0][:2] == (1, 30)
    near = [i for a, i, _ in ranked if a == 2 and abs(i - 48) < 12]  # 96 // 8
    assert near and ranked[-len(near):] == sorted(ranked[-len(near):], key=lambda r: -r[2])
    assert {(a, i) for a, i, _ in ranked[-len(near):]} == {(2, i) for i in near}


def test_a_large_plane_with_more_uncertainty_in_all_beats_a_small_one_with_a_higher_mean():
    ann = np.zeros((8, 64, 64), np.uint8)  # few thick slices: an xy plane has 8x the voxels of an xz one
    unc = np.zeros(ann.shape, np.uint8)
    unc[4] = 100  # 4096 voxels at 100
    unc[:, 30] = 200  # 512 voxels at 200
    (axis, index, score), second = rank_slices(unc, ann, top=2)
    assert (axis, index) == (0, 4) and second[:2] == (1, 30)
    assert score == pytest.approx((100 * 4032 + 200 * 64) / 4096 / 255)  # the plane's mean, as shown
