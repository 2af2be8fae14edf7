"""Frozen configuration dataclasses and named presets.

Three configs describe a run: :class:`ModelConfig` (the network),
:class:`TrainConfig` (how to learn from painted voxels) and :class:`InferConfig`
(sliding-window prediction). Presets are plain instances; :func:`resolve` applies a user's
overrides to one (the command line, the dock widget and the demo all go through it).
No torch here: the napari process imports this module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

Triple = tuple[int, int, int]

NORMS = ("none", "batch", "instance", "group")
FILTER_SIGMAS = (1.0, 2.5, 5.0, 10.0, 20.0, 40.0)  # to σ 40: docs/accuracy.md, "Larger filter scales"
TENSOR_SIGMAS = (1.0, 2.5, 5.0, 10.0, 20.0)  # structure tensors: docs/accuracy.md, "The structure tensor"
DEVICES = ("auto", "cpu", "cuda", "mps")
DERIVATIVES = ("compact", "wide", "both")
BLOCKS = ("plain", "residual")
DOWNSAMPLE = ("max", "strided")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the 3D U-Net.

    Parameters
    ----------
    features : tuple of int
        Output width of each encoder level, top to bottom; ``len(features)`` levels
        means ``len(features) - 1`` down-steps.
    norm : {'none', 'batch', 'instance', 'group'}
        Normalisation before each ReLU. ``'none'`` (the default) keeps absolute intensities
        meaningful and makes predictions independent of the window and the batch.
    pools : tuple of (int, int, int) or None
        Pooling factor (z, y, x) of each down-step. ``None`` = chosen from the
        voxel spacing with :func:`pools_for_spacing` when training starts.
    paper_blocks : bool
        Çiçek et al. 2016 blocks: the first convolution of an encoder level has
        half the level's width and the up-convolution keeps its channel count.
    filters : tuple of float
        Scales σ of a fixed filter-bank first layer (:mod:`.filters`); empty = the U-Net sees
        the normalised intensity only (the plain U-Net).
    derivatives : {'compact', 'wide', 'both'}
        How the filter bank takes a second derivative along one axis (:class:`.filters.FilterBank`);
        ``'wide'`` is what models trained before 2026-12-06 were trained with; ``'both'`` adds the
        wide stencil's features at the finest σ (measured, not adopted: docs/accuracy.md).
    tensors : tuple of float
        Inner scales σ at which the filter bank adds the structure tensor's three eigenvalues (the
        gradients' outer products smoothed at :data:`.filters.TENSOR_OUTER` σ); empty = none.
        Needs ``filters``.
    pointwise : int
        Hidden width of a per-voxel classifier on the filter features, trained first; 0 = none.
        Needs ``filters``. The U-Net then also sees the classifier's class probabilities as
        input channels (auto-context), and adds its output to the classifier's log-probabilities.
    trees : int
        Boosting rounds of a first stage of gradient-boosted trees (LightGBM, :mod:`.trees`) in
        place of the perceptron; 0 = none. Needs ``filters``; excludes ``pointwise``.
    fold_rounds : int or None
        Boosting rounds of the trees that give the painted voxels their out-of-fold answers (the
        U-Net's context in training); ``None`` = ``trees``.
    tree_margin : float or None
        When set, the trees stop adding rounds to a voxel once its top class leads the next by this
        many logits (looked at every 10 rounds, LightGBM's prediction early stopping), in training
        (the U-Net's context, out-of-fold answers included) as in prediction; ``None`` = every
        round (the default). Scoring every voxel is most of what more rounds cost.
    prior_weight : float
        Weight of the classifier's log-probabilities in the final logits. The U-Net's last layer
        starts at zero, so training starts at the classifier's answer; a weight below 1 keeps that
        start uncertain enough that every painted voxel still teaches the U-Net.
    predict_prior_weight : float or None
        The same weight when predicting; ``None`` = ``prior_weight``. With trees the U-Net learns to
        correct the out-of-fold answers of trees that never saw a voxel's plane, but predicts on
        the answers of the final trees, which saw every painted plane and are right more often:
        the default preset gives them 0.6 (docs/accuracy.md, "Trusting the final trees more when
        predicting"). A perceptron's answers are the same in training and prediction.
    spacing : (float, float, float)
        Voxel spacing the filter bank is built for (set from the data when training starts).
    blocks : {'plain', 'residual'}
        A level's two convolutions as in Çiçek et al., or with a shortcut around them (identity, or
        a 1x1x1 convolution where the width changes; V-Net, VoxResNet).
    downsample : {'max', 'strided'}
        Down-steps by max-pooling, or by a learnt convolution with the pooling factor as kernel
        and stride (V-Net).
    deep_supervision : bool
        In training, also score a 1x1x1 head on each decoder level above the last, upsampled to full
        size, with the same masked loss at half the weight per level down (nnU-Net).
    """

    features: tuple[int, ...] = (16, 32, 64)
    norm: str = "none"
    pools: tuple[Triple, ...] | None = None
    paper_blocks: bool = False
    in_channels: int = 1
    filters: tuple[float, ...] = ()
    derivatives: str = "compact"
    tensors: tuple[float, ...] = ()
    pointwise: int = 0
    trees: int = 0
    fold_rounds: int | None = None
    tree_margin: float | None = None
    prior_weight: float = 0.3
    predict_prior_weight: float | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    blocks: str = "plain"
    downsample: str = "max"
    deep_supervision: bool = False

    def __post_init__(self):
        if len(self.features) < 2 or min(self.features) < 1:
            raise ValueError(f"features needs at least two positive widths, got {self.features}.")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}.")
        if self.derivatives not in DERIVATIVES:
            raise ValueError(f"derivatives must be one of {DERIVATIVES}, got {self.derivatives!r}.")
        if self.blocks not in BLOCKS or self.downsample not in DOWNSAMPLE:
            raise ValueError(f"blocks must be one of {BLOCKS} and downsample one of {DOWNSAMPLE}, "
                             f"got {self.blocks!r} and {self.downsample!r}.")
        if self.pools is not None and len(self.pools) != len(self.features) - 1:
            raise ValueError(
                f"pools needs one factor per down-step ({len(self.features) - 1}), "
                f"got {len(self.pools)}."
            )
        if (self.pointwise or self.trees or self.tensors) and not self.filters:
            raise ValueError("A first stage (pointwise or trees) or structure tensors need filter-bank "
                             "features (set filters).")
        if self.pointwise and self.trees:
            raise ValueError("Choose one first stage: a perceptron (pointwise) or trees, not both.")
        if self.pointwise < 0 or self.trees < 0 or (self.fold_rounds is not None and self.fold_rounds < 1):
            raise ValueError("pointwise and trees must be 0 (none) or positive, fold_rounds positive.")
        for name in ("prior_weight", "predict_prior_weight", "tree_margin"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}.")
        if any(not s > 0 for s in (*self.filters, *self.tensors, *self.spacing)):
            raise ValueError("Filter scales and spacing must be positive numbers.")

    @property
    def total_pool(self) -> Triple:
        """Product of the pooling factors per axis (window sizes must be multiples)."""
        pools = self.pools or ((2, 2, 2),) * (len(self.features) - 1)
        return tuple(math.prod(p[a] for p in pools) for a in range(3))


@dataclass(frozen=True)
class TrainConfig:
    """How training samples patches and optimises.

    ``max_time`` (seconds) and ``iterations`` are budgets: training stops at
    whichever comes first (``None`` = no limit on that one; at least one is needed).
    ``max_passes`` ends the U-Net stage earlier once the patches have covered each painted voxel
    that many times on average (``None``: never): on a small volume a long budget otherwise fits
    the few painted planes ever closer and loses Dice on the rest (abdominal MR organs, 155 k
    voxels, K = 3: 0.9496 after 1 200 iterations = 970 passes, 0.940 after 2 000 and 3 300).
    ``class_balance`` adds inverse-frequency class weights to the cross-entropy (the sampler
    already centres patches on every class equally often, so it is off by default);
    ``augment`` turns on flips and right-angle turns, and ``rotate_augment`` is the share of
    patches also turned by a random angle in the yx plane and scaled by up to ±15 % (where the y
    and x spacings match), and ``elastic_augment`` (voxels) bends those patches by a smooth random
    displacement (``sampling.ELASTIC_GRID``; 0: not bent); ``intensity_augment`` = a adds a
    random intensity scale in [1 - a, 1 + a] and shift in [-a, a] (normalised units).
    A model with a pointwise classifier first trains it alone on every painted voxel for
    ``pointwise_steps`` steps or ``pointwise_seconds`` (at most ``max_time``: a short budget is
    the classifier's alone), with its own ``pointwise_learning_rate``; then the U-Net,
    whose learning rate warms up over its first 50 iterations (``trainer.WARMUP``).
    ``weight_average`` = w keeps the average of the U-Net's weights over the last share w of its
    training (stochastic weight averaging); 0 keeps the last weights.
    ``judge_holdout`` = h keeps about a share h of the painted voxels (16-voxel squares of the
    painted planes) out of the U-Net's loss, and the judge (``judge.Judge``) decides on those
    alone; 0 judges on the voxels the U-Net learns from. ``judge_holdout_trees`` keeps them from
    the trees too: the judge then weighs the U-Net against the final trees, as prediction does.
    """

    patch_size: Triple = (32, 64, 64)
    batch_size: int = 2
    iterations: int | None = 600
    max_time: float | None = None
    max_passes: float | None = 1000.0
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    dice_weight: float = 0.5
    seed: int = 0
    device: str = "auto"
    augment: bool = True
    class_balance: bool = False
    intensity_augment: float = 0.0
    rotate_augment: float = 0.5
    elastic_augment: float = 0.0
    pointwise_steps: int = 6000
    pointwise_seconds: float = 25.0
    pointwise_learning_rate: float = 1e-2
    weight_average: float = 0.0
    judge_holdout: float = 0.0
    judge_holdout_trees: bool = False

    def __post_init__(self):
        if self.iterations is None and self.max_time is None:
            raise ValueError("Set an iteration budget, a time budget, or both.")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}.")
        if self.max_passes is not None and not 0 < self.max_passes < math.inf:
            raise ValueError(f"max_passes must be a positive, finite number, got {self.max_passes}.")
        if self.pointwise_steps < 1:
            raise ValueError(f"pointwise_steps must be at least 1, got {self.pointwise_steps}.")
        if not (self.pointwise_seconds > 0 and self.pointwise_learning_rate > 0):
            raise ValueError("pointwise_seconds and pointwise_learning_rate must be positive.")
        if self.max_time is not None and not 0 < self.max_time < math.inf:
            raise ValueError(f"max_time must be a positive, finite number of seconds, got {self.max_time}.")
        if not 0.0 <= self.dice_weight <= 1.0:
            raise ValueError(f"dice_weight (alpha) must lie in [0, 1], got {self.dice_weight}.")
        if not 0.0 <= self.intensity_augment < 1.0:
            raise ValueError(f"intensity_augment must lie in [0, 1), got {self.intensity_augment}.")
        if not 0.0 <= self.rotate_augment <= 1.0:
            raise ValueError(f"rotate_augment must lie in [0, 1], got {self.rotate_augment}.")
        if not 0.0 <= self.elastic_augment < math.inf:
            raise ValueError(f"elastic_augment must be a finite number of voxels, 0 or more, got "
                             f"{self.elastic_augment}.")
        if not 0.0 <= self.weight_average < 1.0:
            raise ValueError(f"weight_average must lie in [0, 1), got {self.weight_average}.")
        if not 0.0 <= self.judge_holdout < 1.0:
            raise ValueError(f"judge_holdout must lie in [0, 1), got {self.judge_holdout}.")
        if self.batch_size < 1 or min(self.patch_size) < 1:
            raise ValueError("batch_size and patch_size must be positive.")


@dataclass(frozen=True)
class InferConfig:
    """Sliding-window prediction settings."""

    window: Triple = (32, 64, 64)
    overlap: float = 0.25
    batch_size: int = 2
    flip_tta: bool = False
    device: str = "auto"

    def __post_init__(self):
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must lie in [0, 1), got {self.overlap}.")


@dataclass(frozen=True)
class Preset:
    """A named bundle of model, training and inference settings."""

    model: ModelConfig
    train: TrainConfig
    infer: InferConfig


PRESETS: dict[str, Preset] = {
    # The default: a fixed filter bank (σ 1 … 40, structure tensors σ 1 … 20) feeds boosted trees
    # trained first on every painted voxel, and a 16-32-64 U-Net on the same features that corrects
    # their logits (weighted 0.3 in training on out-of-fold trees, 0.6 when predicting on the final trees).
    "fast": Preset(ModelConfig(filters=FILTER_SIGMAS, tensors=TENSOR_SIGMAS, trees=100,
                               predict_prior_weight=0.6), TrainConfig(), InferConfig()),
    # The plain 3D U-Net on the intensity: widths 16-32-64, no norm layers, 32x64x64 patches, batch 2,
    # unweighted CE + Dice (the default before engine v2).
    "plain": Preset(ModelConfig(), TrainConfig(), InferConfig()),
    # Çiçek et al. 2016: 32->64, 64->128, 128->256, 256->512, BN before ReLU, 3 down-steps.
    "paper": Preset(
        ModelConfig(features=(64, 128, 256, 512), norm="batch", paper_blocks=True),
        TrainConfig(patch_size=(64, 128, 128), batch_size=1, learning_rate=1e-3),
        InferConfig(window=(64, 128, 128), batch_size=1),
    ),
}
DEFAULT_PRESET = "fast"


def preset(name: str) -> Preset:
    """Return the preset called ``name`` or raise a ValueError listing the choices."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]


def resolve(name: str | Preset = DEFAULT_PRESET, **overrides) -> Preset:
    """The preset ``name`` with the user's ``overrides`` applied.

    Each override goes to every config that has a field of that name (``device`` to training
    and inference alike); ``None`` means "the preset's value", except for ``max_time`` and
    ``iterations``, which form one budget: giving either replaces both. An unknown name is a
    ValueError.

    >>> resolve("fast", max_time=30, device="cpu").train.max_time
    30
    """
    chosen = name if isinstance(name, Preset) else preset(name)
    given = {k: v for k, v in overrides.items() if v is not None}
    if "max_time" in given or "iterations" in given:
        given = {"max_time": None, "iterations": None, **given}
    configs = (chosen.model, chosen.train, chosen.infer)
    known = set().union(*({f.name for f in fields(c)} for c in configs))
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"Unknown setting {unknown[0]!r}; settings are {', '.join(sorted(known))}.")
    return Preset(*(override(c, **given) for c in configs))


def override(config, **values):
    """``config`` with those of ``values`` that are its fields (others are ignored)."""
    own = {f.name for f in fields(config)}
    return replace(config, **{k: v for k, v in values.items() if k in own})


def pools_for_spacing(spacing, n_down: int) -> tuple[Triple, ...]:
    """Pool an axis by 2 only while its spacing is under twice the finest one.

    With spacing (4, 1, 1) this gives 1x2x2 pooling until in-plane resolution has
    caught up with z, as nnU-Net does for anisotropic scans.
    """
    current = [float(s) for s in spacing]
    pools = []
    for _ in range(n_down):
        finest = min(current)
        step = tuple(2 if s < 2 * finest else 1 for s in current)
        current = [s * f for s, f in zip(current, step)]
        pools.append(step)
    return tuple(pools)


def to_dict(config) -> dict:
    """Plain-dict form of a config (lists instead of tuples) for checkpoints."""
    return _listify(asdict(config))


def _listify(value):
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    return value


def from_dict(cls, data: dict):
    """Rebuild a config from :func:`to_dict` output, ignoring unknown keys."""
    known = {f.name for f in fields(cls)}
    kwargs = {k: _tuplify(v) for k, v in data.items() if k in known}
    return cls(**kwargs)


def _tuplify(value):
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


__all__ = [
    "DEFAULT_PRESET",
    "DEVICES",
    "PRESETS",
    "InferConfig",
    "ModelConfig",
    "Preset",
    "TrainConfig",
    "from_dict",
    "override",
    "pools_for_spacing",
    "preset",
    "replace",
    "resolve",
    "to_dict",
]
