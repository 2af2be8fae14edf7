import numpy as np
import pytest

from napari_sparseseg.core.metrics import (
    METRIC_NAMES,
    class_metrics,
    confusion_counts,
    evaluate,
    format_table,
)

# 10 voxels as a (1, 2, 5) volume; label 1: tp=3 (idx 0-2), fn=2 (3-4), fp=1 (5), tn=4 (6-9)
PRED = np.array([1, 1, 1, 0, 0, 1, 0, 0, 0, 0], dtype=np.uint8).reshape(1, 2, 5)
TRUTH = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=np.uint8).reshape(1, 2, 5)


def test_confusion_counts_hand_example():
    assert confusion_counts(PRED, TRUTH, 1) == (3, 1, 2, 4)
    assert confusion_counts(PRED, TRUTH, 0) == (4, 2, 1, 3)


def test_confusion_counts_label_absent():
    assert confusion_counts(PRED, TRUTH, 5) == (0, 0, 0, 10)


def test_class_metrics_hand_example():
    m = class_metrics(3, 1, 2, 4)
    assert m["dice"] == pytest.approx(6 / 9)
    assert m["jaccard"] == pytest.approx(3 / 6)
    assert m["sensitivity"] == pytest.approx(3 / 5)
    assert m["specificity"] == pytest.approx(4 / 5)
    assert m["f_beta"] == pytest.approx(m["dice"])
    assert m["volumetric_similarity"] == pytest.approx(1 - 1 / 9)
    assert tuple(m) == METRIC_NAMES


def test_f_beta_two_follows_formula():
    m1 = class_metrics(3, 1, 2, 4, beta=1.0)
    m2 = class_metrics(3, 1, 2, 4, beta=2.0)
    assert m2["f_beta"] == pytest.approx(5 * 3 / (5 * 3 + 4 * 2 + 1))
    assert m2["f_beta"] != pytest.approx(m1["f_beta"])
    # beta > 1 weights recall: with more FN than FP the score drops
    assert m2["f_beta"] < m1["f_beta"]


def test_empty_class_convention():
    m = class_metrics(0, 0, 0, 10)
    assert all(m[name] == 1.0 for name in METRIC_NAMES)
    assert class_metrics(0, 0, 0, 0)["specificity"] == 1.0


def test_class_metrics_rejects_bad_values():
    with pytest.raises(ValueError):
        class_metrics(-1, 0, 0, 0)
    with pytest.raises(ValueError):
        class_metrics(1, 0, 0, 0, beta=0)


def test_evaluate_perfect_prediction():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=(4, 5, 6))
    result = evaluate(truth, truth.copy())
    assert set(result["classes"]) == {"0", "1", "2"}
    for values in result["classes"].values():
        assert all(values[m] == 1.0 for m in METRIC_NAMES)
        assert values["voxels_truth"] == values["voxels_pred"]
    assert all(v == 1.0 for v in result["mean_foreground"].values())
    assert result["n_voxels"] == truth.size


def test_evaluate_disjoint_gives_zero_dice():
    truth = np.zeros((2, 3, 4), dtype=np.uint8)
    pred = np.zeros_like(truth)
    truth[0] = 1
    pred[1] = 1
    result = evaluate(pred, truth, n_classes=2)
    assert result["classes"]["1"]["dice"] == 0.0
    assert result["classes"]["1"]["jaccard"] == 0.0
    assert result["classes"]["1"]["sensitivity"] == 0.0
    assert result["classes"]["1"]["volumetric_similarity"] == 1.0  # same size, wrong place


def test_evaluate_matches_hand_counts_and_names():
    result = evaluate(PRED, TRUTH, class_names=("background", "tubule"))
    tubule = result["classes"]["tubule"]
    assert tubule == {**class_metrics(3, 1, 2, 4), "voxels_truth": 5, "voxels_pred": 4}
    assert result["mean_foreground"] == {m: tubule[m] for m in METRIC_NAMES}
    assert result["n_voxels"] == 10


def test_evaluate_mean_over_foreground_only():
    truth = np.array([0, 1, 1, 2, 2, 2]).reshape(1, 1, 6)
    pred = np.array([0, 1, 0, 2, 2, 2]).reshape(1, 1, 6)
    result = evaluate(pred, truth)
    dice1, dice2 = 2 / 3, 1.0
    assert result["classes"]["1"]["dice"] == pytest.approx(dice1)
    assert result["mean_foreground"]["dice"] == pytest.approx((dice1 + dice2) / 2)


def test_a_class_in_neither_mask_is_not_averaged():
    truth = np.array([0, 0, 1, 1]).reshape(1, 1, 4)
    missed = np.zeros_like(truth)  # misses the only object
    result = evaluate(missed, truth, n_classes=3)
    assert result["classes"]["2"]["dice"] == 1.0  # absent everywhere: a perfect, meaningless score
    assert result["averaged"] == ["1"] and result["mean_foreground"]["dice"] == 0.0
    assert "the mean is over 1 " in format_table(result)


def test_evaluate_single_class_uses_class_zero():
    zeros = np.zeros((2, 2, 2), dtype=np.uint8)
    result = evaluate(zeros, zeros)
    assert list(result["classes"]) == ["0"]
    assert result["mean_foreground"]["dice"] == 1.0


def test_evaluate_mask_restricts_voxels():
    mask = np.zeros(PRED.shape, dtype=bool)
    mask.flat[[0, 1, 3, 6]] = True  # keeps 2 tp, 1 fn, 1 tn for label 1
    assert confusion_counts(PRED, TRUTH, 1, mask=mask) == (2, 0, 1, 1)
    result = evaluate(PRED, TRUTH, mask=mask)
    assert result["n_voxels"] == 4
    assert result["classes"]["1"]["dice"] == pytest.approx(4 / 5)
    assert result["classes"]["1"]["voxels_truth"] == 3


def test_evaluate_n_classes_adds_absent_classes():
    result = evaluate(PRED, TRUTH, n_classes=4)
    assert list(result["classes"]) == ["0", "1", "2", "3"]
    assert result["classes"]["3"]["dice"] == 1.0
    assert result["classes"]["3"]["voxels_truth"] == 0


def test_evaluate_accepts_bool_and_integral_float():
    result = evaluate(PRED.astype(bool), TRUTH.astype(np.float32))
    assert result["classes"]["1"]["dice"] == pytest.approx(6 / 9)


def test_large_volume_chunks_agree():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, size=(40, 330, 330), dtype=np.uint8)  # > one chunk
    pred = np.where(rng.random(truth.shape) < 0.8, truth, 0).astype(np.uint8)
    tp = int(np.sum((pred == 2) & (truth == 2)))
    fp = int(np.sum((pred == 2) & (truth != 2)))
    fn = int(np.sum((pred != 2) & (truth == 2)))
    assert confusion_counts(pred, truth, 2) == (tp, fp, fn, truth.size - tp - fp - fn)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(1, 2, 5\).*\(2, 5, 1\)"):
        evaluate(PRED, TRUTH.reshape(2, 5, 1))
    with pytest.raises(ValueError):
        confusion_counts(PRED, TRUTH, 1, mask=np.ones((3, 3, 3), dtype=bool))


@pytest.mark.parametrize(
    "pred",
    [
        -PRED.astype(np.int8),
        PRED.astype(np.float32) + 0.5,
        PRED.astype(str),
    ],
)
def test_invalid_values_raise(pred):
    with pytest.raises(ValueError):
        evaluate(pred, TRUTH)


def test_invalid_n_classes_and_names():
    with pytest.raises(ValueError):
        evaluate(PRED, TRUTH, n_classes=1)  # label 1 present
    with pytest.raises(ValueError):
        evaluate(PRED, TRUTH, n_classes=0)
    with pytest.raises(ValueError):
        evaluate(PRED, TRUTH, class_names=("only one",))
    with pytest.raises(ValueError):
        confusion_counts(PRED, TRUTH, -1)


def test_format_table_lists_classes_and_metrics():
    result = evaluate(PRED, TRUTH, class_names=("background", "tubule lumen"))
    table = format_table(result)
    for word in ("background", "tubule lumen", "mean (foreground)", *METRIC_NAMES):
        assert word in table
    assert "0.667" in table  # dice of class 1 with 3 decimals
    assert len({len(line) for line in table.splitlines()[:4]}) == 1  # aligned columns


def test_confusion_counts_ignores_other_large_labels():
    pred = np.array([70000, 1, 1, 0], dtype=np.uint32).reshape(1, 1, 4)
    truth = np.array([1, 1, 0, 70000], dtype=np.uint32).reshape(1, 1, 4)
    assert confusion_counts(pred, truth, 1) == (1, 1, 1, 1)


def test_too_many_labels_is_a_clear_error():
    labels = np.array([0, 5000], dtype=np.uint16).reshape(1, 1, 2)
    with pytest.raises(ValueError, match="labels"):
        evaluate(labels, labels)
