"""The baseline a user would pick instead: an ilastik-style random forest on 3D filter features.

Features (ilastik's pixel-classification set, computed with :mod:`scipy.ndimage`): the raw
intensity and, at each scale σ ∈ {1, 2.5, 5}, Gaussian smoothing, Laplacian of Gaussian,
Gaussian gradient magnitude, difference of Gaussians (σ − 0.66σ, as ilastik) and the three
Hessian-of-Gaussian eigenvalues: 1 + 3 × 7 = 22 features. σ is in units of the finest voxel
size and is divided by the spacing per axis, so anisotropic volumes get a physically round
kernel; derivatives are taken in the same physical units.

The forest (scikit-learn, 100 trees) is trained on exactly the painted voxels and predicts every
voxel in chunks. As a command it mirrors ``sparseseg segment``::

    python -m benchmarks.accuracy.forest IMAGE ANNOTATIONS --output MASK [--trees 100] [--jobs 2]

and prints its timings (features, fit, predict) as one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import combinations_with_replacement

import numpy as np
from scipy import ndimage

from napari_sparseseg.core import io

SIGMAS = (1.0, 2.5, 5.0)
DOG_RATIO = 0.66
CHUNK = 1 << 20  # voxels per eigenvalue / prediction chunk


def feature_names(sigmas=SIGMAS) -> list[str]:
    """Names of the columns :func:`filter_bank` returns, in order."""
    per_sigma = ["gauss", "log", "gradmag", "dog", "hess0", "hess1", "hess2"]
    return ["raw"] + [f"{name}@{s:g}" for s in sigmas for name in per_sigma]


def filter_bank(image: np.ndarray, spacing, sigmas=SIGMAS) -> np.ndarray:
    """(voxels, features) float32 feature matrix of ``image`` (z, y, x)."""
    image = np.asarray(image, np.float32)
    rel = np.asarray(spacing, float) / min(spacing)  # spacing in units of the finest axis
    features = np.empty((image.size, len(feature_names(sigmas))), np.float32)
    features[:, 0] = image.ravel()
    column = 1
    for sigma in sigmas:
        for values in _scale_features(image, sigma / rel, rel):
            features[:, column] = values.ravel()
            column += 1
    return features


def _scale_features(image, sigma_vox, rel):
    """Seven feature volumes at one scale (σ per axis in voxels, ``rel`` spacing per axis)."""
    smooth = ndimage.gaussian_filter(image, sigma_vox)
    yield smooth
    hessian = _hessian(image, sigma_vox, rel)
    yield hessian[(0, 0)] + hessian[(1, 1)] + hessian[(2, 2)]  # Laplacian of Gaussian
    yield _gradient_magnitude(image, sigma_vox, rel)
    yield smooth - ndimage.gaussian_filter(image, DOG_RATIO * sigma_vox)
    yield from _eigenvalues(hessian)


def _derivative(image, sigma_vox, orders, rel):
    """Gaussian derivative of the given order per axis, in physical (finest-axis) units."""
    scale = np.prod(rel ** np.asarray(orders))
    return ndimage.gaussian_filter(image, sigma_vox, order=orders) / np.float32(scale)


def _hessian(image, sigma_vox, rel) -> dict:
    hessian = {}
    for i, j in combinations_with_replacement(range(3), 2):
        orders = [0, 0, 0]
        orders[i] += 1
        orders[j] += 1
        hessian[(i, j)] = _derivative(image, sigma_vox, orders, rel)
    return hessian


def _gradient_magnitude(image, sigma_vox, rel):
    total = np.zeros(image.shape, np.float32)
    for axis in range(3):
        orders = [0, 0, 0]
        orders[axis] = 1
        total += _derivative(image, sigma_vox, orders, rel) ** 2
    return np.sqrt(total)


def _eigenvalues(hessian: dict) -> list[np.ndarray]:
    """The three eigenvalues (ascending) of the symmetric 3×3 Hessian at every voxel."""
    shape = hessian[(0, 0)].shape
    flat = {key: value.ravel() for key, value in hessian.items()}
    out = np.empty((flat[(0, 0)].size, 3), np.float32)
    for start in range(0, out.shape[0], CHUNK):
        part = slice(start, start + CHUNK)
        matrix = np.empty((len(out[part]), 3, 3), np.float32)
        for (i, j), values in flat.items():
            matrix[:, i, j] = matrix[:, j, i] = values[part]
        out[part] = np.linalg.eigvalsh(matrix)
    return [out[:, e].reshape(shape) for e in range(3)]


def fit_predict(features, annotation, trees=100, jobs=2, seed=0) -> tuple[np.ndarray, dict]:
    """Train on painted voxels, predict all; returns (labels uint8 0..K-1, seconds per stage)."""
    from sklearn.ensemble import RandomForestClassifier

    painted = annotation.ravel() > 0
    start = time.perf_counter()
    forest = RandomForestClassifier(n_estimators=trees, n_jobs=jobs, random_state=seed)
    forest.fit(features[painted], annotation.ravel()[painted].astype(np.int64) - 1)
    fitted = time.perf_counter()
    labels = np.empty(len(features), np.uint8)
    for first in range(0, len(features), CHUNK):
        proba = forest.predict_proba(features[first : first + CHUNK])
        labels[first : first + CHUNK] = forest.classes_[proba.argmax(1)]
    done = time.perf_counter()
    timing = {"fit_s": fitted - start, "predict_s": done - fitted, "train_voxels": int(painted.sum())}
    return labels.reshape(annotation.shape), timing


def segment(image: io.Volume, annotation: np.ndarray, trees=100, jobs=2, seed=0):
    """Features, fit and prediction for one volume; returns (labels, timings)."""
    start = time.perf_counter()
    features = filter_bank(image.data, image.spacing)
    timing = {"features_s": time.perf_counter() - start, "n_features": features.shape[1]}
    labels, more = fit_predict(features, annotation, trees, jobs, seed)
    return labels, {**timing, **more}


def main(argv=None) -> int:
    """Command form: read image and annotations, write the mask, print timings as JSON."""
    parser = argparse.ArgumentParser(description="ilastik-style random forest from painted voxels")
    parser.add_argument("image")
    parser.add_argument("annotations")
    parser.add_argument("--output", required=True)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    image = io.read_volume(args.image)
    annotation = io.read_volume(args.annotations).data
    labels, timing = segment(image, annotation, args.trees, args.jobs, args.seed)
    io.write_volume(args.output, labels, like=image)
    timing["total_s"] = time.perf_counter() - start
    print(json.dumps(timing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
