import numpy as np
import pytest

from napari_sparseseg.core.inference import SLAB_VOXELS, gaussian_importance, sliding_window, window_starts


def threshold_predictor(batch):
    """Two-class 'probabilities' from a fixed threshold: a predictor with a known answer."""
    fg = (batch[:, :1] > 0.5).astype(np.float32)
    return np.concatenate([1 - fg, fg], axis=1)


def test_known_predictor_result_is_reproduced_exactly():
    rng = np.random.default_rng(0)
    volume = rng.random((13, 37, 29)).astype(np.float32)
    calls = []

    def predictor(batch):
        calls.append(batch.shape)
        return threshold_predictor(batch)

    probs = sliding_window(volume, predictor, window=(8, 16, 16), overlap=0.5, batch_size=3)
    assert probs.shape == (2, 13, 37, 29)
    np.testing.assert_allclose(probs[1], volume > 0.5, atol=1e-6)
    assert all(c[0] <= 3 and c[2:] == (8, 16, 16) for c in calls)


def test_blending_is_a_weighted_mean_of_window_outputs():
    volume = np.zeros((1, 4, 4, 12), np.float32)
    counter = iter(range(100))

    def predictor(batch):  # each window returns its own index everywhere
        return np.stack([np.full(batch.shape[1:], next(counter), np.float32) for _ in batch])

    out = sliding_window(volume, predictor, (4, 4, 8), overlap=0.5, batch_size=1, blend="constant")
    np.testing.assert_allclose(out[0, 0, 0], [0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1])


def test_volume_smaller_than_window_is_padded_and_cropped():
    volume = np.ones((3, 5, 7), np.float32)
    out = sliding_window(volume, threshold_predictor, (8, 8, 8))
    assert out.shape == (2, 3, 5, 7)
    assert np.all(out[1] == 1)


@pytest.mark.parametrize("shape", [(13, 37, 29), (3, 5, 7), (17, 8, 8), (5, 300, 400)])
def test_a_per_voxel_predictor_runs_slab_by_slab_and_gives_the_windows_result(shape):
    volume = np.random.default_rng(1).random((2, *shape)).astype(np.float32)
    seen = []

    def predictor(batch):
        seen.append(batch.shape)
        return np.concatenate([batch, 1 - batch[:, :1]], axis=1)  # three outputs from two channels

    windows = sliding_window(volume, predictor, (8, 16, 16), overlap=0.5)
    count = len(seen)
    slabs = sliding_window(volume, predictor, (8, 16, 16), overlap=0.5, per_voxel=True)
    np.testing.assert_allclose(slabs, windows, rtol=0, atol=1e-6)
    assert slabs.shape == (3, *shape) and slabs.dtype == np.float32
    planes = max(1, SLAB_VOXELS // (shape[1] * shape[2]))  # 2 for 300 x 400, all planes for the others
    slab_shapes = [(min(planes, shape[0] - z), *shape[1:]) for z in range(0, shape[0], planes)]
    assert [s[2:] for s in seen[count:]] == slab_shapes


def test_gaussian_map_peaks_in_centre_and_stays_positive():
    w = gaussian_importance((9, 9, 9))
    assert w[4, 4, 4] == 1.0 and w.min() >= 1e-3 and w[0, 0, 0] < 0.01


def test_window_starts_cover_the_axis():
    starts = window_starts(100, 32, 0.25)
    assert starts[0] == 0 and starts[-1] == 68
    assert max(np.diff(starts)) <= 24
    assert window_starts(10, 32, 0.5) == [0]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"overlap": 1.0}, "overlap"), ({"batch_size": 0}, "batch_size"), ({"blend": "max"}, "blend"),
     ({"window": (8, 8)}, "window")],
)
def test_bad_arguments_raise(kwargs, message):
    args = {"window": (8, 8, 8)} | kwargs
    with pytest.raises(ValueError, match=message):
        sliding_window(np.zeros((8, 8, 8)), threshold_predictor, **args)
