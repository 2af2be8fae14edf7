"""3D U-Net (Çiçek et al. 2016) with configurable width, depth, norm and pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .device import memory_format
from .filters import FilterBank
from .trees import TreeClassifier


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "none":
        return nn.Identity()
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    return nn.GroupNorm(min(8, channels), channels)


class ConvBlock(nn.Sequential):
    """Two 3x3x3 same-padded convolutions, each followed by norm and ReLU."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, norm: str):
        super().__init__(
            nn.Conv3d(in_ch, mid_ch, 3, padding=1),
            _norm(norm, mid_ch),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_ch, out_ch, 3, padding=1),
            _norm(norm, out_ch),
            nn.ReLU(inplace=True),
        )


class ResBlock(nn.Module):
    """A ConvBlock whose second ReLU follows the sum with a shortcut: the input itself, or a 1x1x1
    convolution of it where the width changes (He et al. 2016; V-Net, VoxResNet)."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(*list(ConvBlock(in_ch, mid_ch, out_ch, norm))[:-1])
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv3d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


def block(config: ModelConfig, in_ch: int, mid_ch: int, out_ch: int) -> nn.Module:
    """A level's two convolutions as ``config.blocks`` asks."""
    kind = ResBlock if config.blocks == "residual" else ConvBlock
    return kind(in_ch, mid_ch, out_ch, config.norm)


def down(config: ModelConfig, width: int, pool) -> nn.Module:
    """A down-step by ``pool``: max-pooling, or a learnt strided convolution."""
    if config.downsample == "strided":
        return nn.Conv3d(width, width, kernel_size=pool, stride=pool)
    return nn.MaxPool3d(pool, stride=pool)


class UpBlock(nn.Module):
    """Transposed-conv upsampling, concatenation with the skip, then a level's block."""

    def __init__(self, in_ch: int, up_ch: int, skip_ch: int, out_ch: int, pool, config: ModelConfig):
        super().__init__()
        self.up = nn.ConvTranspose3d(in_ch, up_ch, kernel_size=pool, stride=pool)
        self.conv = block(config, up_ch + skip_ch, out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


def pointwise_classifier(in_ch: int, hidden: int, n_classes: int) -> nn.Sequential:
    """A per-voxel two-layer perceptron as 1x1x1 convolutions: features -> logits."""
    return nn.Sequential(
        nn.Conv3d(in_ch, hidden, 1),
        nn.ReLU(inplace=True),
        nn.Conv3d(hidden, hidden, 1),
        nn.ReLU(inplace=True),
        nn.Conv3d(hidden, n_classes, 1),
    )


def first_stage(config: ModelConfig, in_ch: int, n_classes: int) -> nn.Module | None:
    """The per-voxel classifier the config asks for: a perceptron, boosted trees or none."""
    if config.trees:
        return TreeClassifier(n_classes, config.trees, config.tree_margin)
    return pointwise_classifier(in_ch, config.pointwise, n_classes) if config.pointwise else None


class UNet3D(nn.Module):
    """3D U-Net returning raw logits, optionally on fixed filter features with a pointwise start.

    Parameters
    ----------
    config : ModelConfig
        Widths, norm, pooling per level; ``config.pools`` must be resolved (not None)
        or every down-step pools 2x2x2. With ``config.filters`` a fixed :class:`FilterBank`
        feeds the U-Net; with ``config.pointwise`` a per-voxel classifier on those features gives
        starting log-probabilities (weighted by ``config.prior_weight``, in eval mode by
        ``config.predict_prior_weight`` where set), its probabilities are
        extra U-Net inputs (auto-context), and the U-Net adds a correction whose last layer starts
        at zero.
    n_classes : int
        Number of output classes (background included).

    Notes
    -----
    Input ``(B, in_channels, Z, Y, X)``; output ``(B, n_classes, Z, Y, X)``. Inputs whose
    size is not a multiple of ``config.total_pool`` are padded inside and cropped back.
    """

    def __init__(self, config: ModelConfig, n_classes: int):
        super().__init__()
        feats = config.features
        pools = config.pools or ((2, 2, 2),) * (len(feats) - 1)
        self.config, self.n_classes, self.pools = config, n_classes, pools
        self.stem = (FilterBank(config.filters, config.spacing, config.derivatives, config.tensors)
                     if config.filters else None)
        in_ch = self.stem.out_channels if self.stem else config.in_channels
        self.pointwise = first_stage(config, in_ch, n_classes)
        if self.pointwise is not None:
            in_ch += n_classes  # the classifier's probabilities
        self.encoders = nn.ModuleList()
        for width in feats:
            mid = width // 2 if config.paper_blocks else width
            self.encoders.append(block(config, in_ch, mid, width))
            in_ch = width
        self.pool_layers = nn.ModuleList(down(config, w, p) for w, p in zip(feats, pools))
        self.decoders = nn.ModuleList()
        for level in reversed(range(len(feats) - 1)):
            below, here = feats[level + 1], feats[level]
            up_ch = below if config.paper_blocks else here
            self.decoders.append(UpBlock(below, up_ch, here, here, pools[level], config))
        self.head = nn.Conv3d(feats[0], n_classes, kernel_size=1)
        # deep supervision: a head on every decoder output above the last (nnU-Net), training only
        levels = range(len(feats) - 2, 0, -1) if config.deep_supervision else ()
        self.aux_heads = nn.ModuleList(nn.Conv3d(feats[level], n_classes, 1) for level in levels)
        if self.pointwise is not None:
            for head in (self.head, *self.aux_heads):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    @property
    def stage_channels(self) -> int:
        """Channels :meth:`from_features` reads in training: the stem's features (the image without
        a stem), then the first stage's logits where there is one (computed once per volume)."""
        own = self.stem.out_channels if self.stem is not None else self.config.in_channels
        return own + (self.n_classes if self.pointwise is not None else 0)

    @property
    def corrects(self) -> bool:
        """Whether the U-Net adds anything to the first stage's answer: not while its last layer is
        zero, as a first stage's U-Net starts."""
        return bool(self.head.weight.any() or self.head.bias.any())

    def drop_correction(self) -> None:
        """Zero the last layer: the model answers as its first stage alone (the U-Net's other layers
        keep what they learnt, so that training can go on from them)."""
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, Z, Y, X) image -> (B, n_classes, Z, Y, X) logits."""
        if self.stem is not None:
            x = self.stem(x).contiguous(memory_format=memory_format(x.device))
        return self.from_features(x)

    def from_features(self, x: torch.Tensor, deep: bool = False):
        """Logits from the stem's output (the image itself without a stem), e.g. precomputed.

        With a pointwise classifier ``x`` may carry the classifier's logits after the features:
        training computes them once per volume (the classifier is frozen in the U-Net stage).
        ``deep`` returns a list instead: the logits, then those of the deep-supervision heads at
        full size (none unless ``config.deep_supervision``).
        """
        if self.pointwise is None:
            return self.unet(x, deep)
        features = self.stem.out_channels
        start = (self.pointwise(x) if x.shape[1] == features else x[:, features:]).float()
        x = x[:, :features]
        weight = self.config.prior_weight
        if not self.training and self.config.predict_prior_weight is not None:
            weight = self.config.predict_prior_weight
        prior = weight * torch.log_softmax(start, 1)
        if not self.training and not self.corrects:
            return prior  # an untrained U-Net adds exactly zero: skip its cost
        context = torch.softmax(start, 1).to(x.dtype)
        out = self.unet(torch.cat([x, context], 1), deep)
        return [prior + o for o in out] if deep else prior + out

    def unet(self, x: torch.Tensor, deep: bool = False):
        """The U-Net proper: (B, C, Z, Y, X) input features -> (B, n_classes, Z, Y, X) logits
        (``deep``: a list, those logits and the deep-supervision heads' upsampled to them)."""
        size = x.shape[2:]
        x = self._pad(x)
        skips, outputs = [], []
        for level, encode in enumerate(self.encoders):
            x = encode(x)
            if level < len(self.pool_layers):
                skips.append(x)
                x = self.pool_layers[level](x)
        for decode in self.decoders:
            x = decode(x, skips.pop())
            if deep:  # kept only for the deep-supervision heads: prediction frees each level as it goes
                outputs.append(x)
        full = [self.head(x)]
        if deep:
            full += [F.interpolate(head(o), size=x.shape[2:], mode="trilinear")
                     for head, o in zip(self.aux_heads, outputs)]
        full = [o[:, :, : size[0], : size[1], : size[2]] for o in full]
        return full if deep else full[0]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        extra = [(-s) % t for s, t in zip(x.shape[2:], self.config.total_pool)]
        if not any(extra):
            return x
        return F.pad(x, (0, extra[2], 0, extra[1], 0, extra[0]))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
