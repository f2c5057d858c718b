#!/usr/bin/env bash
# One device call for issue 12's "Done when" (a run of the final kernel commit, on the H200, with the peer column),
# with bench/pending/repack.patch checked first:
#
#     bash bench/pending/final_call.sh <main's commit>     (carry .snapshot and .whl; $OUT is the device tool's)
#
# 1. Apply repack.patch and build (the peer snapshot builds in the background). Run the repack GPU tests and their
#    compute-sanitizer cases. If either fails, put repack.cu back and rebuild: the rest then measures main as it is.
# 2. The GPU tier, the benchmark with the peer, ncu and compute-sanitizer (bench/gpu_suite.sh), in the time left.
# 3. Everything in $OUT/all.tgz; $OUT/summary.txt says whether repack.patch held.
set -uo pipefail
cd "$(dirname "$0")/../.."
COMMIT=${1:?usage: bash bench/pending/final_call.sh COMMIT}
LIMIT=${LIMIT:-575}              # seconds this call may take, packing included
R=$OUT/r
mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
PATCHES=bench/pending/repack.patch
run_suite() {   # SECONDS STAGES...: bench/gpu_suite.sh on this copy (patched with $PATCHES), under a timeout
  local limit=$1; shift
  OUT=$R COMMIT=$COMMIT PATCHES=$PATCHES SNAPSHOT_SRC=.snapshot/vllm-quantization SUITE_TIMEOUT=240 \
    BENCH_TIMEOUT=150 timeout "$limit" bash bench/gpu_suite.sh "$@"
}
repack_checks() {   # the repack GPU tests (some must have run, not all skipped), then their sanitize cases
  PYTHONPATH=$PWD:/tmp/site MARLIN_FAST_BUILD_DIR=$PWD/.gpu_build/marlin_fast timeout 90 python3 -m pytest -q \
    -p no:cacheprovider -p no:randomly tests/gpu/test_gpu_repack.py tests/gpu/test_marlin_fast_cuda_internals.py \
    -k repack > "$R/repack_tests.log" 2>&1 && tail -n 1 "$R/repack_tests.log" | grep -q " passed" &&
  PYTHONPATH=$PWD:/tmp/site MARLIN_FAST_BUILD_DIR=$PWD/.gpu_build/marlin_fast PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    timeout 90 compute-sanitizer --tool memcheck --error-exitcode 99 --target-processes all python3 -m pytest -q \
    -p no:cacheprovider tests/gpu -k sanitize_repack > "$R/sanitize_repack.log" 2>&1
}
cp marlin_fast/csrc/repack.cu /tmp/repack.cu.main
run_suite 300 build
if repack_checks; then
  echo "repack.patch held: its GPU tests and sanitize cases pass; patches: $PATCHES" | tee "$OUT/summary.txt"
else
  echo "repack.patch failed its checks ($R/repack_tests.log, sanitize_repack.log); main's repack.cu put back" \
    | tee "$OUT/summary.txt"
  cp /tmp/repack.cu.main marlin_fast/csrc/repack.cu
  PATCHES=""
  run_suite 300 build
fi
run_suite $((LIMIT - SECONDS - 25)) ${STAGES:-suite bench ncu sanitize} ||
  echo "gpu_suite: exit $? after ${SECONDS} s (a failed stage, or the time ran out)" | tee -a "$OUT/summary.txt"
tar czf "$OUT/all.tgz" -C "$R" . && rm -rf "$R"
