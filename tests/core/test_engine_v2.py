"""Engine v2: filter-bank stem, the perceptron first stage, normalisation from painted structures."""

import io

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_sparseseg.core import checkpoint, filters
from napari_sparseseg.core.config import FILTER_SIGMAS, ModelConfig, TrainConfig, preset, replace
from napari_sparseseg.core.inference import model_inputs, predict
from napari_sparseseg.core.metrics import evaluate
from napari_sparseseg.core.normalize import fit_normalization
from napari_sparseseg.core.synthetic import make_sample
from napari_sparseseg.core.trainer import fit, prepare, train

PERCEPTRON = ModelConfig(features=(8, 16, 32), filters=FILTER_SIGMAS, pointwise=64)  # before trees


def test_smoothing_equals_scipy_with_nearest_borders():
    image = np.random.default_rng(0).random((12, 20, 18)).astype(np.float32)
    sigmas = (0.8, 2.0, 1.5)
    ours = filters.smooth(torch.from_numpy(image)[None, None], sigmas)[0, 0].numpy()
    reference = ndimage.gaussian_filter(image, sigmas, mode="nearest", truncate=3.0)
    np.testing.assert_allclose(ours, reference, atol=2e-3)  # scipy rounds the radius, we ceil it


def test_hessian_eigenvalues_equal_numpy():
    rng = np.random.default_rng(1)
    matrices = rng.normal(size=(500, 3, 3))
    matrices = (matrices + matrices.transpose(0, 2, 1)) / 2
    matrices[:5] = np.eye(3) * 2.0  # repeated eigenvalues
    h = {(i, j): torch.from_numpy(matrices[:, i, j]) for i in range(3) for j in range(i, 3)}
    ours = torch.stack(filters.hessian_eigenvalues(h), 1).numpy()
    reference = np.linalg.eigvalsh(matrices)[:, ::-1]
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_the_bank_sees_a_structure_one_voxel_across():
    # planes of +1 and -1 alternating along z (spacing 2): σ ≈ 0 leaves them unsmoothed
    image = np.resize(np.float32([1, -1]), (6, 6, 16)).T.copy()
    x = torch.from_numpy(image)[None, None]
    compact = filters.FilterBank((1e-4,), (2.0, 1.0, 1.0)).raw(x)[0, :, 2:-2]
    wide = filters.FilterBank((1e-4,), (2.0, 1.0, 1.0), "wide").raw(x)[0, :, 2:-2]
    log = 2  # the intensity, then the scale's smoothing, Laplacian, gradient magnitude, eigenvalues
    torch.testing.assert_close(compact[log], (-1 - 2 - 1) / 2**2 * compact[0])  # (x₋ − 2x + x₊) / 2²
    torch.testing.assert_close(wide[log], torch.zeros_like(wide[log]))  # models before 2026-12-06: blind


def test_both_stencils_are_the_compact_bank_with_the_wide_one_at_the_finest_scale():
    x = torch.from_numpy(np.random.default_rng(7).random((14, 18, 16)).astype(np.float32))[None, None]
    compact, wide, both = (filters.FilterBank((1.0, 2.5), (2.0, 1.0, 1.0), d).raw(x)[0]
                           for d in ("compact", "wide", "both"))
    assert both.shape[0] == filters.n_features((1.0, 2.5), "both") == compact.shape[0] + 4
    torch.testing.assert_close(both[:7], compact[:7])  # the intensity and σ 1, compact
    torch.testing.assert_close(both[7], wide[2])  # σ 1's Laplacian, then its eigenvalues, wide
    torch.testing.assert_close(both[8:11], wide[4:7])
    torch.testing.assert_close(both[11:], compact[7:])  # σ 2.5


def test_the_structure_tensor_of_a_ramp_is_its_squared_gradient():
    # intensity 0.5 z + 0.2 y (spacing 2 in z: 1.0 per finest-axis unit): one eigenvalue |∇|², two zero
    z, y, _ = np.indices((24, 42, 42), dtype=np.float32)
    x = torch.from_numpy(1.0 * z + 0.2 * y)[None, None]
    bank = filters.FilterBank((1.0,), (2.0, 1.0, 1.0), tensors=(1.0, 2.0))
    features = bank.raw(x)[0]
    assert features.shape[0] == filters.n_features((1.0,), tensors=(1.0, 2.0)) == 1 + 6 + 6
    assert bank.halo() == (10, 19, 19)
    inside = (slice(None), slice(10, 14), slice(19, 23), slice(19, 23))  # beyond the borders' reach
    expected = torch.tensor([0.5**2 + 0.2**2, 0.0, 0.0])[:, None, None, None].expand(3, 4, 4, 4)
    for first in (7, 10):  # the tensors at σ 1, then at σ 2
        torch.testing.assert_close(features[first : first + 3][inside], expected, atol=1e-4, rtol=1e-4)


def test_a_structure_tensor_needs_the_filter_bank():
    with pytest.raises(ValueError, match="need filter-bank features"):
        ModelConfig(tensors=(2.0,))
    with pytest.raises(ValueError, match="must be positive"):
        ModelConfig(filters=(1.0,), tensors=(0.0,))


BANKS = [("compact", ()), ("both", ()), ("compact", (1.0, 2.5))]  # the last with structure tensors


@pytest.mark.parametrize("derivatives, tensors", BANKS)
def test_feature_volume_does_not_depend_on_the_slab_size(monkeypatch, derivatives, tensors):
    bank = filters.FilterBank((1.0, 2.5), (2.0, 1.0, 1.0), derivatives, tensors)
    image = np.random.default_rng(2).random((23, 17, 19)).astype(np.float32)
    whole = bank.volume(image)
    assert whole.shape == (filters.n_features((1.0, 2.5), derivatives, tensors), 23, 17, 19)
    monkeypatch.setattr(filters, "SLAB_VOXELS", 17 * 19 * 3)  # 3-plane slabs
    np.testing.assert_allclose(bank.volume(image), whole, rtol=1e-3, atol=1e-3)  # float16 rounding


def test_feature_volumes_are_the_float32_features_rounded_once_to_float16():
    bank = filters.FilterBank((1.0, 3.0), (2.0, 1.0, 1.0), tensors=(1.0,))
    # a mean 50 times the spread: stored raw, float16 would keep little of the smoothed channels
    image = (5 + 0.1 * np.random.default_rng(6).random((12, 20, 18))).astype(np.float32)
    raw = torch.cat([values for _, values in bank.scales(image)])
    torch.testing.assert_close(raw, bank.raw(torch.from_numpy(image)[None, None])[0], atol=1e-4, rtol=1e-4)
    bank.fit_scale(raw.flatten(1).T[::7])
    exact = bank.standardize(raw[None].clone())[0].numpy()
    stored = bank.volume(image)
    assert stored.dtype == np.float16
    np.testing.assert_allclose(stored.astype(np.float32), exact, rtol=1e-3, atol=1e-3)


def test_training_fits_each_scale_on_painted_voxels_of_every_image_before_storing_it():
    from napari_sparseseg.core.pointwise import painted_index
    from napari_sparseseg.core.trainer import new_segmenter, training_inputs

    samples = [make_sample(shape=(12, 24, 20), slices_per_axis=1, seed=s) for s in (0, 1)]
    images, annotations = [s.image for s in samples], [s.annotation for s in samples]
    config = ModelConfig(features=(4, 8), filters=(1.0, 3.0), trees=10)
    segmenter = new_segmenter(config, images, 2, (1.0, 1.0, 1.0))
    targets = [a.astype(np.int16) - 1 for a in annotations]
    stored = training_inputs(segmenter, images, targets, np.random.default_rng(0))
    stem = segmenter.net.stem
    assert bool(stem.fitted) and all(v.dtype == np.float16 for v in stored)
    raw = [torch.cat([v for _, v in stem.scales(segmenter.normalization.apply(im))]) for im in images]
    index = painted_index(targets, np.random.default_rng(0))
    painted = torch.cat([r.flatten(1)[:, i] for r, i in zip(raw, index)], 1).T
    torch.testing.assert_close(stem.shift.flatten(), painted.mean(0))  # all images at once
    torch.testing.assert_close(stem.scale.flatten(), 1 / painted.std(0))
    for r, v in zip(raw, stored):
        np.testing.assert_allclose(v, stem.standardize(r[None].clone())[0].numpy(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("derivatives, tensors", BANKS)
def test_features_of_a_crop_are_the_whole_volumes_there(monkeypatch, derivatives, tensors):
    bank = filters.FilterBank((1.0, 6.0), (2.0, 1.0, 1.0), derivatives, tensors)  # σ 6 reaches past the crop
    image = np.random.default_rng(5).random((21, 30, 26)).astype(np.float32)
    whole = bank.volume(image, extra=2)
    crop = (slice(3, 17), slice(0, 11), slice(20, None))
    monkeypatch.setattr(filters, "SLAB_VOXELS", 11 * 6 * 4)  # 4-plane slabs
    part = bank.volume(image, extra=2, crop=crop)
    assert part.shape == (filters.n_features((1.0, 6.0), derivatives, tensors) + 2, 14, 11, 6)
    np.testing.assert_allclose(part[:-2], whole[(slice(None, -2), *crop)], rtol=1e-3, atol=1e-3)


def test_features_are_invariant_to_flips():
    bank = filters.FilterBank((1.0, 2.0), (1.0, 1.0, 1.0), tensors=(1.0,))
    image = np.random.default_rng(3).random((16, 16, 16)).astype(np.float32)
    flipped = bank.volume(image[:, ::-1, :].copy())[:, :, ::-1, :]
    np.testing.assert_allclose(flipped, bank.volume(image), rtol=1e-3, atol=1e-3)  # float16 rounding


def test_ct_window_comes_from_the_painted_structures():
    rng = np.random.default_rng(4)
    image = np.full((20, 40, 40), -1000.0)  # air
    image[:, 10:30, 10:30] = rng.normal(40, 10, (20, 20, 20))  # soft tissue
    image[:, 15:20, 15:20] = 1500.0  # bone
    annotation = np.zeros(image.shape, np.uint8)
    annotation[10] = 1
    annotation[10, 21:29, 21:29] = 2  # soft tissue painted, bone not
    whole = fit_normalization([image])
    painted = fit_normalization([image], [annotation])
    assert whole.high - whole.low > 2000
    assert painted.high - painted.low < 300  # soft tissue is no longer squeezed
    assert painted.low < 0 < 40 < painted.high and abs(painted.mean - 40) < 5


def test_only_background_painted_falls_back_to_the_whole_volume():
    image = np.random.default_rng(5).random((10, 10, 10))
    annotation = np.ones(image.shape, np.uint8)
    assert fit_normalization([image], [annotation]) == fit_normalization([image])


@pytest.fixture(scope="module")
def trained():
    sample = make_sample(shape=(24, 64, 64), slices_per_axis=2, seed=1)
    model = PERCEPTRON
    config = TrainConfig(patch_size=(16, 48, 48), iterations=30, pointwise_steps=600, device="cpu", seed=0)
    segmenter = fit([sample.image], [sample.annotation], model, config, sample.spacing,
                    class_names=sample.class_names)
    return sample, segmenter


def test_default_engine_learns_tubules_in_a_small_budget(trained):
    sample, segmenter = trained
    labels = predict(segmenter, sample.image).labels
    result = evaluate(labels, sample.truth, n_classes=3, mask=sample.annotation == 0,
                      class_names=sample.class_names)
    dice = {name: m["dice"] for name, m in result["classes"].items()}
    assert dice["tubule lumen"] >= 0.95 and dice["tubule wall"] >= 0.93, dice
    assert bool(segmenter.net.stem.fitted)


def test_a_few_u_net_iterations_keep_the_pointwise_answer(trained):
    """The warm-up: a short budget that leaves the U-Net 10 iterations must not undo the first stage
    (without it 0.7 % of the voxels flipped here; with it 0.01 %)."""
    sample, _ = trained
    model = PERCEPTRON
    config = TrainConfig(patch_size=(16, 48, 48), iterations=10, pointwise_steps=300, device="cpu", seed=0)
    segmenter = fit([sample.image], [sample.annotation], model, config, sample.spacing)
    features = model_inputs(segmenter, segmenter.normalization.apply(sample.image))  # stored as float16
    features = torch.from_numpy(features)[None].float()
    with torch.no_grad():
        first = segmenter.net.pointwise(features).argmax(1)[0].numpy()
    labels = predict(segmenter, sample.image).labels
    assert np.mean(labels == first) > 0.998


def test_the_u_net_stage_freezes_the_classifier_and_the_next_round_trains_it_again(trained):
    """Frozen means no backward pass through it (a U-Net step 16 % faster), yet Continue training
    still refits it to the new strokes."""
    sample, _ = trained
    model = PERCEPTRON
    config = TrainConfig(patch_size=(16, 48, 48), iterations=3, pointwise_steps=20, device="cpu", seed=0)
    segmenter, images, annotations = prepare([sample.image], [sample.annotation], model, config,
                                             sample.spacing)
    classifier = segmenter.net.pointwise
    for event in train(segmenter, images, annotations, config):
        if event.first_answer:
            first = [p.detach().clone() for p in classifier.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(first, classifier.parameters()))
    assert not any(p.requires_grad for p in classifier.parameters())
    list(train(segmenter, images, annotations, replace(config, seed=1)))  # Continue training
    assert not all(torch.equal(a, b) for a, b in zip(first, classifier.parameters()))


def test_the_u_net_stage_reads_the_frozen_classifier_once_instead_of_every_step(trained):
    """Its logits are computed once per volume and travel with the patches (a U-Net step ran 14 %
    faster with 64 units, 40 % with 256); the classifier module itself never runs in the stage."""
    sample, _ = trained
    model = PERCEPTRON
    config = TrainConfig(patch_size=(16, 48, 48), iterations=4, pointwise_steps=20, device="cpu", seed=0)
    segmenter, images, annotations = prepare([sample.image], [sample.annotation], model, config,
                                             sample.spacing)
    calls = []
    segmenter.net.pointwise.register_forward_hook(lambda *a: calls.append(1))
    assert [e.iteration for e in train(segmenter, images, annotations, config) if e.done] == [4]
    assert calls == []


def test_precomputed_classifier_logits_give_the_same_output():
    net = _new_net()
    torch.nn.init.normal_(net.head.weight)
    x = torch.randn(2, net.stem.out_channels, 8, 16, 16)
    with torch.no_grad():
        both = torch.cat([x, net.pointwise(x)], 1)
        torch.testing.assert_close(net.from_features(both), net.from_features(x))


def test_continue_training_refits_the_classifier_from_new_weights(trained):
    """A classifier continued from the last round generalised worse to new strokes than a new one;
    the next round's classifier must not depend on the last round's weights (the U-Net's do)."""
    sample, segmenter = trained
    config = TrainConfig(patch_size=(16, 48, 48), iterations=2, pointwise_steps=20, device="cpu", seed=3)
    rounds = []
    for scramble in (False, True):
        again = checkpoint.from_bytes(checkpoint.to_bytes(segmenter))
        if scramble:
            with torch.no_grad():
                for p in again.net.pointwise.parameters():
                    p.normal_()
        fit([sample.image], [sample.annotation], again.config, config, sample.spacing, init=again)
        rounds.append(again)
    for a, b in zip(*(r.net.pointwise.parameters() for r in rounds)):
        torch.testing.assert_close(a, b)
    before = dict(segmenter.net.encoders.named_parameters())
    for name, p in rounds[0].net.encoders.named_parameters():
        torch.testing.assert_close(p, before[name], atol=1e-2, rtol=0)  # the U-Net continued


def test_stopping_a_continued_round_early_keeps_the_trained_classifier(trained):
    """The classifier is refitted from new weights every round; a Stop pressed before that fit
    completes must not leave a half-trained classifier in place of a good one."""
    sample, segmenter = trained
    again = checkpoint.from_bytes(checkpoint.to_bytes(segmenter))
    config = TrainConfig(patch_size=(16, 48, 48), iterations=5, pointwise_steps=200, device="cpu", seed=3)
    _, images, annotations = prepare([sample.image], [sample.annotation], again.config, config,
                                     sample.spacing, init=again)
    polls = []
    list(train(again, images, annotations, config, stop=lambda: polls.append(1) or len(polls) > 3))
    for a, b in zip(again.net.pointwise.parameters(), segmenter.net.pointwise.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    expected = predict(segmenter, sample.image).labels
    np.testing.assert_array_equal(predict(again, sample.image).labels, expected)


def _new_net(**model):
    config = ModelConfig(features=(4, 8), filters=(1.0,), pointwise=8, **model)
    return checkpoint.Segmenter.create(config, 3, fit_normalization([np.zeros((4, 4, 4))])).net


def test_training_starts_at_the_pointwise_answer_with_a_soft_prior():
    net = _new_net(prior_weight=0.3).train()
    x = torch.randn(1, net.stem.out_channels, 8, 16, 16)
    start = net.pointwise(x)
    logits = net.from_features(x)
    torch.testing.assert_close(logits, 0.3 * torch.log_softmax(start, 1))
    assert torch.equal(logits.argmax(1), start.argmax(1))


def test_prediction_weighs_the_final_first_stage_more_than_training_did():
    net = _new_net(prior_weight=0.3, predict_prior_weight=0.6)
    torch.nn.init.normal_(net.head.weight)
    x = torch.randn(1, net.stem.out_channels, 8, 16, 16)
    with torch.no_grad():
        log_p = torch.log_softmax(net.pointwise(x), 1)
        trained = net.train().from_features(x) - 0.3 * log_p  # the U-Net's own correction
        torch.testing.assert_close(net.eval().from_features(x), trained + 0.6 * log_p)
    net.config = replace(net.config, predict_prior_weight=None)  # None: the training weight
    with torch.no_grad():
        torch.testing.assert_close(net.from_features(x), trained + 0.3 * log_p)
    assert preset("fast").model.predict_prior_weight == 0.6
    with pytest.raises(ValueError, match="predict_prior_weight"):
        ModelConfig(filters=(1.0,), trees=10, predict_prior_weight=-1)


def test_prediction_skips_an_untrained_u_net_exactly(monkeypatch):
    net = _new_net()
    x = torch.randn(1, net.stem.out_channels, 8, 16, 16)
    full = net.train().from_features(x).detach()  # training mode always runs the U-Net
    unet, calls = net.unet, []
    monkeypatch.setattr(net, "unet", lambda *a: calls.append(1) or unet(*a))
    with torch.no_grad():
        torch.testing.assert_close(net.eval().from_features(x), full, rtol=0, atol=0)
        assert calls == []  # its last layer is zero: skipped, and the same numbers
        torch.nn.init.normal_(net.head.weight)
        assert not torch.allclose(net.from_features(x), full) and calls == [1]  # a trained one runs


def test_the_u_net_sees_the_pointwise_probabilities():
    net = _new_net()
    assert net.encoders[0][0].in_channels == net.stem.out_channels + 3
    torch.nn.init.normal_(net.head.weight)
    x = torch.randn(1, net.stem.out_channels, 8, 16, 16)
    before = net.from_features(x) - 0.3 * torch.log_softmax(net.pointwise(x), 1)
    with torch.no_grad():
        net.pointwise[-1].bias += torch.tensor([5.0, 0.0, -5.0])
    after = net.from_features(x) - 0.3 * torch.log_softmax(net.pointwise(x), 1)
    assert not torch.allclose(before, after)  # only the U-Net's context input changed


def test_the_prediction_weight_travels_in_the_model_file(tmp_path):
    config = ModelConfig(features=(4, 8), filters=(1.0,), pointwise=8, predict_prior_weight=0.6)
    segmenter = checkpoint.Segmenter.create(config, 3, fit_normalization([np.zeros((4, 4, 4))]))
    payload = torch.load(io.BytesIO(checkpoint.to_bytes(segmenter)), weights_only=True)
    assert checkpoint.from_bytes(checkpoint.to_bytes(segmenter)).config.predict_prior_weight == 0.6
    del payload["model_config"]["predict_prior_weight"]  # a file written before the setting existed
    torch.save(payload, tmp_path / "old.pt")
    assert checkpoint.load(tmp_path / "old.pt").config.predict_prior_weight is None  # predicts as before


def test_a_model_from_the_first_engine_v2_asks_to_be_trained_again(trained, tmp_path):
    _, segmenter = trained
    payload = torch.load(io.BytesIO(checkpoint.to_bytes(segmenter)), weights_only=True)
    del payload["model_config"]["prior_weight"]
    path = tmp_path / "old.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match="earlier development version.*train"):
        checkpoint.load(path)


def test_model_with_stem_round_trips_and_continues_with_its_standardisation(trained, tmp_path):
    sample, segmenter = trained
    path = checkpoint.save(segmenter, tmp_path / "m.pt")
    loaded = checkpoint.load(path)
    assert torch.equal(loaded.net.stem.shift, segmenter.net.stem.shift)
    expected = predict(segmenter, sample.image).labels
    np.testing.assert_array_equal(predict(loaded, sample.image).labels, expected)
    shift = loaded.net.stem.shift.clone()
    config = TrainConfig(patch_size=(16, 48, 48), iterations=2, pointwise_steps=5, device="cpu")
    part = (slice(None), slice(0, 40))
    fit([sample.image[part]], [sample.annotation[part]], loaded.config, config, sample.spacing, init=loaded)
    assert torch.equal(loaded.net.stem.shift, shift)  # the U-Net keeps the input scale it learned


def test_pointwise_needs_filters():
    with pytest.raises(ValueError, match="filter"):
        ModelConfig(pointwise=8)


def test_a_volume_whose_features_would_not_fit_is_predicted_chunk_by_chunk(trained, monkeypatch):
    from napari_sparseseg.core import inference

    sample, segmenter = trained
    config = inference.InferConfig(window=(8, 16, 16), device="cpu")
    whole = predict(segmenter, sample.image, config)
    monkeypatch.setattr(inference, "MAX_FEATURE_BYTES", 1000)
    chunked = predict(segmenter, sample.image, config)
    assert chunked.labels.shape == whole.labels.shape and chunked.labels.dtype == np.uint8
    assert np.mean(chunked.labels == whole.labels) > 0.999  # equal but for ties
    assert np.abs(chunked.probabilities.astype(int) - whole.probabilities).max() <= 1


def test_stored_features_round_to_float16_as_numpy_does():
    """Features are stored as float16 by torch's cast; it must give numpy's values to the bit, also
    for ties, float16's subnormals and values clamped at its largest."""
    bank = filters.FilterBank((1.0,), (1.0, 1.0, 1.0))
    top = float(np.finfo(np.float16).max)
    special = [1 + 2.0**-11, 1 + 3 * 2.0**-11, 2.0**-20, -(2.0**-24) * 1.5, 6e-8, 1e5, -1e9, top, 0.0, -0.0]
    values = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32) * 1000
    values.reshape(-1)[: len(special)] = special
    expected = np.clip(values, -top, top).astype(np.float16)
    out = np.full((bank.out_channels, 3, 4, 5), 7, np.float16)
    bank.store(out, 1, torch.from_numpy(values.copy()))
    np.testing.assert_array_equal(out[1:3].view(np.uint16), expected.view(np.uint16))
    assert (out[0] == 7).all() and (out[3:] == 7).all()
