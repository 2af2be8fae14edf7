"""The boosted-tree first stage: learns, answers painted voxels out of fold, is stored as data."""

import io

import dask.array as da
import numpy as np
import pytest
import torch

from napari_sparseseg.core import checkpoint, chunked, jobs, stages, trainer, trees
from napari_sparseseg.core import io as napari_io
from napari_sparseseg.core.checkpoint import Segmenter
from napari_sparseseg.core.config import FILTER_SIGMAS, ModelConfig, TrainConfig, replace
from napari_sparseseg.core.events import (
    Failed,
    Message,
    ModelReady,
    Outputs,
    PredictionReady,
    Progress,
    TrainRequest,
    Written,
)
from napari_sparseseg.core.filters import FilterBank
from napari_sparseseg.core.inference import model_inputs, predict
from napari_sparseseg.core.io import read_volume
from napari_sparseseg.core.jobs import run
from napari_sparseseg.core.judge import Judge
from napari_sparseseg.core.metrics import evaluate
from napari_sparseseg.core.normalize import Normalization
from napari_sparseseg.core.synthetic import make_sample
from napari_sparseseg.core.trainer import fit, prepare, train

make_sampler = trainer._sampler
MODEL = ModelConfig(features=(8, 16, 32), filters=FILTER_SIGMAS[:3], trees=30)  # σ to 5: chunks fit in 70³


@pytest.fixture(scope="module")
def sample():
    return make_sample(shape=(24, 64, 64), slices_per_axis=2, seed=1)


@pytest.fixture(scope="module")
def trained(sample):
    """Trees and a U-Net that corrects them: 30 iterations do not yet label the painted voxels
    better than the trees, so the judge is overruled to keep the U-Net's correction for the tests
    of its predictions (chunk borders, round trips)."""
    config = TrainConfig(patch_size=(16, 48, 48), iterations=30, device="cpu", seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Judge, "improves", lambda self: True)
        return fit([sample.image], [sample.annotation], MODEL, config, sample.spacing,
                   class_names=sample.class_names)


def test_trees_and_u_net_learn_tubules_in_a_small_budget(sample, trained):
    labels = predict(trained, sample.image).labels
    result = evaluate(labels, sample.truth, n_classes=3, mask=sample.annotation == 0,
                      class_names=sample.class_names)
    dice = {name: m["dice"] for name, m in result["classes"].items()}
    assert dice["tubule lumen"] >= 0.95 and dice["tubule wall"] >= 0.93, dice
    assert trained.net.pointwise.fitted and trained.net.head.weight.abs().sum() > 0  # the U-Net trained


def test_with_fewer_folds_than_planes_each_fold_holds_every_direction():
    target = np.full((30, 30, 30), -1, np.int16)
    for index in (5, 15, 25):
        target[index], target[:, index], target[:, :, index] = 0, 0, 0
    where = np.flatnonzero(target.ravel() >= 0)
    assert np.unique(trees.plane_folds(target, where)).size == trees.FOLDS == 5
    folds = trees.plane_folds(target, where, folds=3)
    assert sorted(np.unique(folds)) == [0, 1, 2]
    planes = np.stack(np.unravel_index(where, target.shape))
    for axis in range(3):
        on_one_plane = (planes % 10 != 5).sum(0) == 2  # voxels off the lines where planes cross
        mine = on_one_plane & (planes[axis] % 10 == 5)
        per_fold = [np.unique(planes[axis][mine & (folds == f)]) for f in range(3)]
        assert [len(p) for p in per_fold] == [1, 1, 1]  # each fold: one plane of this direction


def test_a_single_painted_plane_alternates_squares_between_two_folds():
    single = np.full((4, 40, 40), -1, np.int16)
    single[2] = 1
    folds = trees.plane_folds(single, np.flatnonzero(single.ravel() >= 0)).reshape(40, 40)
    assert folds[0, 0] != folds[0, 16] and folds[0, 0] == folds[16, 16] == folds[15, 15]


def test_out_of_fold_answers_do_not_know_their_own_labels():
    """Labels that are noise: trees fit their own training rows, but answer held-out rows by chance."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3000, 5)).astype(np.float32)
    labels = rng.integers(0, 2, 3000)
    folds = np.arange(3000) % 3
    fitted = trees.TreeClassifier(2, rounds=40)
    list(fitted.fit(features, labels))
    own = np.mean(fitted.rows(features).argmax(1) == labels)
    held = np.mean(_result(trees.out_of_fold(features, labels, folds, 2, rounds=40)).argmax(1) == labels)
    assert own > 0.75 and 0.4 < held < 0.6, (own, held)
    single = _result(trees.out_of_fold(features, labels, np.zeros(3000, int), 2, rounds=5))
    assert not single.any()  # nothing to hold out: no answer rather than a memorised one


def test_boosting_yields_a_loss_every_round_but_computes_it_every_few():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 4)).astype(np.float32)
    labels = (features[:, 0] > 0).astype(int)
    losses = []
    booster = _result(trees.boost(features, labels, 2, rounds=25), losses)
    assert len(losses) == 25 == booster.current_iteration()
    changes = [i for i in range(1, 25) if losses[i] != losses[i - 1]]
    assert changes == [9, 19, 24]  # after rounds 10, 20 and the last; round 1's loss stands till then
    assert losses[-1] == booster.eval_train()[0][2] < losses[0]


def _result(generator, yielded=None):
    """What ``generator`` returns; its yields go to the list ``yielded`` if one is given."""
    try:
        while True:
            value = next(generator)
            if yielded is not None:
                yielded.append(value)
    except StopIteration as end:
        return end.value


def test_the_u_net_learns_from_out_of_fold_answers_and_never_runs_the_trees(sample, monkeypatch):
    """On painted voxels the U-Net's context is what trees not fitted to them say; elsewhere the
    final trees' answer, computed once (the tree module is never called per patch)."""
    config = TrainConfig(patch_size=(16, 48, 48), iterations=3, device="cpu", seed=0)
    segmenter, images, annotations = prepare([sample.image], [sample.annotation], MODEL, config,
                                             sample.spacing)
    samplers, calls = [], []
    monkeypatch.setattr(trainer, "_sampler", lambda *a: samplers.append(make_sampler(*a)) or samplers[-1])
    monkeypatch.setattr(trees.TreeClassifier, "forward", lambda *a: calls.append(1))
    list(train(segmenter, images, annotations, config))
    assert calls == []
    features = model_inputs(segmenter, segmenter.normalization.apply(sample.image))
    final = features[-3:]
    context = samplers[0].extra[0][(slice(None), *(slice(0, n) for n in sample.image.shape))]
    painted = sample.annotation > 0
    np.testing.assert_allclose(context[:, ~painted], final[:, ~painted], rtol=1e-5, atol=1e-5)
    classes = sample.annotation[painted] - 1
    fitted, held = (np.mean(c[:, painted].argmax(0) == classes) for c in (final, context))
    assert fitted > 0.99 and held < fitted  # their own training voxels they know by heart


def test_the_trees_score_a_volume_once_for_the_u_net_and_the_prediction(sample, monkeypatch):
    """Scoring every voxel is the trees' dearest step (12 s on MNI): the prediction reuses what training
    scored, also after a preview of a slab; another image is scored anew. (That the reused answer is
    the computed one: the round trip below compares a trained model with its loaded copy.)"""
    config = TrainConfig(patch_size=(16, 48, 48), iterations=2, device="cpu", seed=0)
    segmenter, images, annotations = prepare([sample.image], [sample.annotation], MODEL, config,
                                             sample.spacing)
    scored, rows = [], trees.TreeClassifier.rows
    monkeypatch.setattr(trees.TreeClassifier, "rows",
                        lambda self, f, *a: scored.append(len(f)) or rows(self, f, *a))
    list(train(segmenter, images, annotations, config))
    assert scored == [sample.image.size]
    predict(segmenter, sample.image[:8])  # napari's preview of a slab
    predict(segmenter, sample.image)
    assert scored == [sample.image.size, 8 * 64 * 64]
    predict(segmenter, sample.image[::-1].copy())
    assert scored[-1] == sample.image.size and len(scored) == 3
    monkeypatch.setattr(trees, "KEEP", 1000)  # bytes: too large an answer is scored again, not held
    predict(segmenter, sample.image)
    predict(segmenter, sample.image)
    assert len(scored) == 5


def test_model_with_trees_round_trips_as_data_and_predicts_the_same(sample, trained, tmp_path):
    path = checkpoint.save(trained, tmp_path / "trees.pt")
    payload = torch.load(path, weights_only=True)  # tensors and plain values only: no code runs
    text = payload["state_dict"]["pointwise.model"]
    assert text.dtype == torch.uint8 and bytes(text[:4].numpy()) == b"tree"  # LightGBM's text format
    loaded = checkpoint.load(path)
    np.testing.assert_array_equal(predict(loaded, sample.image).probabilities,
                                  predict(trained, sample.image).probabilities)


def test_a_model_file_from_before_the_compact_derivatives_keeps_its_features(sample, trained, tmp_path):
    payload = torch.load(io.BytesIO(checkpoint.to_bytes(trained)), weights_only=True)
    assert payload["model_config"]["derivatives"] == "compact"
    del payload["model_config"]["derivatives"]  # as in files written before 2026-12-06
    torch.save(payload, tmp_path / "old.pt")
    old = checkpoint.load(tmp_path / "old.pt")
    assert old.config.derivatives == "wide"
    x = torch.from_numpy(old.normalization.apply(sample.image))[None, None]
    wide = FilterBank(old.config.filters, old.config.spacing, "wide").raw(x)
    torch.testing.assert_close(old.net.stem.raw(x), wide)
    assert not torch.allclose(trained.net.stem.raw(x), wide)


def test_a_model_file_from_before_the_structure_tensors_keeps_its_channels(sample, trained, tmp_path):
    new = Segmenter.create(replace(trained.config, tensors=(2.5,)), trained.n_classes, trained.normalization,
                           spacing=trained.spacing)
    with_tensors = checkpoint.from_bytes(checkpoint.to_bytes(new))
    assert with_tensors.net.stem.tensors == (2.5,)  # saved and read back
    assert with_tensors.net.stem.out_channels == trained.net.stem.out_channels + 3
    payload = torch.load(io.BytesIO(checkpoint.to_bytes(trained)), weights_only=True)
    del payload["model_config"]["tensors"]  # as in files written before 2026-12-07
    torch.save(payload, tmp_path / "old.pt")
    old = checkpoint.load(tmp_path / "old.pt")
    assert old.config.tensors == () and old.net.stem.out_channels == trained.net.stem.out_channels
    np.testing.assert_array_equal(predict(old, sample.image).probabilities,
                                  predict(trained, sample.image).probabilities)


def test_damaged_trees_are_one_clear_error_at_load(trained, tmp_path):
    payload = torch.load(io.BytesIO(checkpoint.to_bytes(trained)), weights_only=True)
    payload["state_dict"]["pointwise.model"] = torch.frombuffer(bytearray(b"not trees"), dtype=torch.uint8)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt is a damaged napari-sparseseg model.*LightGBM"):
        checkpoint.load(tmp_path / "bad.pt")


def test_chunk_borders_equal_the_whole_volume_with_trees(trained):
    image = np.random.default_rng(2).random((52, 70, 70)).astype(np.float32)
    config = checkpoint.InferConfig(window=(8, 16, 16), overlap=0.25, device="cpu")
    whole = predict(trained, image, config)
    lazy = chunked.predict_dask(da.from_array(image, chunks=(11, 30, 30)), trained, config, (26, 35, 35))
    assert all(len(c) >= 2 for c in lazy.labels.chunks)
    labels, probabilities = (a.compute(scheduler="threads") for a in (lazy.labels, lazy.probabilities))
    assert np.abs(probabilities.astype(int) - whole.probabilities).max() <= 1
    assert np.mean(labels == whole.labels) > 0.9999


def test_stop_before_the_first_trees_are_fitted_writes_nothing(sample, tmp_path):
    polls, sent = [], []
    request = TrainRequest((sample.image,), (sample.annotation,), sample.spacing, None, MODEL,
                           TrainConfig(patch_size=(16, 48, 48), iterations=3, device="cpu"),
                           outputs=Outputs(mask=tmp_path / "mask.tif", model=tmp_path / "model.pt"))
    run(request, sent.append, lambda: polls.append(1) or len(polls) > 2)
    assert any(isinstance(e, Failed) and "nothing was trained" in e.message for e in sent)
    assert not any(tmp_path.iterdir())


def test_a_continued_round_stopped_early_keeps_its_trees(sample, trained):
    again = checkpoint.from_bytes(checkpoint.to_bytes(trained))
    config = TrainConfig(patch_size=(16, 48, 48), iterations=5, device="cpu", seed=3)
    _, images, annotations = prepare([sample.image], [sample.annotation], again.config, config,
                                     sample.spacing, init=again)
    polls = []
    list(train(again, images, annotations, config, stop=lambda: polls.append(1) or len(polls) > 40))
    assert torch.equal(again.net.pointwise.model, trained.net.pointwise.model)


def test_a_model_config_has_one_first_stage():
    with pytest.raises(ValueError, match="one first stage"):
        ModelConfig(filters=(1.0,), pointwise=8, trees=10)
    with pytest.raises(ValueError, match="need filter-bank features"):
        ModelConfig(trees=10)
    segmenter = Segmenter.create(ModelConfig(features=(4, 8), filters=(1.0,), trees=5), 3,
                                 Normalization(0.0, 1.0, 0.5, 0.2))
    assert segmenter.net.encoders[0][0].in_channels == segmenter.net.stem.out_channels + 3


def test_a_new_model_answers_early_while_the_folds_still_train(sample):
    config = TrainConfig(patch_size=(16, 48, 48), iterations=2, device="cpu")
    segmenter, images, annotations = prepare([sample.image], [sample.annotation], MODEL, config,
                                             sample.spacing)
    events = list(train(segmenter, images, annotations, config))
    first = next(i for i, e in enumerate(events) if e.first_answer)
    assert first == MODEL.trees  # right after the final trees' 30 rounds
    assert sum(e.iteration == 0 for e in events[first + 1 :]) == 5 * MODEL.trees  # six planes, five folds


def test_the_folds_train_their_own_number_of_rounds(sample):
    model = replace(MODEL, fold_rounds=10)
    config = TrainConfig(patch_size=(16, 48, 48), iterations=2, device="cpu")
    segmenter, images, annotations = prepare([sample.image], [sample.annotation], model, config,
                                             sample.spacing)
    events = list(train(segmenter, images, annotations, config))
    first = next(i for i, e in enumerate(events) if e.first_answer)
    assert first == MODEL.trees and sum(e.iteration == 0 for e in events[first + 1 :]) == 5 * 10
    assert segmenter.net.pointwise.booster().current_iteration() == MODEL.trees
    with pytest.raises(ValueError, match="fold_rounds positive"):
        replace(MODEL, fold_rounds=0)


def _alone(segmenter: Segmenter) -> Segmenter:
    """A copy whose U-Net adds nothing (its last layer zero), as a new model's is before it trains."""
    copy = checkpoint.from_bytes(checkpoint.to_bytes(segmenter))
    torch.nn.init.zeros_(copy.net.head.weight)
    torch.nn.init.zeros_(copy.net.head.bias)
    return copy


def test_the_early_answer_stops_scoring_a_voxel_once_its_answer_is_clear(sample, trained):
    """napari's early answer scores the trees with LightGBM's early stopping; every other prediction
    (and the U-Net's inputs) scores every round, so probabilities and uncertainty are the model's."""
    image = trained.normalization.apply(sample.image)
    inputs = [model_inputs(trained, image, early=early) for early in (True, False)]
    channels = trained.net.stem.out_channels
    rows = np.ascontiguousarray(inputs[0][:channels].reshape(channels, -1).T, np.float32)
    booster = trained.net.pointwise.booster()
    stopped = booster.predict(rows, raw_score=True, pred_early_stop=True,
                              pred_early_stop_margin=trees.MARGIN, pred_early_stop_freq=trees.CHECK)
    logits = [i[channels:].reshape(3, -1).T.astype(np.float32) for i in inputs]
    np.testing.assert_allclose(logits[0], stopped, rtol=2e-3, atol=2e-3)  # stored as float16
    np.testing.assert_allclose(logits[1], booster.predict(rows, raw_score=True), rtol=2e-3, atol=2e-3)
    assert np.abs(logits[0] - logits[1]).max() > 0.5  # some voxels stopped early
    assert np.mean(logits[0].argmax(1) == logits[1].argmax(1)) > 0.999
    alone = _alone(trained)
    labels = predict(alone, sample.image, early=True).labels
    assert np.array_equal(labels, logits[0].argmax(1).reshape(sample.image.shape))
    full = predict(alone, sample.image).probabilities  # a model of the trees alone: every round
    probs = trained.config.predict_prior_weight or trained.config.prior_weight
    expected = torch.softmax(probs * torch.log_softmax(torch.from_numpy(logits[1]), 1), 1).numpy()
    assert np.abs(full.reshape(3, -1).T / 255.0 - expected).max() < 0.01


def test_trees_with_a_margin_stop_early_in_training_and_in_the_loaded_models_prediction(sample, monkeypatch):
    """``tree_margin`` scores the U-Net's context (out-of-fold answers included) and every later
    prediction with the same early stopping; the model file keeps it."""
    margins, score = [], trees.scores
    monkeypatch.setattr(trees, "scores", lambda b, f, m=None: margins.append(m) or score(b, f, m))
    config = TrainConfig(patch_size=(16, 48, 48), iterations=2, device="cpu", seed=0)
    model = fit([sample.image], [sample.annotation], replace(MODEL, tree_margin=2.0), config, sample.spacing)
    assert margins and set(margins) == {2.0}  # the folds' answers and every voxel's context
    loaded = checkpoint.from_bytes(checkpoint.to_bytes(model))
    margins.clear()
    image = loaded.normalization.apply(sample.image)
    inputs = model_inputs(loaded, image)
    assert set(margins) == {2.0}
    channels = loaded.net.stem.out_channels
    rows = np.ascontiguousarray(inputs[:channels].reshape(channels, -1).T, np.float32)
    logits = inputs[channels:].reshape(3, -1).T.astype(np.float32)
    booster = loaded.net.pointwise.booster()
    stopped = booster.predict(rows, raw_score=True, pred_early_stop=True, pred_early_stop_margin=2.0,
                              pred_early_stop_freq=trees.CHECK)
    np.testing.assert_allclose(logits, stopped, rtol=2e-3, atol=2e-3)
    assert np.abs(logits - booster.predict(rows, raw_score=True)).max() > 0.5  # some voxels stopped


def test_a_volume_too_large_to_predict_whole_stops_early_too(sample, trained, monkeypatch):
    """The early answer of a volume whose features would not fit (predicted chunk by chunk) scores
    the trees with early stopping as the whole volume's does, not with every round."""
    from napari_sparseseg.core import inference

    alone, config = _alone(trained), inference.InferConfig(window=(8, 16, 16), device="cpu")
    whole = predict(alone, sample.image, config, early=True)
    monkeypatch.setattr(inference, "MAX_FEATURE_BYTES", 1000)
    early, full = (predict(alone, sample.image, config, early=e) for e in (True, False))
    assert np.mean(early.labels == whole.labels) > 0.999  # equal but for ties
    assert np.abs(early.probabilities.astype(int) - whole.probabilities).max() <= 1
    assert np.abs(early.probabilities.astype(int) - full.probabilities).max() > 10  # flatter: stopped early


def test_a_job_answers_early_then_with_exactly_the_model_it_sends(sample, monkeypatch):
    """napari's job: the early answer (the trees alone) first, then the final answer, which must be
    what the model it hands over predicts: nothing of the early scoring may leak into it. The early
    answer reads the features training holds (computed twice, not three times) and is what the
    model's trees alone predict."""
    config = TrainConfig(patch_size=(16, 48, 48), iterations=2, device="cpu")
    computed, scales = [], FilterBank.scales
    monkeypatch.setattr(FilterBank, "scales", lambda self, *a: computed.append(1) or scales(self, *a))
    events = []
    run(TrainRequest((sample.image,), (sample.annotation,), sample.spacing, None, MODEL, config,
                     early_answer=True), events.append)
    assert len(computed) == 2  # training's features, then the final prediction's
    early, final = [e for e in events if isinstance(e, PredictionReady)]
    model = checkpoint.from_bytes(next(e for e in events if isinstance(e, ModelReady)).model)
    np.testing.assert_array_equal(final.probabilities, predict(model, sample.image).probabilities)
    np.testing.assert_array_equal(early.probabilities,
                                  predict(_alone(model), sample.image, early=True).probabilities)
    assert early.early and not final.early and not np.array_equal(early.probabilities, final.probabilities)


def test_the_first_answer_is_on_disk_before_the_u_net_trains(sample, tmp_path, monkeypatch):
    """``Outputs.first`` (``sparseseg segment --first-answer``): the trees' answer is written, and
    said, before the U-Net's first iteration; the mask at the end is the final model's."""
    monkeypatch.setattr(jobs, "PROGRESS_INTERVAL", 0.0)  # every iteration's progress is sent
    config = TrainConfig(patch_size=(16, 48, 48), iterations=2, device="cpu")
    outputs = Outputs(mask=tmp_path / "mask.tif", first=tmp_path / "first.tif")
    events = []
    run(TrainRequest((sample.image,), (sample.annotation,), sample.spacing, None, MODEL, config,
                     outputs=outputs), events.append)
    said = [i for i, e in enumerate(events) if isinstance(e, Written)]
    stepped = next(i for i, e in enumerate(events) if isinstance(e, Progress) and e.iteration >= 1)
    assert said[0] < stepped < said[1] and str(events[said[0]]).startswith("first answer written to")
    assert [e.iteration for e in events if isinstance(e, Progress)][-3:] == [1, 2, 2]  # the U-Net's steps
    assert [events[i].path for i in said] == [str(outputs.first), str(outputs.mask)]
    model = checkpoint.from_bytes(next(e for e in events if isinstance(e, ModelReady)).model)
    np.testing.assert_array_equal(read_volume(outputs.first).data,
                                  predict(_alone(model), sample.image, early=True).labels)
    np.testing.assert_array_equal(read_volume(outputs.mask).data, predict(model, sample.image).labels)


def test_a_first_answer_that_cannot_be_written_is_said_and_training_goes_on(sample, tmp_path, monkeypatch):
    """A disk that filled since the start (the write's one sentence), or a stop before the trees
    answered: a line says that no first answer was written; the job goes on as without it."""
    write = napari_io.write_volume

    def full(path, *args, **kwargs):
        if path.name == "first.tif":
            raise ValueError(f"Cannot write {path}: no space left on device.")
        return write(path, *args, **kwargs)

    monkeypatch.setattr(napari_io, "write_volume", full)
    config = TrainConfig(patch_size=(16, 48, 48), iterations=2, device="cpu")
    outputs = Outputs(mask=tmp_path / "mask.tif", first=tmp_path / "first.tif")
    events = []
    run(TrainRequest((sample.image,), (sample.annotation,), sample.spacing, None, MODEL, config,
                     outputs=outputs), events.append)
    said = [str(e) for e in events if isinstance(e, (Message, Written))]
    assert any(m.startswith("The first answer was not written: Cannot write") for m in said)
    assert said[-1].startswith("mask written to") and not outputs.first.exists()
    events = []
    run(TrainRequest((sample.image,), (sample.annotation,), sample.spacing, None, MODEL, config,
                     outputs=outputs), events.append, should_stop=lambda: True)
    said = [str(e) for e in events if isinstance(e, Message)]
    assert f"No first answer was written to {outputs.first}" in said[-1] and isinstance(events[-1], Failed)


def test_a_continued_rounds_early_answer_scores_every_round(sample, trained):
    """Its U-Net has trained and corrects what the trees say, so it must read the full trees' answer
    (and its probabilities are the model's: it carries an uncertainty map)."""
    config = TrainConfig(patch_size=(16, 48, 48), iterations=1, device="cpu")
    events = []
    run(TrainRequest((sample.image,), (sample.annotation,), sample.spacing, None, MODEL, config,
                     init=checkpoint.to_bytes(trained), early_answer=True, uncertainty=True), events.append)
    first = next(e for e in events if isinstance(e, PredictionReady))
    assert not first.early and first.uncertainty is not None


def test_a_budget_too_short_for_the_folds_ends_with_the_trees_answer(sample, monkeypatch):
    """The folds would outlast the budget: the U-Net gets nothing to learn from in time, so the
    round ends with the final trees (a continued one still swaps its new trees in)."""
    monkeypatch.setattr(stages, "_no_time_for_folds", lambda *a: True)
    config = TrainConfig(patch_size=(16, 48, 48), iterations=2, device="cpu")
    segmenter, images, annotations = prepare([sample.image], [sample.annotation], MODEL, config,
                                             sample.spacing)
    events = list(train(segmenter, images, annotations, config))
    assert [e.first_answer for e in events].index(True) == MODEL.trees == len(events) - 2
    assert events[-1].done and events[-1].reason == "time" and events[-1].iteration == 0
    assert segmenter.net.pointwise.fitted and not segmenter.net.head.weight.any()  # the trees' answer
    old = segmenter.net.pointwise
    list(train(segmenter, images, annotations, replace(config, seed=1)))
    assert segmenter.net.pointwise is not old and segmenter.net.pointwise.fitted


def test_a_budget_that_ends_before_the_u_net_warm_up_keeps_the_first_stage_answer(sample, monkeypatch):
    """A few dozen U-Net iterations only disturb the trees' answer: the round keeps the U-Net as it
    was when the pace of the first iterations shows the budget ends before the warm-up does."""
    config = TrainConfig(patch_size=(16, 48, 48), iterations=None, max_time=60.0, device="cpu")
    segmenter, images, annotations = prepare([sample.image], [sample.annotation], MODEL, config,
                                             sample.spacing)
    monkeypatch.setattr(trainer, "WARMUP", 10**7)  # more iterations than 60 s can hold
    events = list(train(segmenter, images, annotations, config))
    assert events[-1].reason == "time" and events[-1].iteration == trainer.PROBE
    assert not segmenter.net.head.weight.any()  # the U-Net as it started: exactly the trees' answer
    assert not trainer._warmup_cut_short(config, 3, 2.0, 1.0, 50)  # 0.5 s per step: 119 more fit
    assert trainer._warmup_cut_short(config, 3, 50.0, 49.0, 50)  # 10 s left at 0.5 s per step


def _one_hot(labels, n=3):
    """Logits (1, n, len(labels), 1, 1) whose top class is ``labels``."""
    return 5.0 * torch.nn.functional.one_hot(torch.tensor(labels), n).T.reshape(1, n, -1, 1, 1).float()


def test_the_judge_keeps_the_u_net_only_where_it_labels_the_painted_voxels_better():
    y = torch.tensor([0, 1, 1, 2, -1]).reshape(1, 5, 1, 1)  # the last voxel is unpainted
    judge = Judge(3)
    assert judge.improves()  # nothing judged: no evidence against the U-Net
    judge.add(_one_hot([0, 1, 1, 2, 0]), _one_hot([0, 1, 0, 2, 2]), y)
    assert judge.improves()
    np.testing.assert_array_equal(judge.counts[1], [[1, 1, 0], [0, 1, 0], [0, 0, 1]])  # predicted × true
    worse = Judge(3)
    worse.add(_one_hot([0, 1, 0, 2, 2]), _one_hot([0, 1, 1, 2, 0]), y)
    assert not worse.improves()
    level = Judge(3)  # a tie keeps the first stage; the unpainted voxel counts for neither
    level.add(_one_hot([0, 1, 1, 0, 2]), _one_hot([0, 1, 1, 0, 0]), y)
    assert not level.improves() and level.counts.sum() == 8


def test_a_judge_of_held_out_voxels_counts_only_those():
    y = torch.tensor([0, 1, 3 + 1, 3 + 2, -1]).reshape(1, 5, 1, 1)  # voxels 2 and 3 held out (k + 3)
    held = Judge(3, held_out=True)
    held.add(_one_hot([2, 2, 1, 2, 0]), _one_hot([0, 1, 0, 0, 0]), y)
    assert held.counts.sum() == 4 and held.improves()  # on the held voxels the U-Net is right, the trees not
    learnt = Judge(3)
    learnt.add(_one_hot([2, 2, 1, 2, 0]), _one_hot([0, 1, 0, 0, 0]), y)
    assert learnt.counts.sum() == 4 and not learnt.improves()  # on the others the trees are right


def test_with_a_holdout_the_u_net_never_learns_from_the_voxels_it_is_judged_on(sample, monkeypatch):
    """``judge_holdout``: patches carry held-out painted voxels, the loss never sees them (they are
    unpainted to it), and the judge counts them and only them."""
    losses, judged, loss, add = [], [], trainer.sparse_loss, Judge.add
    monkeypatch.setattr(trainer, "sparse_loss", lambda out, y, *a: losses.append(y) or loss(out, y, *a))
    monkeypatch.setattr(Judge, "add", lambda self, *a: judged.append((self.held_out, a[2])) or add(self, *a))
    config = TrainConfig(patch_size=(16, 48, 48), iterations=8, device="cpu", judge_holdout=0.3)
    segmenter, *pairs = prepare([sample.image], [sample.annotation], MODEL, config, sample.spacing)
    list(train(segmenter, *pairs, config))
    n = segmenter.n_classes
    assert len(losses) == 8 and all(int(t.max()) < n for t in losses)
    assert len(judged) == 2 and all(held for held, _ in judged)
    assert any(bool((y >= n).any()) for _, y in judged)  # the judged batches held voxels out


def test_voxels_held_out_of_the_trees_too_are_judged_against_the_final_trees(sample, monkeypatch):
    """``judge_holdout_trees``: the trees learn from the other painted voxels only, so the judge's
    rival on the held-out voxels (the U-Net's context there) is the final trees' own answer."""
    rows, judged, samples, add = [], [], stages.painted_samples, Judge.add
    monkeypatch.setattr(stages, "painted_samples", lambda *a, **k: rows.append(samples(*a, **k)) or rows[-1])
    monkeypatch.setattr(Judge, "add", lambda self, *a: judged.append(a) or add(self, *a))
    config = TrainConfig(patch_size=(16, 48, 48), iterations=8, device="cpu", judge_holdout=0.3,
                         judge_holdout_trees=True)
    segmenter, *pairs = prepare([sample.image], [sample.annotation], MODEL, config, sample.spacing)
    list(train(segmenter, *pairs, config))
    n = segmenter.n_classes
    painted = np.count_nonzero(sample.annotation)
    labels = rows[0][1]  # the trees' rows: not the held-out voxels
    assert 0.5 * painted < len(labels) < painted and int(labels.max()) < n
    assert any(bool((y >= n).any()) for *_, y in judged)  # the judge counts the held-out voxels


def test_a_u_net_no_better_than_the_trees_leaves_their_answer_and_says_so(sample, monkeypatch):
    """The batches of the last quarter of the U-Net's iterations (two of eight) are judged before
    the step learns from them. Where the U-Net labels them no better than the trees' out-of-fold
    answer, the round ends with the trees' answer (the last layer zero, the other layers keep what
    they learnt), and the job says so."""
    judged, add = [], Judge.add
    monkeypatch.setattr(Judge, "add", lambda self, *a: judged.append(a[2].shape) or add(self, *a))
    monkeypatch.setattr(Judge, "improves", lambda self: not self.counts.any())  # a judged U-Net loses
    config = TrainConfig(patch_size=(16, 48, 48), iterations=8, device="cpu")
    events = []
    run(TrainRequest((sample.image,), (sample.annotation,), sample.spacing, None, MODEL, config),
        events.append)
    assert len(judged) == 2
    ready = next(e for e in events if isinstance(e, ModelReady))
    done = [e for e in events if isinstance(e, Progress)][-1]
    assert ready.kept_first and done.kept_first and done.iteration == 8
    model = checkpoint.from_bytes(ready.model)
    assert not model.net.head.weight.any() and not model.net.head.bias.any() and not model.net.corrects
    fresh = prepare([sample.image], [sample.annotation], MODEL, config, sample.spacing)[0]
    before = fresh.net.state_dict()
    learnt = [k for k, v in model.net.state_dict().items()
              if k.split(".")[0] not in ("head", "pointwise", "stem") and v.is_floating_point()
              and not torch.equal(v, before[k])]
    assert learnt  # the U-Net's other layers keep what they learnt, for the next round
