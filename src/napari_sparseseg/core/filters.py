"""A fixed filter bank as the network's first layer: ilastik's features as torch convolutions.

At each scale σ (in units of the finest voxel size, divided by the spacing per axis so a kernel is
physically round) the bank computes Gaussian smoothing, the Laplacian of Gaussian, the gradient
magnitude and the three Hessian eigenvalues (ilastik's set without the difference of Gaussians,
which adds little beside the Laplacian); with the raw intensity that is ``1 + 6 · len(sigmas)``
rotation- and flip-invariant channels. Smoothing is a
separable Gaussian; first and mixed derivatives are central differences of the smoothed volume
and a second derivative along one axis is the three-point second difference, in physical
(finest-axis) units. Borders are replicate-padded. (Models trained before 2026-12-06 took that
second derivative as the central difference applied twice, a five-voxel stencil that is blind to
a structure one voxel across; ``derivatives="wide"`` keeps computing their features that way.
The three-point one raised the first stage alone on all but one of the ten volumes of
``benchmarks/accuracy``: docs/accuracy.md, "The filter bank's second derivatives".)

At each of the scales ``tensors`` the bank then adds the structure tensor's three eigenvalues,
the rest of ilastik's set: the outer products of the gradients at σ, smoothed again at
:data:`TENSOR_OUTER` σ (ilastik's default is σ/2; twice σ describes a voxel's neighbourhood, and
raised the first stage alone on nine of the ten volumes: docs/accuracy.md, "The structure
tensor"). They reach further than the smoothing they start from, which :meth:`FilterBank.halo`
counts.

The bank has no trainable weights. It standardises its outputs with a per-channel mean and scale
(buffers set by :meth:`FilterBank.fit_scale` from painted voxels and saved with the model), so the
layers after it see features of unit scale. :meth:`FilterBank.scales` smooths a whole volume one
scale at a time and takes the derivatives in z-slabs, so the result does not depend on the slab
size and large scales cost no multi-channel halo; :meth:`FilterBank.halo` is what a chunk needs
around it to get exactly the whole-volume features. :meth:`FilterBank.volume` stores them as
float16 (:data:`STORED`): their channels (52 in the default) are most of the memory a volume needs. They are
computed in float32 and rounded once, after standardising: raw, a smoothed intensity whose mean
is a hundred times its spread would keep only a few of float16's 11 bits.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PER_SIGMA = 6
SLAB_VOXELS = 4_000_000  # voxels per slab in FilterBank.scales (smoothing and derivatives)
STORED = np.float16  # the dtype of feature volumes (FilterBank.volume); layers compute in float32


WIDE_EXTRA = 4  # derivatives="both": the wide stencil's Laplacian and Hessian eigenvalues at the finest σ
PER_TENSOR = 3  # the structure tensor's eigenvalues at each of its scales
TENSOR_OUTER = 2.0  # the structure tensor's outer scale, as a multiple of its inner one


def n_features(sigmas, derivatives: str = "compact", tensors=()) -> int:
    """Channels the bank returns for ``sigmas``, ``derivatives`` and structure-tensor scales ``tensors``."""
    wide = WIDE_EXTRA if derivatives == "both" else 0
    return 1 + PER_SIGMA * len(sigmas) + wide + PER_TENSOR * len(tensors)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1D Gaussian with radius ceil(3σ) (a single tap for σ ≈ 0)."""
    radius = max(0, math.ceil(3 * sigma))
    if sigma < 1e-3:
        return torch.ones(1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def smooth(x: torch.Tensor, sigmas) -> torch.Tensor:
    """Separable Gaussian of ``x`` (B, C, Z, Y, X) with one σ (in voxels) per axis, borders replicated.

    Each pass is a matrix product with :func:`smoothing_matrix`, not a convolution: torch's CPU
    convolution picks its algorithm by shape and for some slabs unrolls the taps (σ 40, 241 taps,
    a 38 × 256 × 256 slab: 2.4 GB), while the product needs only its output and costs about as
    much as a convolution with the largest kernel.
    """
    for axis, sigma in enumerate(sigmas):
        if gaussian_kernel(sigma).numel() == 1:
            continue
        dim = axis + 2
        matrix = smoothing_matrix(sigma, x.shape[dim]).to(x.device, x.dtype)
        x = torch.matmul(x.movedim(dim, -1), matrix).movedim(-1, dim)
    return x.contiguous()


def smoothing_matrix(sigma: float, length: int) -> torch.Tensor:
    """(length, length) matrix ``M`` such that ``v @ M`` is ``v`` smoothed with
    :func:`gaussian_kernel` and its border values repeated outwards."""
    kernel = gaussian_kernel(sigma)
    radius = kernel.numel() // 2
    out = torch.arange(length)[:, None]
    source = (out + torch.arange(-radius, radius + 1)[None, :]).clamp(0, length - 1)
    matrix = torch.zeros(length, length)
    matrix.index_put_((source, out.expand_as(source)), kernel.expand_as(source).clone(), accumulate=True)
    return matrix


def _neighbours(x: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` one voxel back, itself and one voxel on along spatial ``axis`` (0..2), borders replicated."""
    dim = axis + 2
    pad = [0, 0, 0, 0, 0, 0]
    pad[4 - 2 * axis] = pad[5 - 2 * axis] = 1
    padded = F.pad(x, pad, mode="replicate")
    size = x.shape[dim]
    return tuple(padded.narrow(dim, start, size) for start in range(3))


def diff(x: torch.Tensor, axis: int, step: float) -> torch.Tensor:
    """Central difference along spatial ``axis`` (0..2), one-sided at the borders."""
    before, _, after = _neighbours(x, axis)
    return (after - before) / (2 * step)


def second_diff(x: torch.Tensor, axis: int, step: float) -> torch.Tensor:
    """Second difference ``(x[i+1] - 2 x[i] + x[i-1]) / step²`` along spatial ``axis`` (0..2)."""
    before, here, after = _neighbours(x, axis)
    return (after - 2 * here + before) / step**2


def hessian_eigenvalues(h: dict) -> list[torch.Tensor]:
    """Eigenvalues (descending) of the symmetric 3×3 matrices ``h[(i, j)]``, closed form.

    Trigonometric solution of the characteristic polynomial (Smith 1961).
    """
    q = (h[0, 0] + h[1, 1] + h[2, 2]) / 3
    off = h[0, 1] ** 2 + h[0, 2] ** 2 + h[1, 2] ** 2
    p = torch.sqrt(((h[0, 0] - q) ** 2 + (h[1, 1] - q) ** 2 + (h[2, 2] - q) ** 2 + 2 * off) / 6)
    p_safe = p.clamp(min=1e-12)
    b = {k: (v - q if k[0] == k[1] else v) / p_safe for k, v in h.items()}
    det = (
        b[0, 0] * (b[1, 1] * b[2, 2] - b[1, 2] ** 2)
        - b[0, 1] * (b[0, 1] * b[2, 2] - b[1, 2] * b[0, 2])
        + b[0, 2] * (b[0, 1] * b[1, 2] - b[1, 1] * b[0, 2])
    )
    phi = torch.acos((det / 2).clamp(-1.0, 1.0)) / 3
    first = q + 2 * p * torch.cos(phi)
    last = q + 2 * p * torch.cos(phi + 2 * math.pi / 3)
    return [first, 3 * q - first - last, last]


def _laplacian(h: dict) -> torch.Tensor:
    return h[0, 0] + h[1, 1] + h[2, 2]


def structure_tensor(g: torch.Tensor, outer, rel, smoother=None) -> dict:
    """The structure tensor of the smoothed ``g`` (B, 1, Z, Y, X): the gradients' products, each
    smoothed with the ``outer`` σ per axis (keys (i, j), i ≤ j, as :func:`hessian_eigenvalues` reads).
    One product at a time is formed and handed to ``smoother`` (default: :func:`smooth` with
    ``outer``), so that six volumes of ``g``'s size are never held at once; each product takes its
    two gradients again (a difference is cheap beside the smoothing) rather than holding three
    gradient volumes over the tensor's whole reach, which would add about 1.3 GB to a default chunk."""
    smoother = smoother or (lambda product: smooth(product, outer))
    return {(i, j): smoother(diff(g, i, rel[i]) * diff(g, j, rel[j])) for i in range(3) for j in range(i, 3)}


def _radius(sigma: float) -> int:
    return gaussian_kernel(sigma).numel() // 2


class FilterBank(nn.Module):
    """Fixed multi-scale filter features of a one-channel volume, standardised.

    Parameters
    ----------
    sigmas : tuple of float
        Scales in units of the finest voxel size.
    spacing : (float, float, float)
        Voxel spacing (z, y, x); only ratios matter.
    derivatives : {'compact', 'wide', 'both'}
        How a second derivative along one axis is taken: the three-point second difference, or
        (models trained before 2026-12-06) the central difference applied twice; ``'both'`` is
        the compact bank plus :data:`WIDE_EXTRA` channels after the finest scale's six: its
        Laplacian and Hessian eigenvalues with the wide stencil (an ablation variant).

    Notes
    -----
    Input ``(B, 1, Z, Y, X)``; output ``(B, n_features(sigmas), Z, Y, X)`` float32, computed in
    float32 whatever autocast is active.
    """

    def __init__(self, sigmas, spacing, derivatives: str = "compact", tensors=()):
        super().__init__()
        self.compact = derivatives != "wide"
        self.both = derivatives == "both"
        finest = min(spacing)
        self.rel = tuple(float(s) / finest for s in spacing)
        self.sigmas = tuple(float(s) for s in sigmas)
        self.tensors = tuple(float(s) for s in tensors)
        channels = n_features(self.sigmas, derivatives, self.tensors)
        self.out_channels = channels
        self.register_buffer("shift", torch.zeros(1, channels, 1, 1, 1))
        self.register_buffer("scale", torch.ones(1, channels, 1, 1, 1))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self._held = None  # see remember

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The unstandardised features of ``x`` (B, 1, Z, Y, X)."""
        with torch.autocast(x.device.type, enabled=False):
            x = x.float().contiguous()
            parts = [x]
            for i, sigma in enumerate(self.sigmas):
                parts.extend(self._derived(smooth(x, [sigma / r for r in self.rel]), i == 0))
            for sigma in self.tensors:
                g = smooth(x, [sigma / r for r in self.rel])
                parts.extend(hessian_eigenvalues(structure_tensor(g, self._outer(sigma), self.rel)))
            return torch.cat(parts, dim=1)

    def _derived(self, g: torch.Tensor, finest: bool) -> list[torch.Tensor]:
        """The features of one scale from the smoothed ``g`` (exact but for its outer two voxels): six,
        and with ``derivatives="both"`` at the ``finest`` scale the wide stencil's Laplacian and
        Hessian eigenvalues after them."""
        grad = [diff(g, a, self.rel[a]) for a in range(3)]
        h = {(i, j): diff(grad[i], j, self.rel[j])
             for i in range(3) for j in range(i, 3) if i != j or not self.compact or (self.both and finest)}
        wide = dict(h)
        if self.compact:
            h.update({(i, i): second_diff(g, i, self.rel[i]) for i in range(3)})
        magnitude = torch.sqrt(grad[0] ** 2 + grad[1] ** 2 + grad[2] ** 2 + 1e-12)
        out = [g, _laplacian(h), magnitude, *hessian_eigenvalues(h)]
        if self.both and finest:
            out += [_laplacian(wide), *hessian_eigenvalues(wide)]
        return out

    def _first_channel(self, scale: int) -> int:
        """The first channel of scale number ``scale`` (0 = the finest σ)."""
        return 1 + PER_SIGMA * scale + (WIDE_EXTRA if self.both and scale > 0 else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardize(self.raw(x))

    def standardize(self, features: torch.Tensor) -> torch.Tensor:
        """Raw features (B, C, Z, Y, X) to unit scale with the fitted shift and scale (in place)."""
        return features.sub_(self.shift).mul_(self.scale)

    def halo(self) -> tuple[int, int, int]:
        """Voxels per axis that influence a feature: the largest Gaussian's radius plus two differences,
        or a structure tensor's inner and outer radii plus one difference, whichever reaches further."""
        return tuple(max([_radius(max(self.sigmas) / r) + 2,
                          *(_radius(s / r) + 1 + _radius(self._outer(s)[a]) for s in self.tensors)])
                     for a, r in enumerate(self.rel))

    def _outer(self, sigma: float) -> list[float]:
        """The structure tensor's outer σ per axis for its inner scale ``sigma``."""
        return [TENSOR_OUTER * sigma / r for r in self.rel]

    @torch.no_grad()
    def volume(self, image: np.ndarray, extra: int = 0, crop=None) -> np.ndarray:
        """Standardised features (C, Z, Y, X) as :data:`STORED` of a whole (Z, Y, X) volume, or of its part
        ``crop`` (a tuple of three slices with steps of 1); ``extra`` more channels after them are left
        for the caller to fill. See :meth:`scales`; a whole volume's features that training still
        holds are copied, not computed again (:meth:`remember`)."""
        out = np.empty((self.out_channels + extra, *_box(image.shape, crop)[1]), STORED)
        known = self._known(image) if crop is None else None
        if known is not None:
            out[: self.out_channels] = known
            return out
        for channel, values in self.scales(image, crop):
            self.store(out, channel, values)
            del values  # free before the next scale is computed
        return out

    def remember(self, image: np.ndarray, features: np.ndarray) -> None:
        """Let :meth:`volume` copy ``features`` (C, Z, Y, X), this bank's for ``image``, for as long
        as someone else holds them: training does, so napari's early answer, which predicts the
        image during training, does not compute them again (3 s on MNI's 4.5 million voxels, 2
        cores). A weak reference: they are never kept alive for it."""
        self._held = (self._key(image), weakref.ref(features))

    def _known(self, image: np.ndarray) -> np.ndarray | None:
        """The features :meth:`remember` was given for ``image``, if someone still holds them."""
        held = self._held  # read once: dask's threads compute chunks of one model at the same time
        if held is None or held[0][:2] != (image.shape, image.dtype.str) or held[0] != self._key(image):
            return None
        return held[1]()

    def _key(self, image: np.ndarray) -> tuple:
        digest = hashlib.sha256(np.ascontiguousarray(image).data)
        for buffer in (self.shift, self.scale):
            digest.update(buffer.detach().cpu().numpy().tobytes())
        return image.shape, image.dtype.str, digest.digest()

    @torch.no_grad()
    def scales(self, image: np.ndarray, crop=None) -> Iterator[tuple[int, torch.Tensor]]:
        """The raw features of ``image`` (or of its part ``crop``) one scale at a time: pairs of the first
        channel and float32 values (n, z, y, x), the intensity first, then six channels per scale.

        Each scale is smoothed over the whole volume (one channel at a time), then its derivatives are
        taken in z-slabs with a two-voxel halo, so the result depends on neither the slab size nor
        ``crop``, and the working set is a few single-channel volumes plus one scale's features.
        """
        box, shape = _box(image.shape, crop)
        yield 0, torch.from_numpy(np.array(image[box], np.float32))[None]
        x = torch.from_numpy(np.ascontiguousarray(image, np.float32))
        near = [slice(max(0, b.start - 2), min(n, b.stop + 2)) for b, n in zip(box, image.shape)]
        offset = [b.start - n.start for b, n in zip(box, near)]
        for i, sigma in enumerate(self.sigmas):  # nothing of a scale is kept once it is yielded
            yield self._first_channel(i), self._slabs(
                self._smoothed(x, [sigma / r for r in self.rel], near), offset, shape, i == 0)
        first = self._first_channel(len(self.sigmas))
        for i, sigma in enumerate(self.tensors):
            yield first + PER_TENSOR * i, self._tensor(x, sigma, box, shape)

    def _tensor(self, x: torch.Tensor, sigma: float, box, shape) -> torch.Tensor:
        """The structure tensor's eigenvalues (3, *shape) at inner scale ``sigma`` within ``box`` of
        ``x`` (Z, Y, X). Its gradients are taken over the box widened by the outer Gaussian's radius
        and one voxel, so a crop's values are the whole volume's; each product is smoothed slab by
        slab (:meth:`_smoothed`) and kept only within the box; the eigenvalues come in z-slabs."""
        outer = self._outer(sigma)
        reach = [_radius(o) + 1 for o in outer]
        near = [slice(max(0, b.start - m), min(n, b.stop + m)) for b, m, n in zip(box, reach, x.shape)]
        g = self._smoothed(x, [sigma / r for r in self.rel], near)[None, None]
        inside = [slice(b.start - n.start, b.stop - n.start) for b, n in zip(box, near)]
        tensor = structure_tensor(g, outer, self.rel, lambda p: self._smoothed(p[0, 0], outer, inside))
        del g
        out = torch.empty((PER_TENSOR, *shape))
        step = max(1, SLAB_VOXELS // max(1, shape[1] * shape[2]))
        for z in range(0, shape[0], step):
            part = {k: v[z : z + step] for k, v in tensor.items()}
            out[:, z : z + step] = torch.stack(hessian_eigenvalues(part))
        return out

    def store(self, out: np.ndarray, channel: int, values: torch.Tensor) -> None:
        """Standardise raw float32 ``values`` (n, z, y, x) in place and store them in ``out[channel:]``
        (within float16's range: a channel fitted on painted voxels of one value has a huge scale).
        torch rounds to float16 as numpy does, to the bit, about 20 times as fast (13 million values:
        2.5 ms against 57, 2 cores)."""
        part, top = slice(channel, channel + values.shape[0]), float(np.finfo(STORED).max)
        values.sub_(self.shift[0, part].cpu()).mul_(self.scale[0, part].cpu()).clamp_(-top, top)
        torch.from_numpy(out[part]).copy_(values)

    @staticmethod
    def _smoothed(x: torch.Tensor, sigmas, near) -> torch.Tensor:
        """``x`` (Z, Y, X) smoothed with one σ per axis, kept within the slices ``near``: in y and x
        over z-slabs, then in z over y-slabs, so no pass holds more than one slab's intermediates."""
        planes = torch.empty((x.shape[0], x.shape[1], near[2].stop - near[2].start))
        step = max(1, SLAB_VOXELS // max(1, x.shape[1] * x.shape[2]))
        for z in range(0, x.shape[0], step):
            slab = smooth(x[None, None, z : z + step], [0.0, *sigmas[1:]])
            planes[z : z + step] = slab[0, 0, :, :, near[2]]
        g = torch.empty([n.stop - n.start for n in near])
        step = max(1, SLAB_VOXELS // max(1, x.shape[0] * planes.shape[2]))
        for y in range(near[1].start, near[1].stop, step):
            rows = slice(y, min(near[1].stop, y + step))
            g[:, y - near[1].start : rows.stop - near[1].start] = smooth(
                planes[None, None, :, rows], [sigmas[0], 0.0, 0.0])[0, 0, near[0]]
        return g

    def _slabs(self, g: torch.Tensor, offset, shape, finest: bool) -> torch.Tensor:
        """The features (n, *shape) of the smoothed ``g`` at ``offset`` + (0..shape), in z-slabs."""
        out = torch.empty((self._first_channel(1) - 1 if finest else PER_SIGMA, *shape))
        slab = max(1, SLAB_VOXELS // max(1, shape[1] * shape[2]))
        oz, oy, ox = offset
        for z in range(0, shape[0], slab):
            lo, hi = max(0, oz + z - 2), min(g.shape[0], oz + z + slab + 2)
            values = torch.cat(self._derived(g[None, None, lo:hi], finest), dim=1)[0]
            first = oz + z - lo
            out[:, z : z + slab] = values[:, first : first + min(slab, shape[0] - z), oy : oy + shape[1],
                                          ox : ox + shape[2]]
        return out

    @torch.no_grad()
    def fit_volumes(self, volumes: list[np.ndarray], index: list[np.ndarray]) -> list[np.ndarray]:
        """Fit the standardisation to the voxels ``index`` (flat indices, one array per volume) of
        every volume, scale by scale, and return the volumes' standardised features (as :meth:`volume`)."""
        stored = [np.empty((self.out_channels, *v.shape), STORED) for v in volumes]
        for scale in zip(*(self.scales(v) for v in volumes)):  # one scale of every volume at a time
            channel = scale[0][0]
            self.fit_scale(torch.cat([values.flatten(1)[:, i] for (_, values), i in zip(scale, index)], 1).T,
                           channel)
            for out, (_, values) in zip(stored, scale):
                self.store(out, channel, values)
            del scale, values  # free before the next scale is computed
        return stored

    @torch.no_grad()
    def fit_scale(self, features: torch.Tensor, first: int = 0) -> None:
        """Set the standardisation of channels ``first``, ``first + 1``, ... from their raw features
        (N, n), e.g. at painted voxels; the bank is fitted once its last channel is."""
        part = slice(first, first + features.shape[1])
        self.shift[0, part] = features.mean(0).reshape(-1, 1, 1, 1)
        self.scale[0, part] = (1.0 / features.std(0).clamp(min=1e-6)).reshape(-1, 1, 1, 1)
        if part.stop == self.out_channels:
            self.fitted.fill_(True)


def _box(shape, crop) -> tuple[tuple[slice, ...], tuple[int, ...]]:
    """The slices (steps of 1) of ``crop`` in a volume of ``shape`` (all of it for None), and their sizes."""
    box = tuple(slice(*c.indices(n)[:2]) for c, n in zip(crop or (slice(None),) * 3, shape))
    return box, tuple(b.stop - b.start for b in box)
