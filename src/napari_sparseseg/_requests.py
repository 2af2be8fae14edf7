"""The dock's state turned into a job request for the worker (no torch: the job runs in the child).

Only what decides the request is checked here (a 3D image, an annotation on its grid with
background and a class painted, whether to continue the current model); the job validates the
rest in the child process.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_info

from . import _layers, _lazy
from .core.events import TrainRequest
from .core.validate import check_annotation, count_classes


def train_request(viewer, image, layer, session, options) -> TrainRequest:
    """Train on ``layer``'s strokes over ``image`` (its crop when the image is larger than memory)."""
    _layers.check_volume(image)
    data = _lazy.image_crop(image, layer)
    ann = np.array(layer.data)  # a copy: the user may go on painting while the child trains
    ann = check_annotation(ann, data.shape, f"'{layer.name}'")
    whole = not _lazy.is_lazy(image)  # a large image trains on its crop; Predict does the rest
    n_classes = count_classes([ann], [f"'{layer.name}'"])  # the answer decides whether to continue
    if not (ann == 0).any():
        show_info(f"'{layer.name}' has no unpainted voxel: it looks like a full mask, not sparse "
                  "strokes. Training uses every voxel; pick your annotation layer if this is not it.")
    init, why = session.start_from(n_classes, options.scratch_check.isChecked())
    if why:
        show_info(why)
    chosen = options.settings()
    return TrainRequest(
        (data,), (ann,), _layers.spacing(image),
        tuple(_layers.class_names(layer)[:n_classes]), chosen.model, chosen.train, chosen.infer,
        init, ((image.name, layer.name),), whole and options.predict_check.isChecked(),
        early_answer=True, uncertainty=True,
        view=_layers.current_plane(viewer, image) if whole else None,
        preview_every=options.preview_spin.value(), infer_overrides=options.infer_overrides(),
    )
