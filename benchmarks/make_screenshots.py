"""Screenshots of the annotate → train → refine loop in a real napari window, for docs/user-guide.md.

Opens a shown napari viewer (1600×1000; a hidden window screenshots black), loads the sample
like File > Open Sample > Sparse segmentation > Kidney tubules, docks the widget from the plugin
manifest and drives it through the loop, saving one PNG per step to docs/images/. Needs a display::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/make_screenshots.py

Takes about 2 minutes (a 40 s training run). PNGs over ~300 KB are downscaled with Pillow.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from _qt_wait import wait_until

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent / "docs" / "images"
MAX_BYTES = 300_000


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=IMAGES, help="folder for the PNGs (default docs/images)")
    p.add_argument("--budget", type=float, default=40.0, help="training time budget in seconds")
    return p.parse_args(argv)


def option(widget, name: str):
    """A training option's Qt widget (on ``widget.options`` when the widget has that panel)."""
    return getattr(getattr(widget, "options", widget), name)


def settle(seconds: float = 0.8) -> None:
    wait_until(lambda: False, seconds)


def click(widget, text: str) -> None:
    """Press the push button labelled ``text`` inside ``widget``."""
    from qtpy.QtWidgets import QPushButton

    for candidate in widget.findChildren(QPushButton):
        if candidate.text() == text:
            candidate.click()
            return
    raise LookupError(f"no button {text!r}")


def shoot(viewer, out: Path, name: str) -> Path:
    """Screenshot the whole window (canvas and docks) to ``out/name``; shrink it if too big."""
    settle()
    path = out / name
    viewer.screenshot(str(path), canvas_only=False)
    shrink(path)
    print(f"{path}: {path.stat().st_size // 1000} KB", flush=True)
    return path


def grab(widget, out: Path, name: str) -> Path:
    """Screenshot one Qt widget (here: the dock) to ``out/name``."""
    settle()
    path = out / name
    widget.grab().save(str(path))
    shrink(path)
    print(f"{path}: {path.stat().st_size // 1000} KB", flush=True)
    return path


def shrink(path: Path) -> None:
    """Downscale (then quantise) a PNG until it is under MAX_BYTES."""
    from PIL import Image

    scale = 1.0
    with Image.open(path) as original:
        original.load()
    while path.stat().st_size > MAX_BYTES and scale > 0.4:
        scale *= 0.85
        size = (int(original.width * scale), int(original.height * scale))
        original.convert("RGB").resize(size, Image.LANCZOS).save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        original.convert("RGB").quantize(256).save(path, optimize=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not os.environ.get("DISPLAY"):
        print("needs a display: run under xvfb-run -a -s '-screen 0 1600x1000x24'", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    import napari

    viewer = napari.Viewer(show=True, title="napari-sparseseg")
    viewer.window.set_geometry(0, 0, 1600, 1000)
    viewer.open_sample("napari-sparseseg", "tubules")
    image, annotations = viewer.layers["tubules"], viewer.layers["tubules annotations"]
    _, widget = viewer.window.add_plugin_dock_widget("napari-sparseseg", "Sparse segmentation")
    option(widget, "device_combo").setCurrentText("cpu")
    option(widget, "time_spin").setValue(args.budget)
    try:
        loop(viewer, widget, image, annotations, args.out)
    finally:
        widget.worker.close()
        viewer.close()
    return 0


def loop(viewer, widget, image, annotations, out: Path) -> None:
    # 1. The sample: image, painted slices, widget; on a painted xy plane.
    z = painted(widget, 0)
    viewer.layers.selection.active = annotations
    widget.go_to(0, z)
    shoot(viewer, out, "01-sample.png")

    # 2. Painting planes: xz button, then half of the unpainted plane y = 40 painted (a partial
    #    slice, as a user would with the brush), brush mode on, the painted-slices list updated.
    click(widget, "xz")
    y = 40
    widget.go_to(1, y)
    truth = demo_sample().truth  # the sample's truth
    annotations.data[:, y, :56] = truth[:, y, :56] + 1
    annotations.events.data(value=annotations.data)  # what a brush stroke announces
    annotations.refresh()
    annotations.mode = "paint"
    annotations.brush_size = 4
    annotations.selected_label = 3
    wait_until(lambda: f"y = {y}" in _list_text(widget), 5)
    shoot(viewer, out, "02-paint-planes.png")
    annotations.mode = "pan_zoom"

    # 3. Training in progress: progress bar, loss curve, live preview of the shown plane.
    click(widget, "xy")
    widget.go_to(0, viewer.layers["tubules"].data.shape[0] // 2 + 3)
    option(widget, "uncertainty_check").setChecked(True)
    click(widget, "Train")
    wait_until(
        lambda: (
            not widget.worker.busy
            or (
                "tubules prediction" in viewer.layers
                and len(widget.loss_plot.values) >= 4
                and widget.progress.value() >= 45
            )
        ),
        300,
    )
    shoot(viewer, out, "03-training.png")

    # 4. The prediction layer (annotations hidden so the prediction is visible).
    wait_until(lambda: not widget.worker.busy and not widget._poll_timer.isActive(), 400)
    for layer in viewer.layers:
        layer.visible = layer.name in ("tubules", "tubules prediction")
    viewer.layers.selection.active = viewer.layers["tubules prediction"]
    shoot(viewer, out, "04-prediction.png")

    # 5. Next slice to annotate: jump to the most uncertain unpainted plane (uncertainty shown).
    annotations.visible = True
    viewer.layers["tubules uncertainty"].visible = True
    viewer.layers["tubules uncertainty"].opacity = 0.5
    viewer.layers["tubules prediction"].visible = False
    click(widget, "Next slice to annotate")
    viewer.layers.selection.active = annotations
    shoot(viewer, out, "05-next-slice.png")

    # 6. 3D view of the prediction.
    for layer in viewer.layers:
        layer.visible = layer.name == "tubules prediction"
    viewer.layers["tubules prediction"].opacity = 1.0
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.angles = (-15, 30, 145)
    camera.zoom *= 0.65
    shoot(viewer, out, "06-prediction-3d.png")

    # The dock alone with Advanced unfolded (parameters section).
    viewer.dims.ndisplay = 2
    from qtpy.QtWidgets import QGroupBox

    advanced = next(b for b in widget.findChildren(QGroupBox) if b.title() == "Advanced")
    advanced.setChecked(True)
    grab(widget, out, "07-widget-advanced.png")


def _list_text(widget) -> str:
    return "\n".join(widget.slice_list.item(i).text() for i in range(widget.slice_list.count()))


def demo_sample():
    from napari_sparseseg.core.synthetic import demo_sample as sample

    return sample()


def painted(widget, axis: int) -> int:
    """First painted plane along ``axis`` (from the widget's list)."""
    from napari_sparseseg.core.uncertainty import painted_planes

    planes = painted_planes(widget.inputs.annotations().data)[axis]
    return int(planes[0]) if planes else 0


if __name__ == "__main__":
    sys.exit(main())
