"""Open the demo sample and its prediction in a napari viewer (needs a display)."""

from __future__ import annotations


def show(sample, prediction) -> None:
    """Show image, painted slices, truth and prediction; blocks until the window closes."""
    import napari

    viewer = napari.Viewer(title="napari-sparseseg demo")
    viewer.add_image(sample.image, name="tubules", scale=sample.spacing)
    viewer.add_labels(sample.annotation, name="annotations", scale=sample.spacing)
    viewer.add_labels(sample.truth, name="truth", scale=sample.spacing, visible=False)
    viewer.add_labels(prediction.labels, name="tubules prediction", scale=sample.spacing)
    napari.run()
