"""npe2 sample data: the synthetic tubule volume with pre-painted sparse slices."""

from __future__ import annotations

from ._layers import CLASS_NAMES, PALETTE


def make_sample_data():
    """Return the image and its annotation layer as napari LayerData tuples.

    The annotation paints two full planes per axis (values 1 background, 2 tubule
    lumen, 3 tubule wall), so a new user can press Train straight away.
    """
    from .core.synthetic import demo_sample

    sample = demo_sample()
    colors = {0: (0, 0, 0, 0), None: (0, 0, 0, 1)} | {v: PALETTE[v - 1] for v in (1, 2, 3)}
    annotation_meta = {
        "name": "tubules annotations",
        "scale": sample.spacing,
        "metadata": {CLASS_NAMES: list(sample.class_names)},
        "colormap": colors,
    }
    return [
        (sample.image, {"name": "tubules", "scale": sample.spacing}, "image"),
        (sample.annotation, annotation_meta, "labels"),
    ]
