"""The first stage's turn in training: a per-voxel classifier fitted on the painted voxels alone.

:func:`tree_stage` (boosted trees, the default) and :func:`pointwise_stage` (the perceptron of
engine v2.1) are generators of :class:`.events.Progress` that :func:`.trainer.train` runs before
the U-Net. Besides progress they yield :data:`ANSWER` once the classifier can give napari its early
answer, and the trees' stage :data:`NO_TIME` when the budget leaves the U-Net no time after it.
The trees' stage also hands the U-Net its context: every voxel's tree logits, out-of-fold on the
painted voxels.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch

from .config import TrainConfig
from .events import Progress
from .pointwise import painted_index, painted_samples, train_pointwise
from .sampling import held_apart
from .trees import TreeClassifier, out_of_fold, plane_folds

ANSWER = object()  # a first stage yields this once its classifier can answer: the early answer's turn
NO_TIME = object()  # the trees' stage yields this when the budget leaves the U-Net no time after it


def pointwise_stage(segmenter, sampler, config: TrainConfig, rng, stop, clock,
                    continuing: bool) -> Iterator[Progress]:
    """Fit the filter standardisation (a new model) and the pointwise classifier on painted voxels.

    Yields a :class:`Progress` with iteration 0 after every step; ends early on ``stop``. The
    classifier trains for ``pointwise_steps`` or ``pointwise_seconds``, at most the whole time
    budget counted after the features are computed: the U-Net needs far more than the few seconds
    a short budget could leave it (abdominal CT at 12 s: the classifier alone for 12 s scores 0.760,
    6 s of it plus 6 s of U-Net 0.738), so a short budget gets the classifier's complete answer.

    The classifier starts from new weights every round, also when training continues (the U-Net
    does continue): it sees every painted voxel thousands of times within seconds, and one
    continued from the last round's weights generalised worse to the new strokes (aorta CT, three
    rounds of one more plane: 0.671 continued, 0.708 refitted; abdominal MR 0.736 and 0.750).
    It is trained as a copy: a continued round stopped before the copy is complete keeps the
    trained classifier it had.
    """
    net = segmenter.net.cpu()
    head = copy.deepcopy(net.pointwise)
    for layer in head:
        if isinstance(layer, torch.nn.Conv3d):
            layer.reset_parameters()
    features, labels = painted_samples(sampler.images, sampler.targets, rng)
    seconds = config.pointwise_seconds
    if config.max_time:
        seconds = min(seconds, config.max_time)
    lr = config.pointwise_learning_rate
    steps = train_pointwise(head, features, labels, config.pointwise_steps, seconds, lr, rng)
    yield from _progress(steps, config, clock, stop)
    if not (continuing and stop is not None and stop()):
        net.pointwise.load_state_dict(head.state_dict())
    yield ANSWER


def tree_stage(segmenter, sampler, config: TrainConfig, rng, stop, clock,
               continuing: bool) -> Iterator[Progress]:
    """Fit the filter standardisation (a new model) and new boosted trees on the painted voxels.

    A new model answers early with them (napari shows it while the folds train; scored with early
    stopping, :meth:`.trees.TreeClassifier.rows`). Then the trees
    score every voxel of the U-Net's inputs, painted voxels out-of-fold (:func:`.trees.out_of_fold`).
    A continued round swaps in its new trees only when that is complete, so one stopped earlier
    keeps the trees it had. When the folds would outlast the time budget, the stage yields
    :data:`NO_TIME` instead and the round ends with the trees' answer.
    """
    net = segmenter.net
    targets = sampler.targets  # without the judge's voxels, if any are held out
    targets = [held_apart(t, segmenter.n_classes)[0] for t in targets] if sampler.held else targets
    index = painted_index(targets, rng)
    features, labels = (t.numpy() for t in painted_samples(sampler.images, targets, rng, index=index))
    trees = TreeClassifier(segmenter.n_classes, segmenter.config.trees, segmenter.config.tree_margin)
    began = clock()
    yield from _progress(trees.fit(features, labels, config.seed), config, clock, stop)
    fitted = clock()
    if not trees.fitted or (stop is not None and stop()):
        return
    if not continuing:
        net.pointwise = trees
        yield ANSWER  # the early answer comes from these trees: no need to wait for the folds
    folds = np.concatenate([plane_folds(t, i) for t, i in zip(targets, index)])
    short = _no_time_for_folds(config, clock, fitted - began, np.unique(folds).size)
    if not short:
        rounds = segmenter.config.fold_rounds or trees.rounds
        guesses = out_of_fold(features, labels, folds, segmenter.n_classes, config.seed, rounds, trees.margin)
        held_out = yield from _progress(guesses, config, clock, stop)
        if held_out is None:  # stopped
            return
    if continuing:
        net.pointwise = trees
        yield ANSWER
    if short:
        yield NO_TIME
    else:
        sampler.extra = _context(trees, sampler.images, index, held_out)


def _context(trees, volumes, index, held_out: np.ndarray) -> list[np.ndarray]:
    """The trees' logits (K, Z, Y, X) on every voxel of each feature volume, with the out-of-fold
    logits ``held_out`` (N, K) on the painted voxels ``index`` (flat indices per volume)."""
    context, first = [], 0
    for volume, where in zip(volumes, index):
        logits = trees.volume(volume)
        logits.reshape(logits.shape[0], -1)[:, where] = held_out[first : first + where.size].T
        context.append(logits)
        first += where.size
    return context


def _no_time_for_folds(config: TrainConfig, clock, fit_seconds: float, folds: int) -> bool:
    """Whether the out-of-fold trees (each about as costly as the final ones) would outlast the time
    budget: then the U-Net would get no time to learn from them, and a short budget (napari's
    quick look, ``--max-time 12``) ends with the trees' answer instead of running over: it skips
    the folds, the U-Net's inputs (scoring every voxel: 12 s on MNI) and its first iterations."""
    return bool(config.max_time) and clock() + folds * fit_seconds >= config.max_time


def _progress(losses, config, clock, stop) -> Iterator[Progress]:
    """A Progress per loss of the generator ``losses``; returns its result, or None when stopped."""
    while True:
        try:
            loss = next(losses)
        except StopIteration as end:
            return end.value
        yield Progress(0, loss, clock(), 0.0, config.iterations, config.max_time)
        if stop is not None and stop():
            return None
