import numpy as np
import pytest

from napari_sparseseg.core.synthetic import (
    TUBULE_CLASSES,
    Sample,
    make_sample,
    make_tubules,
    sparse_annotation,
)


def _painted_full_planes(annotation, axis):
    """Indices of planes along ``axis`` in which every voxel is painted."""
    other = tuple(a for a in range(3) if a != axis)
    return np.flatnonzero(np.all(annotation > 0, axis=other))


def _painted_planes(annotation, axis):
    other = tuple(a for a in range(3) if a != axis)
    return np.flatnonzero(np.any(annotation > 0, axis=other))


def test_make_tubules_types_and_values():
    image, truth = make_tubules(seed=1)
    assert image.shape == truth.shape == (24, 64, 64)
    assert image.dtype == np.float32 and truth.dtype == np.uint8
    assert set(np.unique(truth)) == {0, 1, 2}
    assert np.isfinite(image).all()


def test_make_tubules_is_deterministic_by_seed():
    a_img, a_truth = make_tubules(seed=3)
    b_img, b_truth = make_tubules(seed=3)
    c_img, c_truth = make_tubules(seed=4)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_truth, b_truth)
    assert not np.array_equal(a_truth, c_truth)
    assert not np.array_equal(a_img, c_img)


@pytest.mark.parametrize("seed", range(5))
def test_class_fractions_in_range(seed):
    _, truth = make_tubules(seed=seed)
    fractions = np.bincount(truth.ravel(), minlength=3) / truth.size
    assert 0.60 <= fractions[0] <= 0.85
    assert fractions[1] >= 0.03
    assert fractions[2] >= 0.03


@pytest.mark.parametrize("seed", range(3))
def test_intensity_ordered_by_class(seed):
    image, truth = make_tubules(seed=seed)
    means = [image[truth == k].mean() for k in range(3)]
    assert means[2] > means[1] > means[0]


def test_not_thresholdable_by_one_value():
    image, truth = make_tubules(seed=0)
    lumen, background = image[truth == 1], image[truth == 0]
    # the classes overlap in intensity: no single threshold separates lumen from background
    assert lumen.min() < background.max()


@pytest.mark.parametrize("shape", [(5, 17, 13), (1, 1, 1), (3, 9, 30), (7, 8, 2)])
def test_odd_and_tiny_shapes(shape):
    image, truth = make_tubules(shape=shape, seed=2)
    assert image.shape == truth.shape == shape
    assert truth.max() <= 2
    assert np.isfinite(image).all()


@pytest.mark.parametrize("z_anisotropy", [0.5, 1.0, 3.3])
def test_other_anisotropies(z_anisotropy):
    image, truth = make_tubules(shape=(9, 33, 31), z_anisotropy=z_anisotropy, seed=0)
    assert image.shape == truth.shape == (9, 33, 31)
    assert (truth > 0).any()


def test_zero_tubes_is_all_background():
    _, truth = make_tubules(shape=(6, 20, 20), n_tubes=0)
    assert not truth.any()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (4, 4)},
        {"shape": (0, 4, 4)},
        {"n_tubes": -1},
        {"z_anisotropy": 0},
        {"noise": -0.1},
        {"blur": -1},
    ],
)
def test_make_tubules_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_tubules(**kwargs)


@pytest.mark.parametrize("counts", [(2, 0, 0), (0, 3, 0), (0, 0, 1), (4, 0, 0)])
def test_sparse_annotation_single_axis_plane_count(counts):
    _, truth = make_tubules(shape=(12, 30, 26), seed=0)
    annotation = sparse_annotation(truth, counts, seed=5)
    for axis, count in enumerate(counts):
        assert len(_painted_planes(annotation, axis)) == (count if count else truth.shape[axis])


@pytest.mark.parametrize("n", [1, 2, 3])
def test_sparse_annotation_full_planes_per_axis(n):
    _, truth = make_tubules(shape=(16, 40, 36), seed=1)
    annotation = sparse_annotation(truth, n, seed=2)
    for axis in range(3):
        planes = _painted_full_planes(annotation, axis)
        assert len(planes) == n
        assert len(np.unique(planes)) == n


def test_sparse_annotation_values():
    _, truth = make_tubules(shape=(16, 40, 36), seed=1)
    annotation = sparse_annotation(truth, (2, 1, 1), seed=0)
    assert annotation.dtype == np.uint8
    painted = annotation > 0
    np.testing.assert_array_equal(annotation[painted], truth[painted] + 1)
    assert set(np.unique(annotation[painted])) == {1, 2, 3}
    for axis in range(3):
        for index in _painted_full_planes(annotation, axis):
            plane = np.take(annotation, index, axis=axis)
            np.testing.assert_array_equal(plane, np.take(truth, index, axis=axis) + 1)


def test_sparse_annotation_deterministic_and_offset_by_seed():
    truth = np.zeros((40, 40, 40), dtype=np.uint8)
    a = sparse_annotation(truth, 2, seed=7)
    np.testing.assert_array_equal(a, sparse_annotation(truth, 2, seed=7))
    seen = {tuple(_painted_full_planes(sparse_annotation(truth, 2, seed=s), 0)) for s in range(10)}
    assert len(seen) > 1


def test_sparse_annotation_planes_are_spread():
    truth = np.zeros((30, 8, 8), dtype=np.uint8)
    planes = _painted_full_planes(sparse_annotation(truth, (3, 0, 0), seed=0), 0)
    assert np.all(np.diff(planes) >= 5)  # evenly spaced, about 10 apart


def test_sparse_annotation_partial_paints_less():
    _, truth = make_tubules(shape=(16, 40, 36), seed=1)
    full = sparse_annotation(truth, 1, seed=3)
    part = sparse_annotation(truth, 1, partial=True, seed=3)
    assert 0 < np.count_nonzero(part) < 0.8 * np.count_nonzero(full)
    painted = part > 0
    np.testing.assert_array_equal(part[painted], truth[painted] + 1)


def test_sparse_annotation_all_slices_allowed():
    truth = np.ones((3, 4, 5), dtype=np.int64)
    annotation = sparse_annotation(truth, (3, 0, 0))
    np.testing.assert_array_equal(annotation, truth + 1)


@pytest.mark.parametrize(
    "truth, counts",
    [
        (np.zeros((4, 4), dtype=np.uint8), 1),
        (np.zeros((4, 4, 4), dtype=np.float32), 1),
        (-np.ones((4, 4, 4), dtype=np.int16), 1),
        (np.full((4, 4, 4), 300, dtype=np.int16), 1),
        (np.zeros((4, 4, 4), dtype=np.uint8), -1),
        (np.zeros((4, 4, 4), dtype=np.uint8), (1, 1)),
        (np.zeros((4, 4, 4), dtype=np.uint8), 1.5),
        (np.zeros((4, 4, 4), dtype=np.uint8), (5, 0, 0)),
    ],
)
def test_sparse_annotation_rejects_bad_input(truth, counts):
    with pytest.raises(ValueError):
        sparse_annotation(truth, counts)


def test_make_sample():
    sample = make_sample(shape=(10, 30, 28), slices_per_axis=(1, 0, 2), seed=4, z_anisotropy=3.0)
    assert isinstance(sample, Sample)
    assert sample.spacing == (3.0, 1.0, 1.0)
    assert sample.class_names == TUBULE_CLASSES == ("background", "tubule lumen", "tubule wall")
    assert sample.image.shape == sample.truth.shape == sample.annotation.shape == (10, 30, 28)
    image, truth = make_tubules(shape=(10, 30, 28), seed=4, z_anisotropy=3.0)
    np.testing.assert_array_equal(sample.image, image)
    np.testing.assert_array_equal(sample.truth, truth)
    assert [len(_painted_full_planes(sample.annotation, a)) for a in range(3)] == [1, 0, 2]


def test_make_sample_default_spacing_and_partial():
    full = make_sample(shape=(8, 24, 24), seed=0)
    part = make_sample(shape=(8, 24, 24), seed=0, partial=True)
    assert full.spacing == (2.0, 1.0, 1.0)
    assert np.count_nonzero(part.annotation) < np.count_nonzero(full.annotation)
