"""A trained segmenter and its single-file checkpoint.

A checkpoint holds the weights, the model config, the intensity normalisation,
class names, voxel spacing and the inference settings the model was trained for (its preset's
window and overlap), which prediction uses unless told otherwise. It is written with
``torch.save`` and read back with ``torch.load(weights_only=True)``, so loading a file never
runs code from it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .config import InferConfig, ModelConfig, from_dict, to_dict
from .files import write_bytes
from .io import existing_file
from .labels import default_class_names
from .model import UNet3D
from .normalize import Normalization

FORMAT = "napari-sparseseg/1"


@dataclass
class Segmenter:
    """A U-Net plus what is needed to apply it to a new volume."""

    net: UNet3D
    normalization: Normalization
    class_names: tuple[str, ...]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    infer: InferConfig = field(default_factory=InferConfig)

    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def n_classes(self) -> int:
        return self.net.n_classes

    @classmethod
    def create(cls, config, n_classes, normalization, class_names=None, spacing=(1.0, 1.0, 1.0),
               infer: InferConfig | None = None):
        """Build an untrained segmenter; default class names are 'background', 'class 1', ..."""
        names = tuple(class_names or default_class_names(n_classes))
        if len(names) != n_classes:
            raise ValueError(f"Got {len(names)} class names for {n_classes} classes.")
        return cls(UNet3D(config, n_classes), normalization, names, tuple(spacing), infer or InferConfig())


def to_bytes(segmenter: Segmenter) -> bytes:
    """The checkpoint as bytes (what :func:`save` writes), e.g. to send to another process."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in segmenter.net.state_dict().items()}
    payload = {
        "format": FORMAT,
        "state_dict": state,
        "model_config": to_dict(segmenter.config),
        "n_classes": segmenter.n_classes,
        "normalization": asdict(segmenter.normalization),
        "class_names": list(segmenter.class_names),
        "spacing": [float(s) for s in segmenter.spacing],
        "infer_config": to_dict(replace(segmenter.infer, device="auto")),  # the device is the user's
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save(segmenter: Segmenter, path) -> Path:
    """Write ``segmenter`` to ``path`` atomically (temp file + rename)."""
    return write_bytes(path, to_bytes(segmenter))


def load(path) -> Segmenter:
    """Read a checkpoint written by :func:`save`; a wrong or corrupt file is a ValueError."""
    path = existing_file(path, "model file")
    return from_bytes(path.read_bytes(), str(path))


def from_bytes(data: bytes, name: str = "model") -> Segmenter:
    """Rebuild a segmenter from checkpoint bytes with ``weights_only=True`` (no code runs)."""
    try:
        with warnings.catch_warnings():  # a refused pickle warns before it raises: one sentence only
            warnings.simplefilter("ignore")
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # the safe unpickler raises many kinds (IndexError, KeyError…) on junk
        raise ValueError(
            f"{name} is not a napari-sparseseg model file (it cannot be read as a safe torch "
            "checkpoint); give a model written by 'sparseseg train' or 'Save model'."
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{name} is not a napari-sparseseg model file (format {FORMAT} expected).")
    return _from_payload(payload, name)


def _from_payload(payload: dict, name: str) -> Segmenter:
    config = payload.get("model_config")
    if isinstance(config, dict) and config.get("pointwise") and "prior_weight" not in config:
        raise ValueError(f"{name} was trained by an earlier development version of the engine whose "
                         "network differs; train a new model from the same annotations.")
    if isinstance(config, dict) and config.get("filters") and "derivatives" not in config:
        config = {**config, "derivatives": "wide"}  # files before 2026-12-06: their bank's features
    try:
        config = from_dict(ModelConfig, config)
        segmenter = Segmenter.create(
            config,
            int(payload["n_classes"]),
            Normalization(**payload["normalization"]),
            payload["class_names"],
            payload["spacing"],
            from_dict(InferConfig, payload.get("infer_config", {})),  # absent in files before 2026-12-02
        )
        segmenter.net.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise ValueError(f"{name} is a damaged napari-sparseseg model ({str(err)[:120]}).") from err
    segmenter.net.eval()
    return segmenter
