"""The first stage as gradient-boosted trees on the filter features (LightGBM), stored as data.

A random forest on filter features is what ilastik users have; on a few painted planes trees
generalise better than the perceptron of :mod:`.pointwise` on the same features (K = 2 planes per
axis, T1 brain MRI: 0.896 against 0.872 mean Dice, ``benchmarks/accuracy/classifier_gap.py``).

The model is LightGBM's own text format kept in a uint8 buffer of the network's state dict, so a
checkpoint stays one file read with ``torch.load(weights_only=True)``: loading parses numbers and
split rules, it never runs code.

Trees fit their training voxels almost perfectly, so their answer on a painted voxel is far more
confident than on an unpainted one. The U-Net, which learns from painted voxels with the trees'
answer as input, would learn to trust it blindly; it gets *out-of-fold* answers there instead:
the painted planes are split into folds and each fold's voxels are scored by trees trained on
the other folds (stacking, as in auto-context). How many folds decides how good those answers
are, and so how far the U-Net learns to trust the trees (K = 3, 120 s, one run each):

| folds | SPM T1 grey/white | Colin27 brain mask | aorta CT | abdominal MR |
|---|---|---|---|---|
| 3 | 0.914 | 0.958-0.963 | 0.694 | 0.915 |
| 5 (chosen) | 0.926 | 0.950 | 0.723 | 0.920 |
| 9 (one plane left out) | 0.928 | 0.948 | | |

With few folds the held-out trees are weaker than the final ones and the U-Net learns to
overrule answers that are right at prediction time (SPM T1; the trees alone score 0.920 there);
with many the held-out answers are almost as good as the final ones and the U-Net learns too
little to correct where the trees fail (Colin27).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from .filters import STORED

ROUNDS = 100  # boosting rounds (trees per class)
MARGIN = 4.0  # the trees alone stop scoring a voxel once its top class leads by this many logits
CHECK = 10  # ... looked at every this many rounds (LightGBM's prediction early stopping; see rows)
FOLDS = 5  # at most this many groups of painted planes for the out-of-fold answers
PARAMS = {
    "objective": "multiclass",
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
# The training loss over every row is only shown; computed every round it took 0.8 s of a 4.6 s fit
# (MNI's 241 404 painted voxels, 2 cores), in the first answer's fit and in each of the five folds'.
LOSS_EVERY = 10
ROWS = 1 << 18  # voxels per LightGBM call when scoring a volume
KEEP = 256 << 20  # bytes of logits the trees keep for scoring the same volume again (see volume)


class TreeClassifier(nn.Module):
    """Boosted trees mapping filter features to class logits, as a module of the network.

    The trees live in the ``model`` buffer (LightGBM model text as uint8); :meth:`fit` sets it.
    ``forward`` takes features (B, C, Z, Y, X) like the perceptron's 1x1x1 convolutions; it runs
    on the CPU whatever the tensor's device.
    """

    def __init__(self, n_classes: int, rounds: int = ROUNDS, margin: float | None = None):
        super().__init__()
        self.n_classes, self.rounds, self.margin = n_classes, rounds, margin
        self.register_buffer("model", torch.zeros(0, dtype=torch.uint8))
        self._booster, self._kept = None, None

    @property
    def fitted(self) -> bool:
        return self.model.numel() > 0

    def fit(self, features: np.ndarray, labels: np.ndarray, seed: int = 0) -> Iterator[float]:
        """Train on rows ``features`` (N, C) with classes ``labels`` (N,); yield each round's loss."""
        booster = yield from boost(features, labels, self.n_classes, seed, self.rounds)
        text = booster.model_to_string().encode()
        self.model = torch.frombuffer(bytearray(text), dtype=torch.uint8).to(self.model.device)
        self._booster, self._kept = booster, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.detach().float().movedim(1, -1).reshape(-1, x.shape[1]).cpu().numpy()
        out = torch.from_numpy(self.rows(flat)).to(x.device)
        return out.reshape(*x.shape[:1], *x.shape[2:], -1).movedim(-1, 1)

    def rows(self, features: np.ndarray, early: bool = False) -> np.ndarray:
        """Logits (N, K) float32 of rows (N, C) of any float dtype (stored features are float16).

        ``early`` stops adding rounds to a row once its top class leads the next by :data:`MARGIN`
        logits, looked at every :data:`CHECK` rounds (LightGBM's ``pred_early_stop``): napari's early
        answer. On the ten volumes of ``benchmarks/accuracy``
        (K = 3) it labels 99.97-100 % of the voxels as every round does, in 15-59 % of the time
        (MNI's 4.5 million voxels: 4.4 s, not 11.7 s); the trees give a stopped voxel's top class a
        probability of at least ``1 / (1 + (K - 1) e^-MARGIN)`` (0.96 with three classes), not
        near 1, so the uncertainty of such an answer is no guide (``benchmarks/accuracy/tree_rounds.py``;
        docs/accuracy.md, "The trees alone stop early"). Otherwise a row stops at the trees' own
        :attr:`margin`, if they have one.
        """
        return scores(self.booster(), features, MARGIN if early else self.margin)

    def volume(self, features: np.ndarray, early: bool = False) -> np.ndarray:
        """Logits (K, Z, Y, X) as :data:`.filters.STORED` (as the network reads them) of a feature
        volume (C, Z, Y, X); ``early`` as in :meth:`rows`.

        The trees keep the logits of the largest volume they scored, under a digest of its bytes, and
        return a copy when asked again (``early`` alike): the U-Net's inputs and the final prediction
        score the same features, and scoring costs 10-13 s on MNI's 4.5 million voxels
        (2 cores). Smaller volumes (napari's preview slabs) do not replace them; logits over
        :data:`KEEP` bytes are not kept (a 256³ volume with 8 classes is within it; larger ones are
        predicted chunk by chunk, and training must not hold a second copy of them).
        """
        key = (features.shape, early, hashlib.sha256(np.ascontiguousarray(features).data).digest())
        kept = self._kept  # read once: dask's threads score chunks of one model at the same time
        if kept is not None and kept[0] == key:
            return kept[1].copy()
        flat = features.reshape(features.shape[0], -1)
        out = np.empty((self.n_classes, flat.shape[1]), STORED)
        for lo in range(0, flat.shape[1], ROWS):
            rows = np.ascontiguousarray(flat[:, lo : lo + ROWS].T, np.float32)
            out[:, lo : lo + ROWS] = self.rows(rows, early).T
        out = out.reshape(-1, *features.shape[1:])
        if out.nbytes <= KEEP and (self._kept is None or out.size >= self._kept[1].size):
            self._kept = (key, out.copy())
        return out

    def booster(self):
        """The LightGBM booster parsed from :attr:`model` (once); a ValueError if it is not one."""
        if not self.fitted:
            raise RuntimeError("The tree classifier has not been trained.")
        if self._booster is None:
            self._booster = parse(bytes(self.model.cpu().numpy()))
            if self._booster.num_model_per_iteration() != self.n_classes:
                raise ValueError(f"the trees predict {self._booster.num_model_per_iteration()} classes, "
                                 f"the model {self.n_classes}")
        return self._booster

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        given = state_dict.get(prefix + "model")
        if isinstance(given, torch.Tensor):  # the trees' text has its own length
            self.model = torch.zeros_like(given, device=self.model.device)
        self._booster, self._kept = None, None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.fitted:
            self.booster()  # a damaged file fails here, when it is loaded, not at its first prediction


def parse(text: bytes):
    """A LightGBM booster from its model text; a ValueError if the text is not a LightGBM model."""
    import lightgbm

    try:
        return lightgbm.Booster(model_str=text.decode())
    except (lightgbm.basic.LightGBMError, UnicodeDecodeError) as err:
        raise ValueError(f"its trees are not a LightGBM model ({str(err)[:80]})") from err


def scores(booster, features: np.ndarray, margin: float | None = None) -> np.ndarray:
    """Logits (N, K) float32 of rows (N, C) by ``booster``, ROWS at a time; a row gets no more
    rounds once its top class leads by ``margin`` logits (looked at every CHECK rounds), if given."""
    stop = {"pred_early_stop": True, "pred_early_stop_margin": margin, "pred_early_stop_freq": CHECK}
    parts = [booster.predict(np.asarray(features[lo : lo + ROWS], np.float32), raw_score=True,
                             num_threads=torch.get_num_threads(), **(stop if margin is not None else {}))
             for lo in range(0, max(1, len(features)), ROWS)]
    return np.concatenate(parts).astype(np.float32)


def boost(features: np.ndarray, labels: np.ndarray, n_classes: int, seed: int = 0,
          rounds: int = ROUNDS) -> Iterator[float]:
    """Train a LightGBM booster round by round, yielding the training loss after each (computed
    every :data:`LOSS_EVERY` rounds, and after the first and the last); return the booster."""
    import lightgbm

    params = {**PARAMS, "num_class": n_classes, "seed": seed, "num_threads": torch.get_num_threads(),
              "metric": "multi_logloss"}
    data = lightgbm.Dataset(features, labels, params=params, free_raw_data=True)
    booster = lightgbm.Booster(params, data)
    loss = float("nan")
    for done in range(1, rounds + 1):
        booster.update()
        if done % LOSS_EVERY == 0 or done in (1, rounds):
            loss = booster.eval_train()[0][2]
        yield loss
    return booster


def out_of_fold(features: np.ndarray, labels: np.ndarray, folds: np.ndarray, n_classes: int,
                seed: int = 0, rounds: int = ROUNDS, margin: float | None = None) -> Iterator[float]:
    """Logits (N, K) of every row from trees trained without its fold; yields each round's loss.
    ``margin`` stops a row's rounds early as :func:`scores` does.

    With a single fold there is nothing to hold out: the rows get no answer (zero logits, i.e.
    every class equally likely) rather than the overconfident answer on their own training data.
    """
    out = np.zeros((len(labels), n_classes), np.float32)
    for fold in np.unique(folds) if np.unique(folds).size > 1 else ():
        held = folds == fold
        booster = yield from boost(features[~held], labels[~held], n_classes, seed, rounds)
        out[held] = scores(booster, features[held], margin)
    return out


def plane_folds(target: np.ndarray, index: np.ndarray, folds: int | None = None) -> np.ndarray:
    """A fold per painted voxel ``index`` (flat indices into ``target``, -1 = unpainted).

    A voxel belongs to the axis-aligned plane holding most painted voxels through it (napari paints
    in planes). With more planes than folds, planes go to folds in turn along each axis, so a fold
    holds planes of several directions. With a single painted plane, 16-voxel squares in it
    alternate between two folds instead.
    """
    painted = target >= 0
    where = np.unravel_index(index, target.shape)
    per_axis = [painted.sum(axis=tuple(b for b in range(3) if b != a)) for a in range(3)]
    axis = np.stack([per_axis[a][where[a]] for a in range(3)]).argmax(0)
    plane = axis * max(target.shape) + np.choose(axis, where)
    names, rank = np.unique(plane, return_inverse=True)
    if names.size > 1:
        return rank % min(folds or FOLDS, names.size)
    return sum(w // 16 for w in where) % 2
