#!/usr/bin/env bash
# The second device call (bench/pending/README.md), on the machine the first call left warm:
#
#     bash bench/pending/sweep_call.sh <main's commit>     (carry .snapshot and .whl; $OUT is the device tool's)
#
# Builds main + gemm-loop + wgmma + config-sweep and runs `probe_gpu.py sweep`: every (shape, M, scheme,
# configuration, split count) checked against float64 and timed. $OUT/sweep.json goes to bench/pick_configs.py.
set -uo pipefail
cd "$(dirname "$0")/../.."
COMMIT=${1:?usage: bash bench/pending/sweep_call.sh COMMIT}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
OUT=$OUT/r COMMIT=$COMMIT \
  PATCHES="bench/pending/gemm-loop.patch bench/pending/wgmma.patch bench/pending/config-sweep.patch" \
  timeout 300 bash bench/gpu_suite.sh build || { echo "sweep_call: the build failed"; exit 1; }
PYTHONPATH=$PWD:/tmp/site MARLIN_FAST_BUILD_DIR=$PWD/.gpu_build/marlin_fast SWEEP_OUT=$OUT/sweep.json \
  timeout ${SWEEP_LIMIT:-270} python3 bench/probe_gpu.py sweep > "$OUT/sweep.log" 2>&1
echo "sweep: exit $? after ${SECONDS} s"; tail -5 "$OUT/sweep.log"
