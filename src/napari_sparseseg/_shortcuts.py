"""The dock's keyboard shortcuts, bound on the viewer's keymap (napari's keybinding system).

They work while the canvas has the keyboard focus, also in the Labels paint mode (a Labels
layer binds none of these keys), and are unbound when the dock is closed.
"""

from __future__ import annotations

from . import _layers

# Train/Stop, Next slice, xy, xz and yz planes (the buttons' tooltips name them with hint())
KEYS = ("Shift-T", "Shift-N", "Shift-Z", "Shift-Y", "Shift-X")


def bind(viewer, dock) -> None:
    """Bind :data:`KEYS` to the ``dock``'s actions, replacing an earlier dock's."""
    actions = {
        "Shift-T": dock.train_or_stop,
        "Shift-N": dock.results.next_slice,
        **{key: lambda axis=axis: _layers.show_plane(viewer, axis) for axis, key in enumerate(KEYS[2:])},
    }
    for key, action in actions.items():
        viewer.bind_key(key, lambda _viewer, act=action: act(), overwrite=True)


def unbind(viewer) -> None:
    for key in KEYS:
        viewer.bind_key(key, None)


def hint(key: str) -> str:
    """' (Shift+T)' for a tooltip."""
    return f" ({key.replace('-', '+')})"
