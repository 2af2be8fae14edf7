import numpy as np
import pytest

from napari_sparseseg.core.normalize import fit_normalization
from napari_sparseseg.core.validate import check_annotation, check_image, count_classes


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((8, 8)), "2 dimensions"),
        (np.zeros((2, 8, 8, 8)), "4 dimensions"),
        (np.zeros((8, 8, 8, 3), np.uint8), "RGB"),
        (np.full((4, 4, 4), np.nan), "NaN or infinite"),
        (np.array([[[np.inf, 0], [0, 0]], [[0, 0], [0, 0]]]), "1 NaN or infinite"),
        (np.zeros((4, 4, 4), complex), "complex"),
        (np.full((4, 4, 4), 1e300), "beyond ±3.4e38"),  # not "NaN or infinite": it has none
    ],
)
def test_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        check_image(image, "scan.tif")


def test_bad_annotations():
    with pytest.raises(ValueError, match=r"shape \(4, 4, 5\) but the image has shape \(4, 4, 4\)"):
        check_annotation(np.zeros((4, 4, 5)), (4, 4, 4))
    with pytest.raises(ValueError, match="non-integer"):
        check_annotation(np.full((4, 4, 4), 1.5), (4, 4, 4))
    with pytest.raises(ValueError, match="negative"):
        check_annotation(np.full((4, 4, 4), -1), (4, 4, 4))
    assert check_annotation(np.full((4, 4, 4), 2.0), (4, 4, 4)).dtype == np.uint8


def test_class_counting_errors():
    empty = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="no painted voxel"):
        count_classes([empty], ["ann.tif"])
    one = empty.copy()
    one[0] = 1
    with pytest.raises(ValueError, match="only label 1"):
        count_classes([one], ["ann.tif"])
    gap = one.copy()
    gap[1] = 3
    with pytest.raises(ValueError, match=r"label\(s\) \[2\]"):
        count_classes([gap], ["ann.tif"])
    gap[2] = 2
    assert count_classes([gap]) == 3


def test_normalization_is_robust_to_outliers():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (20, 20, 20)).astype(np.float32)
    image[0, 0, 0] = 1e9
    norm = fit_normalization([image])
    out = norm.apply(image)
    assert abs(out.mean()) < 0.05 and 0.9 < out.std() < 1.1
    assert out.max() < 4
