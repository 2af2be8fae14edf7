import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_sparseseg.core.config import TrainConfig
from napari_sparseseg.core.trainer import fit, new_segmenter, train, train_step


def _segmenter(model_config, image, n_classes=2):
    return new_segmenter(model_config, [image], n_classes, (1.0, 1.0, 1.0))


def test_events_every_iteration_then_done(tiny_model, tiny_train, blob_pair):
    image, ann, _ = blob_pair
    events = list(train(_segmenter(tiny_model, image), [image], [ann], tiny_train))
    assert [e.iteration for e in events] == [1, 2, 3, 3]
    assert events[-1].done and events[-1].reason == "iterations"
    assert all(np.isfinite(e.loss) and e.voxels_per_s > 0 for e in events)
    assert events[1].elapsed >= events[0].elapsed


def test_stop_request_ends_training(tiny_model, tiny_train, blob_pair):
    image, ann, _ = blob_pair
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    config = replace(tiny_train, iterations=1000)
    events = list(train(_segmenter(tiny_model, image), [image], [ann], config, stop))
    assert events[-1].reason == "stopped" and events[-1].iteration == 2


def test_time_budget(tiny_model, tiny_train, blob_pair):
    image, ann, _ = blob_pair
    config = replace(tiny_train, iterations=None, max_time=0.5)
    started = time.perf_counter()
    events = list(train(_segmenter(tiny_model, image), [image], [ann], config))
    assert events[-1].reason == "time" and events[-1].elapsed >= 0.5
    assert time.perf_counter() - started < 10


def test_passes_over_the_painted_voxels_end_a_long_time_budget(tiny_model, tiny_train, blob_pair):
    """A small volume stops once its painted voxels were covered ``max_passes`` times on average,
    and twice the passes take about twice the iterations."""
    image, ann, _ = blob_pair
    counts = []
    for passes in (15.0, 30.0):
        config = replace(tiny_train, iterations=None, max_time=120.0, max_passes=passes)
        events = list(train(_segmenter(tiny_model, image), [image], [ann], config))
        assert events[-1].reason == "passes" and events[-1].elapsed < 120
        assert events[-1].passes >= passes and events[-1].fraction == 1.0  # the progress bar ends full
        assert 0 < events[len(events) // 2].fraction < 1
        counts.append(events[-1].iteration)
    assert counts[0] > 5 and 1.5 < counts[1] / counts[0] < 2.5


def test_the_learning_rate_reaches_zero_with_the_passes():
    from napari_sparseseg.core.trainer import _used

    config = TrainConfig(iterations=1000, max_time=100.0, max_passes=200.0)
    assert _used(config, it=10, elapsed=1.0, passes=100.0) == pytest.approx(0.5)
    assert _used(config, it=800, elapsed=1.0, passes=100.0) == pytest.approx(0.8)
    assert _used(replace(config, max_passes=None), it=10, elapsed=1.0, passes=1e9) == pytest.approx(0.01)


def test_time_the_caller_spends_between_iterations_is_not_training_time(tiny_model, tiny_train, blob_pair):
    """napari's previews and early answer run between iterations; the budget buys the same training."""
    image, ann, _ = blob_pair
    config = replace(tiny_train, iterations=None, max_time=2.0)
    started, events = time.perf_counter(), []
    for event in train(_segmenter(tiny_model, image), [image], [ann], config):
        events.append(event)
        if len(events) <= 3:
            time.sleep(0.5)  # three previews
    wall = time.perf_counter() - started
    assert len(events) > 3 and events[-1].reason == "time"
    assert 2.0 <= events[-1].elapsed <= wall - 1.4  # counted, the previews would end it at ~wall


def test_same_seed_same_losses(tiny_model, tiny_train, blob_pair):
    image, ann, _ = blob_pair
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        seg = _segmenter(tiny_model, image)
        runs.append([e.loss for e in train(seg, [image], [ann], tiny_train)])
    assert runs[0] == runs[1]


def test_a_step_with_a_non_finite_gradient_is_skipped(tiny_model, blob_pair):
    """A NaN gradient (seen now and then from bf16 convolutions on one CPU) must not reach the
    weights: the step is skipped, and the next finite one is taken."""
    image, _, _ = blob_pair
    net = _segmenter(tiny_model, image).net.train()
    optim = torch.optim.AdamW(net.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 16, 16, generator=gen).numpy()
    y = torch.randint(0, 2, (2, 8, 16, 16), generator=gen).numpy()
    weight, cpu = torch.ones(2), torch.device("cpu")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    handle = net.head.weight.register_hook(lambda grad: torch.full_like(grad, float("nan")))
    loss = train_step(net, optim, scaler, x, y, weight, 0.5, cpu)
    handle.remove()
    assert np.isfinite(loss)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    train_step(net, optim, scaler, x, y, weight, 0.5, cpu)
    after = net.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert not torch.equal(before["head.weight"], after["head.weight"])


OPTIONS = [{"deep_supervision": True}, {"blocks": "residual", "downsample": "strided"}]


@pytest.mark.parametrize("option", OPTIONS)
def test_architecture_options_learn(tiny_model, tiny_train, blob_pair, option):
    """The U-Net's architecture options (ablation rows of docs/benchmarks.md) train: the painted
    voxels' loss falls and every layer's weights moved."""
    image, ann, _ = blob_pair
    seg = _segmenter(replace(tiny_model, features=(4, 8, 16), **option), image)
    before = {k: v.clone() for k, v in seg.net.state_dict().items()}
    events = list(train(seg, [image], [ann], replace(tiny_train, iterations=30)))
    assert events[-1].loss < events[0].loss
    after = seg.net.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))


def test_continues_from_existing_weights(tiny_model, tiny_train, blob_pair):
    image, ann, _ = blob_pair
    seg = _segmenter(tiny_model, image)
    list(train(seg, [image], [ann], tiny_train))
    before = {k: v.clone() for k, v in seg.net.state_dict().items()}
    list(train(seg, [image], [ann], replace(tiny_train, iterations=1)))
    after = seg.net.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(torch.allclose(before[k], after[k], atol=0.1) for k in before)


def test_fit_with_several_pairs(tiny_model, tiny_train, blob_pair):
    image, ann, _ = blob_pair
    other = np.zeros((9, 12, 10), np.float32)
    other_ann = np.zeros(other.shape, np.uint8)
    other_ann[4] = 1
    other_ann[4, 5:8, 4:7] = 3  # class 2 painted only in the second volume
    other[4, 5:8, 4:7] = 3.0
    seen = []
    seg = fit([image, other], [ann, other_ann], tiny_model, tiny_train, on_progress=seen.append)
    assert seg.n_classes == 3 and seen[-1].done


def test_fit_refuses_model_with_fewer_classes(tiny_model, tiny_train, blob_pair):
    image, ann, _ = blob_pair
    seg = _segmenter(tiny_model, image, n_classes=2)
    ann3 = ann.copy()
    ann3[0, 0, 0] = 3
    with pytest.raises(ValueError, match="predicts 2 classes"):
        fit([image], [ann3], tiny_model, tiny_train, init=seg)


def test_weight_average_keeps_the_mean_of_the_last_share_of_steps(tiny_model, tiny_train, blob_pair):
    """``weight_average`` 0.5 over 4 iterations: the result is the mean weights after steps 2, 3 and 4."""
    image, ann, _ = blob_pair
    segmenter = _segmenter(tiny_model, image)
    config = replace(tiny_train, iterations=4, weight_average=0.5)
    after = []
    for event in train(segmenter, [image], [ann], config):
        if not event.done:
            after.append([p.detach().clone() for p in segmenter.net.parameters()])
    assert len(after) == 4
    for i, kept in enumerate(segmenter.net.parameters()):
        mean = torch.stack([step[i] for step in after[1:]]).mean(0)
        assert torch.allclose(kept, mean, atol=1e-6)
    assert not torch.equal(after[-1][0], next(segmenter.net.parameters()))  # not the last step's


def test_weight_average_is_checked():
    from napari_sparseseg.core.config import TrainConfig

    with pytest.raises(ValueError, match="weight_average"):
        TrainConfig(weight_average=1.0)
