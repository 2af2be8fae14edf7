#!/usr/bin/env bash
# GPU checks in one prepared script: the CUDA tests, the train step's GFLOP/s against the GPU's
# bf16 matmul, and the K = 3 accuracy rows at 20 and 120 s for the default and at 120 s for the
# paper preset, per dataset given (default: ct; each takes about 5 minutes on one GPU). Results go
# to docs/benchmarks.md ("GPU" and "Engine v2 ... (gpu)") and benchmarks/results/, and are copied
# to $OUT when it is set.
#
# Where pip reaches a registry: `bash benchmarks/gpu.sh [DATASET ...]` (scripts/setup.sh installs a
# CUDA torch when nvidia-smi finds a GPU). On a lent machine that reaches nothing and whose python3
# holds a CUDA torch: run `bash benchmarks/gpu_carry.sh` here first, then there, carrying what it
# prints, `bash benchmarks/gpu.sh ct` (the missing packages are installed from .whl/).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -gt 0 ] || set -- ct
if [ -d .whl ] && [ ! -x .venv/bin/python ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH="$PWD/src:/tmp/site"
  py=python3
else
  bash scripts/setup.sh || exit 1
  py="$PWD/.venv/bin/python"
fi
unset PYTHONDONTWRITEBYTECODE
export PYTHONUNBUFFERED=1
keep() {  # what came out so far, where the device tool brings it back
  [ -n "${OUT:-}" ] || return 0
  cp docs/benchmarks.md "$OUT"/ 2>/dev/null
  cp benchmarks/results/bench_gpu.json benchmarks/results/accuracy/v2_gpu_*.json "$OUT"/ 2>/dev/null
  return 0
}
nvidia-smi -L
status=0
"$py" -m pytest -q -p no:cacheprovider tests/core/test_cuda.py tests/core/test_engine_v2.py --device cuda \
  || status=1
(cd benchmarks && "$py" bench_gpu.py --steps 20) || status=1
keep
for dataset in "$@"; do
  "$py" -m benchmarks.accuracy.v2 --dataset "$dataset" --budgets 20 120 --also paper --tag gpu --docs || status=1
  keep
done
exit $status
