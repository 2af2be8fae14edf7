#!/usr/bin/env bash
# Set up .venv if needed, then lint and run the whole test suite (GUI tests under Xvfb).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
# A virtual display for the napari tests, and the X libraries Qt's xcb platform loads.
gui_packages=(xvfb xauth libgl1 libegl1 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0 libxcb-cursor0
  libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-shape0
  libxcb-xinerama0 libxcb-xfixes0)
missing=()
for package in "${gui_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || echo "test: could not install ${missing[*]}; napari tests may be skipped" >&2
fi
unset PYTHONDONTWRITEBYTECODE
.venv/bin/ruff check --exclude .venv .
# A hang (a process that never exits) fails within 40 minutes instead of holding CI forever.
run=(timeout --kill-after=30 2400 .venv/bin/python -m pytest "$@")
if command -v xvfb-run >/dev/null 2>&1; then
  xvfb-run -a -s "-screen 0 1280x1024x24" "${run[@]}"
elif [ "${CI:-}" = true ] && [ -z "${DISPLAY:-}" ]; then
  echo "test: CI=true but no X server (xvfb-run missing, DISPLAY unset): the napari tests would be skipped" >&2
  exit 1
else
  "${run[@]}"
fi
