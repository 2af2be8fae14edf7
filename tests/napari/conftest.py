"""Fixtures shared by the napari tests."""

import pytest


@pytest.fixture
def errors(monkeypatch):
    """The error notifications the plugin's docks show, collected instead of shown."""
    messages = []
    for module in ("_widget", "_measure_widget", "_qt_parts", "_results_panel"):
        monkeypatch.setattr(f"napari_sparseseg.{module}.show_error", messages.append)
    return messages


@pytest.fixture(autouse=True)
def recovery_in_tmp(monkeypatch, tmp_path):
    """Models kept when a dock closes unsaved go to a temporary cache, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "napari-sparseseg" / "unsaved-models"
