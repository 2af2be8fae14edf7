"""Screenshot of the Measure dock in a real napari window, for docs/user-guide.md.

Shows the synthetic tubules with their truth as a Labels layer, docks "Measure" from the plugin
manifest, measures it and clicks the first object. Needs a display::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/screenshot_measure.py
"""

from __future__ import annotations

import os
import sys

from _qt_wait import wait_until
from make_screenshots import IMAGES, shoot


def main() -> int:
    if not os.environ.get("DISPLAY"):
        print("needs a display: run under xvfb-run -a -s '-screen 0 1600x1000x24'", file=sys.stderr)
        return 2
    import napari
    from napari_sparseseg.core.synthetic import make_sample

    sample = make_sample(shape=(48, 160, 160), slices_per_axis=1, seed=0)
    viewer = napari.Viewer(show=True, title="napari-sparseseg")
    viewer.window.set_geometry(0, 0, 1600, 1000)
    viewer.add_image(sample.image, name="tubules", scale=sample.spacing)
    viewer.add_labels(sample.truth, name="tubules mask", scale=sample.spacing, opacity=0.5)
    _, widget = viewer.window.add_plugin_dock_widget("napari-sparseseg", "Measure")
    widget.unit_combo.setCurrentText("µm")
    widget.measure()
    wait_until(lambda: bool(widget.objects) and widget.measure_button.isEnabled(), 60)
    widget.object_table.selectRow(0)
    widget.go_to_object(0)
    shoot(viewer, IMAGES, "08-measure.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
