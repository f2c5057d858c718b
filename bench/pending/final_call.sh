#!/usr/bin/env bash
# One device call for issue 12's "Done when" (a run of the final kernel commit, on the H200, with the peer column),
# with a pending kernel patch checked first:
#
#     CHECK_K=EXPR SANITIZE_K=EXPR bash bench/pending/final_call.sh <main's commit> [PATCH]
#                                                  (carry .snapshot and .whl; $OUT is the device tool's)
#
# 1. Apply PATCH (if given) and build (the peer snapshot builds in the background). Run the patch's own GPU tests
#    (`pytest tests/gpu -k CHECK_K`: some must pass, none fail) and its compute-sanitizer cases (`-k SANITIZE_K`).
#    If either fails, build main's sources again without it: the rest then measures main as it is.
# 2. The GPU tier, the benchmark with the peer, ncu and compute-sanitizer (bench/gpu_suite.sh), in the time left.
# 3. Everything in $OUT/all.tgz; $OUT/summary.txt says whether the patch held.
set -uo pipefail
cd "$(dirname "$0")/../.."
COMMIT=${1:?usage: bash bench/pending/final_call.sh COMMIT [PATCH]}
PATCHES=${2:-}
LIMIT=${LIMIT:-575}              # seconds this call may take, packing included
R=$OUT/r
rm -rf "$R" && mkdir -p "$R"   # a reused machine kept an earlier call's files there (bench/results/gpu/h100-53c0330)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
run_suite() {   # SECONDS STAGES...: bench/gpu_suite.sh on this copy (patched with $PATCHES), under a timeout
  local limit=$1; shift
  OUT=$R COMMIT=$COMMIT PATCHES=$PATCHES SNAPSHOT_SRC=.snapshot/vllm-quantization SUITE_TIMEOUT=${SUITE_TIMEOUT:-300} \
    BENCH_TIMEOUT=150 timeout "$limit" bash bench/gpu_suite.sh "$@"
}
patch_checks() {   # the patch's GPU tests (some passed, none failed), then its sanitize cases
  PYTHONPATH=$PWD:/tmp/site MARLIN_FAST_BUILD_DIR=$PWD/.gpu_build/marlin_fast timeout 150 python3 -m pytest -q \
    -p no:cacheprovider -p no:randomly -n 8 tests/gpu -k "${CHECK_K:?CHECK_K: a pytest -k expression of the patch GPU tests}" \
    > "$R/patch_tests.log" 2>&1 && tail -n 1 "$R/patch_tests.log" | grep -q " passed" &&
  PYTHONPATH=$PWD:/tmp/site MARLIN_FAST_BUILD_DIR=$PWD/.gpu_build/marlin_fast PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    timeout 120 compute-sanitizer --tool memcheck --error-exitcode 99 --target-processes all python3 -m pytest -q \
    -p no:cacheprovider tests/gpu -k "${SANITIZE_K:?SANITIZE_K: a pytest -k expression of its sanitize cases}" \
    > "$R/patch_sanitize.log" 2>&1
}
run_suite 300 build
if [ -z "$PATCHES" ]; then
  echo "no patch: main as it is" | tee "$OUT/summary.txt"
elif patch_checks; then
  echo "$PATCHES held: its GPU tests (-k '$CHECK_K') and sanitize cases (-k '$SANITIZE_K') pass" | tee "$OUT/summary.txt"
else
  echo "$PATCHES failed its checks ($R/patch_tests.log, patch_sanitize.log); main's sources built again" \
    | tee "$OUT/summary.txt"
  if command -v git > /dev/null; then git apply -R $PATCHES; else patch -p1 -R --batch --silent < $PATCHES; fi
  PATCHES=""
  run_suite 300 build
fi
run_suite $((LIMIT - SECONDS - 25)) ${STAGES:-suite bench ncu sanitize} ||
  echo "gpu_suite: exit $? after ${SECONDS} s (a failed stage, or the time ran out)" | tee -a "$OUT/summary.txt"
tar czf "$OUT/all.tgz" -C "$R" . && rm -rf "$R"
