#!/usr/bin/env bash
# GPU checks in one prepared script (under 8 minutes on an H100/H200): the CUDA tests, the train
# step's GFLOP/s against the GPU's bf16 matmul, and the K = 3 accuracy rows at 20 and 120 s for
# the default and the paper preset on two datasets. Results go to docs/benchmarks.md ("GPU" and
# the engine-v2 sections) and benchmarks/results/. Needs .venv with a CUDA torch (scripts/setup.sh
# installs one when nvidia-smi finds a GPU) and the benchmark data in benchmarks/results/accuracy/cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
unset PYTHONDONTWRITEBYTECODE
nvidia-smi -L
.venv/bin/python -m pytest -q -p no:cacheprovider tests/core/test_cuda.py tests/core/test_engine_v2.py --device cuda
(cd benchmarks && ../.venv/bin/python bench_gpu.py --steps 20)
for dataset in nuclei ct; do
  .venv/bin/python -m benchmarks.accuracy.v2 --dataset "$dataset" --budgets 20 120 --also paper --tag gpu --docs
done
