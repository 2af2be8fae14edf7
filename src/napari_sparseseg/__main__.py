"""``sparseseg`` and ``python -m napari_sparseseg``: Ctrl-C is one sentence even while importing.

The command's modules import numpy, nibabel, dask and (for training) torch, which takes seconds;
a Ctrl-C in that time must not print a traceback.
"""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    """Entry point of the ``sparseseg`` console script."""
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        print("sparseseg: interrupted while starting; nothing was written.", file=sys.stderr)
        return 130
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
