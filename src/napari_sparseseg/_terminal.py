"""What the ``sparseseg`` command shows while a job runs: progress bars and messages on stderr."""

from __future__ import annotations

import sys
import time

from .core.events import (
    ChunkProgress,
    Failed,
    Message,
    PredictionReady,
    Progress,
    Written,
    advice,
)


class Terminal:
    """``send`` for the command line: progress bars and messages on stderr; keeps the prediction."""

    def __init__(self):
        self.bars = {Progress: ProgressBar("training"), ChunkProgress: ProgressBar("predicting")}
        self.prediction: PredictionReady | None = None
        self.failed = ""

    def __call__(self, event) -> None:
        if type(event) in self.bars:
            self.bars[type(event)].update(event)
        elif isinstance(event, (Message, Written)):
            for bar in self.bars.values():
                bar.end_line()
            sys.stderr.write(f"{event}\n")
        elif isinstance(event, PredictionReady) and not event.early:
            self.prediction = event
        elif isinstance(event, Failed):
            self.failed = event.message


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most five times a second."""

    def __init__(self, label: str, width: int = 24):
        self.label, self.width, self.last, self.open = label, width, 0.0, False

    def end_line(self) -> None:
        """End a bar line still being redrawn, so that a message gets a line of its own."""
        if self.open:
            sys.stderr.write("\n")
            self.open, self.last = False, 0.0

    def update(self, event) -> None:
        """Draw a training :class:`Progress` or a :class:`ChunkProgress`."""
        if isinstance(event, ChunkProgress):
            fraction, done, end = event.done / event.total, event.done == event.total, "\n"
            text = f"{event.done}/{event.total} tasks"
        else:
            fraction, done = event.fraction, event.done
            said = [f"  ({event.reason})", *advice(event.reason, event.kept_first)]
            end = "".join(f"{line}\n" for line in said)
            text = (f"it {event.iteration}  loss {event.loss:.4f}  {event.elapsed:.0f} s  "
                    f"{event.voxels_per_s / 1e6:.2f} Mvox/s")
        now = time.perf_counter()
        if not done and now - self.last < 0.2:
            return
        self.last = now
        filled = int(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {100 * fraction:3.0f}%  {text}" + (end if done else ""))
        sys.stderr.flush()
        self.open = not done
