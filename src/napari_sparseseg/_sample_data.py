"""npe2 sample data: the synthetic tubule volume with pre-painted sparse slices."""

from __future__ import annotations


def make_sample_data():
    """Return the image and its annotation layer as napari LayerData tuples."""
    from .core.synthetic import make_sample

    sample = make_sample(shape=(32, 96, 96), slices_per_axis=2, seed=0)
    return [
        (sample.image, {"name": "tubules", "scale": sample.spacing}, "image"),
        (sample.annotation, {"name": "tubules annotations", "scale": sample.spacing}, "labels"),
    ]
