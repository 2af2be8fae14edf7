"""Training from sparse annotations as a generator of progress events.

:func:`train` yields a :class:`Progress` after every iteration so a caller (the CLI,
the napari worker) can show progress and stop at once. :func:`fit` is the one-call
form: it validates the data, builds or checks the segmenter and runs :func:`train`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch

from . import device as dev
from .checkpoint import Segmenter
from .config import InferConfig, ModelConfig, TrainConfig, pools_for_spacing
from .events import Progress
from .judge import LAST, Judge
from .loss import class_weights, sparse_loss
from .memory import check_memory
from .normalize import fit_normalization
from .pointwise import painted_index, volume_logits
from .sampling import PatchSampler, annotation_to_target, fit_patch, held_apart
from .stages import ANSWER, NO_TIME, pointwise_stage, tree_stage
from .trees import TreeClassifier
from .validate import check_pair, count_classes

WARMUP = 50  # U-Net iterations of linear learning-rate warm-up after the pointwise stage
PROBE = 3  # U-Net iterations timed to tell whether the budget allows its warm-up


def train(
    segmenter: Segmenter,
    images: Sequence[np.ndarray],
    annotations: Sequence[np.ndarray],
    config: TrainConfig,
    stop: Callable[[], bool] | None = None,
) -> Iterator[Progress]:
    """Fine-tune ``segmenter`` in place on painted voxels, yielding every iteration.

    Parameters
    ----------
    segmenter : Segmenter
        Trained further from its current weights (the refine loop).
    images, annotations : sequences of (Z, Y, X) arrays
        Validated pairs; annotation 0 = unlabeled, 1 = background, k+1 = class k.
    config : TrainConfig
    stop : callable returning bool, optional
        Polled before every iteration; training ends when it returns True.
    """
    device = dev.resolve_device(config.device)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    clock, it, loss = Clock(), 0, float("nan")
    continuing = segmenter.net.stem is not None and bool(segmenter.net.stem.fitted)
    sampler = _sampler(segmenter, images, annotations, config, rng)
    trees_first = isinstance(segmenter.net.pointwise, TreeClassifier)
    if trees_first and config.judge_holdout and config.judge_holdout_trees:
        sampler.hold_out(config.judge_holdout)
    unet = True  # whether the U-Net stage gets its turn
    if segmenter.net.pointwise is not None:
        last = None
        stage = tree_stage if isinstance(segmenter.net.pointwise, TreeClassifier) else pointwise_stage
        for event in stage(segmenter, sampler, config, rng, stop, clock, continuing):
            unet = unet and event is not NO_TIME
            if event is NO_TIME or (event is ANSWER and (last is None or (stop is not None and stop()))):
                continue
            last = replace(last, first_answer=True) if event is ANSWER else event
            with clock.away():  # napari predicts its early answer here: not training time
                yield last
    first = clock()  # the U-Net stage's schedule spans the time left
    warmup = WARMUP if segmenter.net.pointwise is not None else 0
    weight = _weights(annotations, segmenter.n_classes, config, device)
    net = dev.prepare(segmenter.net, device).train()
    optim = torch.optim.AdamW(_trainable(net), lr=config.learning_rate, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=_needs_scaler(device))
    voxels = config.batch_size * int(np.prod(sampler.patch))
    averaged, kept, probe = None, copy.deepcopy(net.state_dict()) if warmup else None, None
    # the trees' answers on painted voxels are out-of-fold: a fair rival (a perceptron's are not)
    judge = Judge(segmenter.n_classes, held_out=config.judge_holdout > 0) if trees_first else None
    if judge is not None and judge.held_out and not config.judge_holdout_trees:
        sampler.hold_out(config.judge_holdout)
    painted, passes = max(sum(int(np.count_nonzero(a)) for a in annotations), 1), 0.0
    while True:
        stopped = stop is not None and stop()
        reason = "stopped" if stopped else _budget_reached(config, it, clock(), passes) if unet else "time"
        if reason:
            break
        if it == 0 and net.pointwise is not None and not sampler.extra:  # the perceptron's logits, once
            sampler.extra = [volume_logits(net.pointwise, v, device) for v in sampler.images]
        used = _used(config, it, clock(), first, passes)
        _set_lr(optim, config, it, used, warmup)
        x, y = sampler.sample(config.batch_size)
        passes += np.count_nonzero(y >= 0) / painted  # each painted voxel's coverage, on average
        judged = judge if judge is not None and used >= 1.0 - LAST else None
        loss = train_step(net, optim, scaler, x, y, weight, config.dice_weight, device, judged)
        it += 1
        elapsed = clock()
        probe = elapsed if it == 1 else probe
        if kept is not None and it == PROBE:
            if _warmup_cut_short(config, it, elapsed, probe, warmup):
                net.load_state_dict(kept)
                reason = "time"
                break
            kept = None
        averaged = _average(averaged, net, config, _used(config, it, elapsed, first, passes))
        with clock.away():  # napari's previews run here
            yield Progress(it, loss, elapsed, voxels * it / elapsed, config.iterations, config.max_time,
                           passes=passes, max_passes=config.max_passes)
    if averaged is not None:
        net.load_state_dict(averaged.module.state_dict())
    kept_first = judge is not None and net.corrects and not judge.improves()
    if kept_first:
        net.drop_correction()
    net.eval()
    elapsed = clock()
    yield Progress(
        it, loss, elapsed, voxels * it / max(elapsed, 1e-9), config.iterations, config.max_time,
        done=True, reason=reason, passes=passes, max_passes=config.max_passes, kept_first=kept_first,
    )


class Clock:
    """Training time: wall time since the start less the time spent :meth:`away` (the caller's work
    between iterations: napari's early answer and previews), so that a time budget buys the same
    training in napari as on the command line; the job itself takes that much longer."""

    def __init__(self):
        self.start, self.paused = time.perf_counter(), 0.0

    def __call__(self) -> float:
        return time.perf_counter() - self.start - self.paused

    @contextmanager
    def away(self):
        left = time.perf_counter()
        try:
            yield
        finally:
            self.paused += time.perf_counter() - left


def _warmup_cut_short(config: TrainConfig, it: int, elapsed: float, probe: float, warmup: int) -> bool:
    """Whether the time budget ends before the U-Net's warm-up, judged from the pace of the
    iterations since the first. Then the round keeps the U-Net as it was: a few dozen iterations
    only disturb the first stage's answer (aorta CT at 20 s: the trees alone 0.561, the trees and
    36 U-Net iterations 0.446)."""
    if not config.max_time or it < 2:
        return False
    pace = (elapsed - probe) / (it - 1)
    return it + (config.max_time - elapsed) / max(pace, 1e-9) < warmup


def ready(segmenter) -> bool:
    """Whether the segmenter can predict: false after a first round stopped before its trees were fitted."""
    return bool(getattr(segmenter.net.pointwise, "fitted", True))


def _trainable(net) -> list:
    """The U-Net stage trains everything but the pointwise classifier (it keeps its first-stage answer).

    The classifier is frozen (``requires_grad`` off), not only left out of the optimiser: autograd
    then skips its backward pass, which made a U-Net step 16 % slower (64 hidden units, 2 cores).
    """
    if net.pointwise is not None:
        net.pointwise.requires_grad_(False)
    return [p for p in net.parameters() if p.requires_grad]


def _sampler(segmenter, images, annotations, config, rng) -> PatchSampler:
    patch = fit_patch(config.patch_size, np.max([im.shape for im in images], 0), segmenter.config.total_pool)
    targets = [annotation_to_target(a) for a in annotations]
    return PatchSampler(
        training_inputs(segmenter, images, targets, rng),
        targets,
        patch,
        segmenter.spacing,
        rng,
        augment=config.augment,
        n_classes=segmenter.n_classes,
        intensity=config.intensity_augment,
        rotate=config.rotate_augment,
        elastic=config.elastic_augment,
    )


def training_inputs(segmenter, images, targets, rng) -> list[np.ndarray]:
    """The network's inputs (C, Z, Y, X) for each image: normalised intensity or filter features.

    A new model's filter standardisation is fitted here, scale by scale from (a subset of) the
    painted voxels of every image, before that scale's features are stored as float16.
    """
    volumes = [segmenter.normalization.apply(im) for im in images]
    stem = segmenter.net.stem
    if stem is None:
        return [v[None] for v in volumes]
    if bool(stem.fitted):
        stored = [stem.volume(v) for v in volumes]
    else:
        stored = stem.fit_volumes(volumes, painted_index(targets, rng))
    stem.remember(volumes[0], stored[0])  # the image napari's early answer predicts
    return stored


def _weights(annotations, n_classes, config, device):
    if not config.class_balance:
        return None
    return torch.from_numpy(class_weights(annotations, n_classes)).to(device)


def _needs_scaler(device) -> bool:
    return device.type == "cuda" and not torch.cuda.is_bf16_supported()


def _budget_reached(config: TrainConfig, it: int, elapsed: float, passes: float = 0.0) -> str:
    if config.iterations is not None and it >= config.iterations:
        return "iterations"
    if config.max_time is not None and elapsed >= config.max_time:
        return "time"
    if config.max_passes is not None and passes >= config.max_passes:
        return "passes"
    return ""


def _set_lr(optim, config: TrainConfig, it: int, used: float, warmup: int = 0) -> None:
    """Linear warm-up over ``warmup`` iterations, then polynomial decay to zero over whichever
    budget is further used up (the share ``used``, :func:`_used`).

    Ending at (almost) zero lets the last iterations settle the weights instead of moving the
    decision boundary from one step to the next. The share leaves out the seconds the pointwise
    stage took; the schedule spans the rest. The warm-up keeps Adam's first, full-size
    steps from overriding the pointwise answer when a short budget leaves only a few iterations.
    """
    lr = config.learning_rate * max(1.0 - used, 0.0) ** 0.9 * min(1.0, (it + 1) / (warmup + 1))
    for group in optim.param_groups:
        group["lr"] = lr


def _used(config: TrainConfig, it: int, elapsed: float, first: float = 0.0, passes: float = 0.0) -> float:
    """The share of the U-Net stage's budget used: iterations, time after ``first`` or passes over
    the painted voxels, whichever is furthest."""
    used = it / config.iterations if config.iterations else 0.0
    if config.max_passes:
        used = max(used, passes / config.max_passes)
    if config.max_time:
        used = max(used, (elapsed - first) / max(config.max_time - first, 1e-9))
    return used


def _average(averaged, net, config: TrainConfig, used: float):
    """Add ``net``'s weights to the running average once the last ``weight_average`` share of the
    stage has begun (:class:`torch.optim.swa_utils.AveragedModel`, equal weights); returns it."""
    if not config.weight_average or used < 1.0 - config.weight_average:
        return averaged
    if averaged is None:
        averaged = torch.optim.swa_utils.AveragedModel(net)
    averaged.update_parameters(net)
    return averaged


def train_step(net, optim, scaler, x, y, weight, dice_weight, device, judge: Judge | None = None) -> float:
    """One optimiser step of the U-Net stage on numpy inputs ``x`` (the stem's features, or the
    image without a stem) and targets ``y`` (-1 unpainted); returns the loss (benchmarks time it).
    A ``judge`` counts the batch's answers first (a first stage's logits follow the features in ``x``)."""
    fmt = dev.memory_format(device)
    x = torch.from_numpy(x).to(device).contiguous(memory_format=fmt)
    y = torch.from_numpy(y).to(device)
    optim.zero_grad(set_to_none=True)
    with dev.autocast(device):
        logits, *deeper = net.from_features(x, deep=True)
    learn = held_apart(y, logits.shape[1])[0]
    loss = sparse_loss(logits, learn, weight, dice_weight)
    if deeper:  # deep supervision: weights 1, 1/2, 1/4 ... summing to 1, as in nnU-Net
        shares = [0.5**level for level in range(len(deeper) + 1)]
        for share, extra in zip(shares[1:], deeper):
            loss = loss + share * sparse_loss(extra, learn, weight, dice_weight)
        loss = loss / sum(shares)
    if judge is not None:
        judge.add(logits, x[:, net.stem.out_channels:], y)
    scaler.scale(loss).backward()
    if scaler.is_enabled() or _finite(optim):  # the scaler skips a step with non-finite gradients itself
        scaler.step(optim)
    scaler.update()
    return float(loss.detach())


def _finite(optim) -> bool:
    """Whether every gradient is finite. A bf16 step on a 2-core AMD EPYC (AVX-512 BF16, no AMX)
    now and then returned NaN gradients for a convolution's weights from a finite loss, not
    reproducibly: bf16 training there differs from run to run with the same seed (tiny U-Nets of
    30 steps: NaN in 2 of 20 runs, and in up to 3 of 6 runs of one seed; none in float32; none in
    433 steps of the default on two volumes). One such step turns every weight it reaches into NaN
    for good, so it is skipped, as CUDA's GradScaler does. The check costs 0.5 ms of a 330 ms step."""
    grads = [p.grad for group in optim.param_groups for p in group["params"] if p.grad is not None]
    return not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))


def fit(
    images: Sequence[np.ndarray],
    annotations: Sequence[np.ndarray],
    model_config: ModelConfig,
    train_config: TrainConfig,
    spacing=(1.0, 1.0, 1.0),
    init: Segmenter | None = None,
    class_names=None,
    stop: Callable[[], bool] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    names: Sequence[tuple[str, str]] | None = None,
    infer_config: InferConfig | None = None,
) -> Segmenter:
    """Validate the pairs, build (or check ``init``) and train; return the segmenter.

    ``names`` are (image, annotations) names per pair for error messages, e.g. file names;
    ``infer_config`` the inference settings stored with a new model (default: the defaults).
    """
    segmenter, images, annotations = prepare(
        images, annotations, model_config, train_config, spacing, init, class_names, names, infer_config
    )
    for event in train(segmenter, images, annotations, train_config, stop):
        if on_progress:
            on_progress(event)
    return segmenter


def prepare(images, annotations, model_config, train_config, spacing=(1.0, 1.0, 1.0), init=None,
            class_names=None, names=None, infer_config=None) -> tuple[Segmenter, list, list]:
    """Validate the pairs and return (segmenter, images, annotations) ready for :func:`train`."""
    names = list(names or [(f"image {i + 1}", f"annotations {i + 1}") for i in range(len(images))])
    pairs = [check_pair(im, an, *n) for im, an, n in zip(images, annotations, names)]
    images, annotations = [p[0] for p in pairs], [p[1] for p in pairs]
    n_classes = count_classes(annotations, [n[1] for n in names])
    torch.manual_seed(train_config.seed)  # model initialisation is part of the reproducible run
    segmenter = init or new_segmenter(model_config, images, n_classes, spacing, class_names, annotations,
                                      infer_config)
    check_compatible(segmenter, n_classes)
    check_memory(segmenter, images, [n[0] for n in names])
    return segmenter, images, annotations


def new_segmenter(model_config: ModelConfig, images, n_classes, spacing, class_names=None,
                  annotations=None, infer_config: InferConfig | None = None) -> Segmenter:
    """An untrained segmenter with pooling and filters fitted to ``spacing`` and fitted normalisation
    (from the painted structures when ``annotations`` are given)."""
    if model_config.pools is None:
        model_config = replace(model_config, pools=pools_for_spacing(spacing, len(model_config.features) - 1))
    model_config = replace(model_config, spacing=tuple(float(s) for s in spacing))
    normalization = fit_normalization(images, annotations)
    return Segmenter.create(model_config, n_classes, normalization, class_names, spacing, infer_config)


def check_compatible(segmenter: Segmenter, n_classes: int, in_channels: int = 1) -> None:
    """Raise if a loaded model cannot learn from these annotations."""
    if n_classes > segmenter.n_classes:
        raise ValueError(
            f"The model predicts {segmenter.n_classes} classes but the annotations paint "
            f"{n_classes}; train a new model instead of --init."
        )
    if segmenter.config.in_channels != in_channels:
        raise ValueError(
            f"The model expects {segmenter.config.in_channels} input channels "
            f"but the image has {in_channels}."
        )
