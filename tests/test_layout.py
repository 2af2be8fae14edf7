"""House rules that a test can check: core/ is free of napari and Qt; the manifest is valid."""

import ast
from pathlib import Path

import napari_sparseseg

PACKAGE = Path(napari_sparseseg.__file__).parent
FORBIDDEN = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy"}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_core_imports_neither_napari_nor_qt():
    offenders = {
        f"{path.name}: {name}"
        for path in (PACKAGE / "core").glob("*.py")
        for name in _imports(path)
        if name in FORBIDDEN
    }
    assert not offenders


def test_manifest_is_valid_and_sample_data_loads():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(PACKAGE / "napari.yaml")
    assert manifest.name == "napari-sparseseg"
    manifest.validate_imports()  # every command's python_name resolves
    from napari_sparseseg._sample_data import make_sample_data

    (image, image_meta, kind), (ann, ann_meta, ann_kind) = make_sample_data()
    assert (kind, ann_kind) == ("image", "labels") and image.shape == ann.shape
    assert image_meta["scale"] == ann_meta["scale"] and ann.max() == 3
