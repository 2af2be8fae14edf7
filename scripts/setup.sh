#!/usr/bin/env bash
# Create or reuse the virtual environment .venv at the repository root and install
# napari-sparseseg (editable) with napari, PyQt6 and the test tools.
# Without an NVIDIA GPU it installs the CPU build of torch 2.13.0 and never CUDA packages.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py=.venv/bin/python
stamp=.venv/.sparseseg-setup

[ -x "$py" ] || "${PYTHON:-python3}" -m venv .venv
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/setup.sh ]; then
  exit 0
fi
pip() { "$py" -m pip --disable-pip-version-check "$@"; }

has_nvidia_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

install_torch() {
  if "$py" -c "import torch" >/dev/null 2>&1; then return; fi
  if has_nvidia_gpu || [ "$(uname -s)" = Darwin ]; then
    pip install "torch==2.13.0"            # CUDA build on Linux with a GPU; MPS build on macOS
    return
  fi
  # CPU only: a CPU wheel that pip finds locally (find-links), else PyTorch's CPU index.
  # --no-deps keeps pip from resolving the CUDA build or its nvidia-* packages.
  pip install --no-deps --no-index "torch==2.13.0" \
    || pip install --no-deps --index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}" "torch==2.13.0"
  pip install "torch==2.13.0"              # already satisfied: only adds its pure-Python dependencies
  "$py" -c "import torch, sys; sys.exit(torch.version.cuda is not None)" \
    || { echo "setup: a CUDA torch was installed on a machine without an NVIDIA GPU" >&2; exit 1; }
}

install_torch
pip install -q -e ".[pyqt6,testing]"
# Imports are slow without cached bytecode; compile the environment once.
"$py" -m compileall -q -j 0 .venv/lib >/dev/null 2>&1 || true
touch "$stamp"
echo "setup: .venv is ready ($("$py" -c 'import torch; print("torch", torch.__version__)'))"
