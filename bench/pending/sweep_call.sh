#!/usr/bin/env bash
# The second device call (bench/pending/README.md), best on the machine the first call left warm:
#
#     bash bench/pending/sweep_call.sh <main's commit>     (carry .snapshot and .whl; $OUT is the device tool's)
#
# 1. main + stream-k: build, smoke-test configurations 0-2 (bench/fault_locate.py), then the
#    stream-K GPU tests and their compute-sanitizer cases ($OUT/r/stream_k.log, sanitize_stream_k.log).
# 2. + config-sweep: rebuild and run `probe_gpu.py sweep` (every shape, M, scheme, configuration and split count,
#    stream-K included, checked against float64 and timed); $OUT/r/sweep.json goes to bench/pick_configs.py.
set -uo pipefail
cd "$(dirname "$0")/../.."
COMMIT=${1:?usage: bash bench/pending/sweep_call.sh COMMIT}
R=$OUT/r
mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site MARLIN_FAST_BUILD_DIR=$PWD/.gpu_build/marlin_fast
build() {   # PATCHES: bench/gpu_suite.sh's build stage on this copy
  OUT=$R COMMIT=$COMMIT PATCHES="$1" timeout 240 bash bench/gpu_suite.sh build >> "$R/build.log" 2>&1
}
P=bench/pending
build "$P/stream-k.patch" || { echo "sweep_call: build failed"; exit 1; }
timeout 120 python3 bench/fault_locate.py 0 1 2 > "$R/smoke.log" 2>&1; echo "smoke 0-2: exit $?" | tee "$R/summary.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider -p no:randomly tests/gpu/test_marlin_fast_cuda_internals.py \
  -k "stream_k or one_hot_exact_in_every_config" > "$R/stream_k.log" 2>&1
echo "stream-K tests: exit $? ($(tail -n 1 "$R/stream_k.log"))" | tee -a "$R/summary.txt"
PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 120 compute-sanitizer --tool memcheck --error-exitcode 99 \
  --target-processes all python3 -m pytest -q -p no:cacheprovider tests/gpu -k "sanitize_gemm_small" \
  > "$R/sanitize_stream_k.log" 2>&1
echo "sanitize (every config, split-K and stream-K): exit $?" | tee -a "$R/summary.txt"
build "$P/config-sweep.patch" || echo "sweep_call: rebuild failed"   # on top of stream-k (see README.md)
SWEEP_OUT=$R/sweep.json timeout $((585 - SECONDS)) python3 bench/probe_gpu.py sweep > "$R/sweep.log" 2>&1
echo "sweep: exit $? after ${SECONDS} s" | tee -a "$R/summary.txt"
tar czf "$OUT/all.tgz" -C "$R" . && rm -rf "$R"
