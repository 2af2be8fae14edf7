"""Run the Qt event loop until a condition holds: shared by the GUI benchmark and the screenshots."""

from __future__ import annotations

import time


def wait_until(condition, timeout: float, every_ms: int = 20) -> bool:
    """Run the Qt event loop until ``condition()`` holds (or ``timeout`` seconds); return whether it did.

    A real QEventLoop, not ``processEvents``: deferred deletions (``deleteLater``) only happen
    in an event loop, and without them replaced widgets stay on screen.
    """
    from qtpy.QtCore import QEventLoop, QTimer

    loop, deadline, result = QEventLoop(), time.perf_counter() + timeout, [False]

    def check():
        if condition():
            result[0] = True
            loop.quit()
        elif time.perf_counter() > deadline:
            loop.quit()

    timer = QTimer(interval=every_ms, timeout=check)
    timer.start()
    loop.exec()
    timer.stop()
    return result[0]
