"""The trees alone, scored with fewer rounds or with early stopping: Dice and time to score every voxel.

The default's trees (100 rounds) are fitted on the painted voxels of K = 3 planes per axis, as
training fits them; the same booster then scores the whole volume with only its first 25, 50, 75
or all 100 rounds, and with all of them but LightGBM's early stopping at margins 3, 4 and 6 logits
(checked every ``trees.CHECK`` rounds). This chose how napari's early answer scores them
(``trees.MARGIN``). Each row is one JSON line in ``results/accuracy/tree_rounds.jsonl``: ``agree``
is the share of voxels labelled as all 100 rounds label them, ``top_change`` the mean change of the
trees' top-class probability against them; ``entropy`` and ``unsure`` are the mean uncertainty
(normalised entropy, 0..1) of the probabilities a model of these trees alone predicts (prior weight
0.6) and the share of voxels above 25/255, as napari's uncertainty layer and Next slice see them.

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.tree_rounds mni nuclei

``--rounds 100 200 300 --margins`` fits 300 rounds instead and scores with 100, 200 and 300 of
them (more rounds than the default's; docs/accuracy.md, "A probe for the next session").
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from napari_sparseseg.core import trainer, trees
from napari_sparseseg.core.config import preset
from napari_sparseseg.core.inference import probabilities_uint8
from napari_sparseseg.core.pointwise import painted_index, painted_samples
from napari_sparseseg.core.sampling import annotation_to_target
from napari_sparseseg.core.uncertainty import entropy

from . import data, protocol
from .run import RESULTS, engine, machine

LOG = RESULTS / "tree_rounds.jsonl"
ROUNDS = (25, 50, 75, 100)
MARGINS = (3.0, 4.0, 6.0)


def run(name: str, k: int = 3, seed: int = 0, rounds=ROUNDS, margins=MARGINS) -> list[dict]:
    """Rows of the trees fitted with ``max(rounds)`` rounds, scored with each of ``rounds`` and, with
    all of them, early stopping at each of ``margins``."""
    dataset = data.load(name)
    annotation = protocol.paint(dataset.truth, k)
    chosen = preset("fast")
    segmenter, images, annotations = trainer.prepare([dataset.image], [annotation], chosen.model,
                                                     chosen.train, dataset.spacing)
    rng = np.random.default_rng(seed)
    targets = [annotation_to_target(a) for a in annotations]
    started = time.perf_counter()
    volume = trainer.training_inputs(segmenter, images, targets, rng)[0]
    features_s = time.perf_counter() - started
    index = painted_index(targets, rng)
    features, labels = (t.numpy() for t in painted_samples([volume], targets, rng, index=index))
    fitted = trees.TreeClassifier(segmenter.n_classes, max(rounds))
    started = time.perf_counter()
    list(fitted.fit(features, labels, seed))
    fit_s = time.perf_counter() - started
    flat = np.ascontiguousarray(volume.reshape(volume.shape[0], -1).T, np.float32)
    rows, every, weight = [], None, chosen.model.predict_prior_weight
    every_round = [(max(rounds), None)] + [(n, None) for n in sorted(rounds)[:-1]]  # the reference first
    for n, margin in every_round + [(max(rounds), m) for m in margins]:
        stop = {} if margin is None else {"pred_early_stop": True, "pred_early_stop_margin": margin,
                                          "pred_early_stop_freq": trees.CHECK}
        started = time.perf_counter()
        booster, threads = fitted.booster(), torch.get_num_threads()
        logits = np.concatenate([booster.predict(flat[lo : lo + trees.ROWS], raw_score=True, num_iteration=n,
                                                 num_threads=threads, **stop)
                                 for lo in range(0, len(flat), trees.ROWS)])
        score_s = time.perf_counter() - started
        every = logits if every is None else every
        labels = logits.argmax(1).reshape(volume.shape[1:])
        score = protocol.score(labels, dataset.truth, annotation == 0, dataset.class_names)
        rows.append({"dataset": name, "k": k, "rounds": n, "margin": margin,
                     "mean_fg_dice": score["mean_fg_dice"], "score_s": round(score_s, 2),
                     **_against(logits, every), **_uncertainty(logits, volume.shape[1:], weight),
                     "fit_s": round(fit_s, 2),
                     "features_s": round(features_s, 2), "voxels": int(volume[0].size),
                     "classes": segmenter.n_classes, "date": machine()["date"], "engine": engine()})
    return rows


def _against(logits: np.ndarray, every: np.ndarray) -> dict:
    """How far ``logits`` (N, K) are from ``every`` round's: labels that agree, top-class probability."""
    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    top = every.argmax(1)
    change = np.abs(np.take_along_axis(softmax(logits) - softmax(every), top[:, None], 1))
    return {"agree": round(float(np.mean(logits.argmax(1) == top)), 6),
            "top_change": round(float(change.mean()), 4)}


def _uncertainty(logits: np.ndarray, shape, weight: float) -> dict:
    """Mean normalised entropy of what a model of the trees alone predicts, and the share above 25/255."""
    scores = torch.from_numpy(logits.T.reshape(-1, *shape)).float()
    probs = torch.softmax(weight * torch.log_softmax(scores, 0), 0).numpy()
    unsure = entropy(probabilities_uint8(probs))
    return {"entropy": round(float(unsure.mean()) / 255, 4), "unsure": round(float(np.mean(unsure > 25)), 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="all, or some of: " + ", ".join(data.NAMES))
    parser.add_argument("--rounds", type=int, nargs="+", default=list(ROUNDS),
                        help="rounds to score with; the trees get the most of them (default 25 50 75 100)")
    parser.add_argument("--margins", type=float, nargs="*", default=list(MARGINS),
                        help="early-stopping margins to score with (default 3 4 6; none: no such rows)")
    args = parser.parse_args(argv)
    for name in data.NAMES if "all" in args.datasets else args.datasets:
        with LOG.open("a") as log:
            for row in run(name, rounds=args.rounds, margins=args.margins):
                print(row, flush=True)
                log.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
