#!/usr/bin/env bash
# Set up .venv if needed, then lint and run the whole test suite (GUI tests under Xvfb).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
if ! command -v xvfb-run >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xauth >/dev/null) \
    || echo "test: could not install xvfb; GUI tests will be skipped" >&2
fi
unset PYTHONDONTWRITEBYTECODE
.venv/bin/ruff check --exclude .venv .
run=(.venv/bin/python -m pytest "$@")
if command -v xvfb-run >/dev/null 2>&1; then
  xvfb-run -a -s "-screen 0 1280x1024x24" "${run[@]}"
else
  "${run[@]}"
fi
