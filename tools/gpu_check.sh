#!/usr/bin/env bash
# The GPU checks in one go, for a machine with CUDA (issue 17): the CUDA tests (gsplat against our CPU
# rasterizer, the sync-free training step) and the training benchmark on the GPU recipe and on cpu_fast.
#   bash tools/gpu_check.sh [OUT]        (OUT: where the JSON and logs go, default gpu_check/)
set -euo pipefail
out=${1:-gpu_check}
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" | tee "$out/device.txt"
python -m pytest -q -p no:cacheprovider -m cuda tests 2>&1 | tee "$out/cuda_tests.log"
python tools/bench_train.py --device cuda --config cpu_fast --out /tmp/bench_train_cuda_fast --json "$out/bench_train_cuda_cpu_fast.json" 2>&1 | tee "$out/bench_cuda_fast.log"
python tools/bench_train.py --device cuda --out /tmp/bench_train_cuda --json "$out/bench_train_cuda.json" 2>&1 | tee "$out/bench_cuda.log"
