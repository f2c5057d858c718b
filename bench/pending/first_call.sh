#!/usr/bin/env bash
# The first device call for the pending kernel patches (bench/pending/README.md), in one command:
#
#     bash bench/pending/first_call.sh <main's commit>     (carry .snapshot and .whl; $OUT is the device tool's)
#
# 1. Build main + gemm-loop.patch + wgmma.patch (and the peer snapshot in the background).
# 2. Smoke-test configuration 6, the wgmma kernel (bench/probe_gpu.py smoke), under a 90 s timeout. If it fails or
#    hangs, revert wgmma.patch on this copy and rebuild, so that the rest still measures gemm-loop.
# 3. The GPU tier, the benchmark with the peer, ncu and compute-sanitizer (bench/gpu_suite.sh), in the time left.
# 4. Everything in $OUT/all.tgz; $OUT/summary.txt says which patches ran.
set -uo pipefail
cd "$(dirname "$0")/../.."
COMMIT=${1:?usage: bash bench/pending/first_call.sh COMMIT}
LIMIT=${LIMIT:-575}              # seconds this call may take, packing included
R=$OUT/r
mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
PATCHES="bench/pending/gemm-loop.patch bench/pending/wgmma.patch"
run_suite() {   # SECONDS STAGES...: bench/gpu_suite.sh on this copy, patched with $PATCHES, under a timeout
  local limit=$1; shift
  OUT=$R COMMIT=$COMMIT PATCHES=$PATCHES SNAPSHOT_SRC=.snapshot/vllm-quantization SUITE_TIMEOUT=240 \
    BENCH_TIMEOUT=150 timeout "$limit" bash bench/gpu_suite.sh "$@"
}
# The series is applied here rather than by gpu_suite.sh (which then finds it in), because a series does not
# reverse-apply as one file: the files wgmma.patch touches are saved between the two patches and put back if
# configuration 6 fails its smoke test.
WGMMA=bench/pending/wgmma.patch
touched=$(grep '^diff --git' "$WGMMA" | awk '{print $3}' | sed 's#^a/##' | sort -u)
git apply bench/pending/gemm-loop.patch ||
  { echo "first_call: gemm-loop.patch does not apply" | tee "$OUT/summary.txt"; exit 2; }
existing=$(for f in $touched; do [ -e "$f" ] && echo "$f"; done)
tar cf /tmp/before_wgmma.tar $existing
git apply "$WGMMA" || { echo "first_call: wgmma.patch does not apply" | tee "$OUT/summary.txt"; exit 2; }
run_suite 330 build
if PYTHONPATH=$PWD:/tmp/site MARLIN_FAST_BUILD_DIR=$PWD/.gpu_build/marlin_fast \
    timeout 90 python3 bench/probe_gpu.py smoke 6 > "$R/smoke.log" 2>&1; then
  echo "smoke: configuration 6 ok; patches: $PATCHES" | tee "$OUT/summary.txt"
else
  echo "smoke: configuration 6 failed (exit $?, $R/smoke.log); wgmma.patch reverted, patches: gemm-loop" \
    | tee "$OUT/summary.txt"
  rm -f $touched && tar xf /tmp/before_wgmma.tar
  PATCHES="bench/pending/gemm-loop.patch"
  run_suite 300 build
fi
run_suite $((LIMIT - SECONDS - 25)) suite bench ncu sanitize ||
  echo "gpu_suite: exit $? after ${SECONDS} s (a failed stage, or the time ran out)" | tee -a "$OUT/summary.txt"
tar czf "$OUT/all.tgz" -C "$R" . && rm -rf "$R"
