"""House rules that a test can check: core/ is free of napari and Qt, the napari process never
imports torch, the manifest is valid."""

import ast
import json
import subprocess
import sys
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


LOADED = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _loaded_by(*modules: str) -> set[str]:
    """Top-level packages in ``sys.modules`` of a fresh interpreter after importing ``modules``."""
    command = [sys.executable, "-c", LOADED, *modules]
    found = subprocess.run(command, capture_output=True, text=True, check=True)
    return set(json.loads(found.stdout))


def test_the_napari_process_never_imports_torch_and_core_never_imports_qt():
    import yaml

    manifest = yaml.safe_load((PACKAGE / "napari.yaml").read_text())
    gui = {c["python_name"].split(":")[0] for c in manifest["contributions"]["commands"]}
    assert "napari_sparseseg._widget" in gui
    assert "torch" not in _loaded_by(*sorted(gui))  # the dock, reader, writer, sample, measure dock
    core = [f"napari_sparseseg.core.{path.stem}" for path in sorted((PACKAGE / "core").glob("*.py"))]
    loaded = _loaded_by(*core)
    assert "torch" in loaded  # the check sees transitive imports
    assert not loaded & FORBIDDEN


def test_manifest_is_valid_and_sample_data_loads():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(PACKAGE / "napari.yaml")
    assert manifest.name == "napari-sparseseg"
    manifest.validate_imports()  # every command's python_name resolves
    from napari_sparseseg._sample_data import make_sample_data

    (image, image_meta, kind), (ann, ann_meta, ann_kind) = make_sample_data()
    assert (kind, ann_kind) == ("image", "labels") and image.shape == ann.shape
    assert image_meta["scale"] == ann_meta["scale"] and ann.max() == 3


def test_readme_layout_names_every_module():
    readme = (PACKAGE.parents[1] / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    modules = {path.name for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"}
    assert not {name for name in modules if f"{name}`" not in layout}


WITHOUT_NAPARI = """
import importlib.abc, sys
GUI = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy"}
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in GUI:
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NotInstalled())
from napari_sparseseg.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_command_runs_where_napari_and_qt_are_not_installed(tmp_path):
    command = [sys.executable, "-c", WITHOUT_NAPARI, "demo", "--iterations", "2", "--device", "cpu",
               "--output-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Dice" in done.stdout and (tmp_path / "mask.tif").is_file()
