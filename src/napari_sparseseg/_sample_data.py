"""npe2 sample data: the synthetic tubule volume with pre-painted sparse slices."""

from __future__ import annotations

from ._layers import NAMES_KEY, color_dict, default_color


def make_sample_data():
    """Return the image and its annotation layer as napari LayerData tuples.

    The annotation paints two full planes per axis (values 1 background, 2 tubule
    lumen, 3 tubule wall), so a new user can press Train straight away.
    """
    from .core.synthetic import demo_sample

    sample = demo_sample()
    annotation_meta = {
        "name": "tubules annotations",
        "scale": sample.spacing,
        "metadata": {NAMES_KEY: list(sample.class_names)},
        "colormap": color_dict({v: default_color(v) for v in (1, 2, 3)}),
    }
    return [
        (sample.image, {"name": "tubules", "scale": sample.spacing}, "image"),
        (sample.annotation, annotation_meta, "labels"),
    ]
