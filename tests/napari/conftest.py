"""Fixtures shared by the napari tests."""

import pytest


@pytest.fixture
def errors(monkeypatch):
    """The error notifications the plugin's docks show, collected instead of shown."""
    messages = []
    for module in ("_widget", "_measure_widget", "_qt_parts"):
        monkeypatch.setattr(f"napari_sparseseg.{module}.show_error", messages.append)
    return messages
