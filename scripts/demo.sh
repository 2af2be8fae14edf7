#!/usr/bin/env bash
# Set up .venv if needed, then run the demo on the built-in synthetic sample:
# headless it trains, predicts and prints per-class Dice; with a display it also opens napari.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
unset PYTHONDONTWRITEBYTECODE
gui=()
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then gui=(--gui); fi
exec .venv/bin/sparseseg demo "${gui[@]}" "$@"
