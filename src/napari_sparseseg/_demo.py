"""Open the demo sample, its prediction and the dock widget in napari (needs a display)."""

from __future__ import annotations


def show(sample, prediction) -> None:
    """Show image, painted slices, truth and prediction with the widget; blocks until closed."""
    import napari

    viewer = napari.Viewer(title="napari-sparseseg demo")
    viewer.add_image(sample.image, name="tubules", scale=sample.spacing)
    viewer.add_labels(sample.truth, name="truth", scale=sample.spacing, visible=False)
    viewer.add_labels(prediction.labels, name="tubules prediction", scale=sample.spacing, opacity=0.5)
    viewer.add_labels(sample.annotation, name="tubules annotations", scale=sample.spacing,
                      metadata={"class_names": list(sample.class_names)})
    viewer.window.add_plugin_dock_widget("napari-sparseseg", "Sparse segmentation")
    napari.run()
