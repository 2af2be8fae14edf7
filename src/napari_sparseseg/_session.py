"""What the dock widget remembers between clicks, without Qt: the model and the layers it made.

A :class:`Session` holds the last model (checkpoint bytes and class names), the one before the
last training round (so that round can be undone), where the model lives on disk, the uncertainty of
the last whole-image prediction, and the layers the plugin created for each image (prediction,
probabilities, uncertainty), tracked by identity: renaming a layer keeps it the plugin's, and
a layer the user deletes is forgotten. It never imports Qt or torch, so it is tested without a
display.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .core import files
from .core.uncertainty import AXIS_PLANES, rank_slices

KINDS = ("prediction", "probabilities", "uncertainty")


class Session:
    """The model, its classes, the last uncertainty and the plugin's own layers per image."""

    def __init__(self):
        self.model: bytes | None = None
        self.model_classes: tuple[str, ...] = ()
        self.model_file: str | None = None  # where the current model is saved (None: memory only)
        self._before_training: tuple | None = None  # (model, classes, file) before the last round
        self.uncertainty: np.ndarray | None = None
        self._made: list[tuple[object, str, object]] = []  # (image layer, kind, layer)

    # ------------------------------------------------------------ model

    def set_model(self, model: bytes, class_names, file: str | None = None) -> None:
        """A model loaded from ``file`` (forgets any round to undo)."""
        self.model, self.model_classes, self.model_file = model, tuple(class_names), file
        self._before_training = None

    def trained(self, model: bytes, class_names) -> None:
        """A training round ended with ``model``; the model before it can be restored by :meth:`undo`."""
        before = (self.model, self.model_classes, self.model_file)
        self.set_model(model, class_names)
        self._before_training = before if before[0] is not None else None

    def can_undo(self) -> bool:
        return self._before_training is not None

    def undo(self) -> None:
        """Restore the model from before the last training round (there is one after the second round)."""
        if self._before_training is None:
            raise ValueError("There is no training round to undo.")
        self.model, self.model_classes, self.model_file = self._before_training
        self._before_training = None

    def where(self) -> str:
        """Where the model lives, for the dock: 'in memory only' or the file it was saved to."""
        if self.model is None:
            return "No model yet."
        if self.model_file:
            return f"Model saved in {self.model_file}."
        return "Model in memory only (not saved)."

    def keep_unsaved(self, folder: Path | None = None) -> Path | None:
        """Write a model nobody saved to ``folder`` (default :func:`recovery_folder`) and return the
        file, so that closing the dock never drops a trained model; None when there is none."""
        if self.model is None or self.model_file:
            return None
        folder = folder or recovery_folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = files.write_bytes(folder / f"model-{time.strftime('%Y%m%d-%H%M%S')}.pt", self.model)
        self.model_file = str(path)
        return path

    def start_from(self, n_classes: int, scratch: bool) -> tuple[bytes | None, str]:
        """The model bytes to continue training from (None: a new model) and why, if it changed."""
        if scratch or self.model is None:
            return None, ""
        if len(self.model_classes) < n_classes:
            return None, (f"{n_classes} classes are painted but the model knows "
                          f"{len(self.model_classes)}; training a new model.")
        return self.model, ""

    # ------------------------------------------------------------ layers

    def layer(self, image, kind: str):
        """The ``kind`` layer the plugin made for ``image``, or None."""
        return next((layer for im, k, layer in self._made if im is image and k == kind), None)

    def keep(self, image, kind: str, layer) -> None:
        """Remember ``layer`` as the ``kind`` layer of ``image`` (replacing an earlier one)."""
        if kind not in KINDS:
            raise ValueError(f"Unknown layer kind {kind!r}; one of {', '.join(KINDS)}.")
        self._made = [(im, k, old) for im, k, old in self._made if not (im is image and k == kind)]
        self._made.append((image, kind, layer))

    def forget(self, layer) -> None:
        """``layer`` left the viewer: forget it as an image and as one of the plugin's layers."""
        self._made = [(im, k, own) for im, k, own in self._made if layer is not im and layer is not own]

    def own(self, layer) -> bool:
        """True for layers the plugin made (they are never offered as annotations or truth)."""
        return any(layer is own for _, _, own in self._made)

    def prediction(self, image):
        """The prediction layer of ``image``, or a ValueError saying what to do."""
        layer = self.layer(image, "prediction")
        if layer is None:
            raise ValueError(f"There is no prediction of '{image.name}' yet; train or predict first.")
        return layer

    # ------------------------------------------------------------ where to paint next

    def next_plane(self, annotation: np.ndarray) -> tuple[int, int, float]:
        """(axis, index, mean uncertainty) of the unpainted plane the model is least sure about."""
        if self.uncertainty is None or self.uncertainty.shape != annotation.shape:
            raise ValueError("Predict the image first; the ranking uses the model's uncertainty.")
        ranked = rank_slices(self.uncertainty, annotation, top=3)
        if not ranked:
            raise ValueError("Every plane is painted already.")
        return ranked[0]


def recovery_folder() -> Path:
    """Where unsaved models go when their dock closes: ``$XDG_CACHE_HOME/napari-sparseseg/unsaved-models``
    (``~/.cache/…`` when the variable is unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "napari-sparseseg" / "unsaved-models"


def plane_hint(axis: int, index: int, score: float) -> str:
    """'Paint xz plane y = 12 (mean uncertainty 0.41).'"""
    return f"Paint {AXIS_PLANES[axis]} plane {'zyx'[axis]} = {index} (mean uncertainty {score:.2f})."
