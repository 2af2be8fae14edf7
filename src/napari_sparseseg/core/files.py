"""Writing files safely: atomically, several as one, and a full disk said in one sentence.

Every file the package writes goes through :func:`atomic_write` (a Zarr store, a folder, through
:func:`.zarr_io.atomic_dir`): the data goes to a hidden temporary file next to the target, which is
moved into place only when it is complete, so an interrupted or failed write never leaves half a
file or destroys the previous one. Inside :func:`all_or_nothing`
the moves wait for the end of the block (a model, its mask and probabilities appear together).
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path


def check_writable(path: Path) -> None:
    """Raise a ValueError unless ``path`` can be created or replaced."""
    parent = path.parent
    if not parent.is_dir():
        problem = f"directory {parent} does not exist"
    elif not os.access(parent, os.W_OK | os.X_OK):
        problem = f"directory {parent} is not writable"
    elif path.is_dir():
        problem = "it is a directory"
    else:
        return
    raise ValueError(f"Cannot write {path}: {problem}; choose another output path.")


_PENDING: ContextVar[list | None] = ContextVar("pending_renames", default=None)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary path next to `path`; move it onto `path` on success.

    Inside :func:`all_or_nothing` the move waits for the end of that block. A full disk is a
    ValueError that says so.
    """
    check_writable(path)
    name = path.name
    suffix = ".nii.gz" if name.lower().endswith(".nii.gz") else path.suffix
    stem = name[: len(name) - len(suffix)]
    tmp = path.with_name(f".{stem}.{uuid.uuid4().hex[:8]}{suffix.lower()}")  # writers want lower
    try:
        yield tmp
        pending = _PENDING.get()
        if pending is None:
            os.replace(tmp, path)
        else:
            pending.append((tmp, path))
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            raise ValueError(no_space(path)) from err
        raise


def no_space(path: Path) -> str:
    """'Cannot write PATH: no space left on device (N MB free there).'"""
    free = shutil.disk_usage(Path(path).parent).free if Path(path).parent.is_dir() else 0
    return f"Cannot write {path}: no space left on device ({free / 1e6:.0f} MB free there); free some space."


@contextmanager
def all_or_nothing() -> Iterator[None]:
    """Files written in the block (by :func:`atomic_write`) appear together at its end, or none."""
    pending: list = []
    token = _PENDING.set(pending)
    try:
        yield
        for tmp, path in pending:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _PENDING.reset(token)


def check_space(needs: dict) -> None:
    """Raise unless every output's folder has room: ``needs`` maps output path -> bytes."""
    by_folder: dict = {}
    for path, size in needs.items():
        if path is not None:
            folder = Path(path).parent
            by_folder[folder] = by_folder.get(folder, 0) + int(size)
    for folder, size in by_folder.items():
        free = shutil.disk_usage(folder).free if folder.is_dir() else size
        if free < size:
            raise ValueError(f"Cannot write to {folder}: the outputs need about {size / 1e6:.0f} MB but "
                             f"{free / 1e6:.0f} MB are free; free some space or write elsewhere.")


def write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (used for model files)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return path
