#!/usr/bin/env bash
# The first device call for the pending kernel patches (bench/pending/README.md), in one command:
#
#     bash bench/pending/first_call.sh <main's commit>     (carry .snapshot and .whl; $OUT is the device tool's)
#
# 1. Build main + gemm-loop.patch + wgmma.patch (and the peer snapshot in the background).
# 2. Smoke-test every configuration (bench/fault_locate.py: 32 cases each, a fault located to its case). If only
#    configuration 6 (the wgmma kernel) fails, revert wgmma.patch on this copy and rebuild, so that the rest still
#    measures gemm-loop; if others fail, stop there (a fault kills every later call of a suite's process).
# 3. The GPU tier, the benchmark with the peer, ncu and compute-sanitizer (bench/gpu_suite.sh), in the time left.
# 4. Everything in $OUT/all.tgz; $OUT/summary.txt says which patches ran.
set -uo pipefail
cd "$(dirname "$0")/../.."
COMMIT=${1:?usage: bash bench/pending/first_call.sh COMMIT}
LIMIT=${LIMIT:-575}              # seconds this call may take, packing included; STAGES: the stages after the smoke
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
locate() {   # CONFIG...: bench/fault_locate.py on this build, under a timeout; 0 if no case faults or misses
  PYTHONPATH=$PWD:/tmp/site MARLIN_FAST_BUILD_DIR=$PWD/.gpu_build/marlin_fast timeout 150 \
    python3 bench/fault_locate.py "$@" > "$R/smoke.log" 2>&1
}
run_suite 330 build
if locate 0 1 2 3 4 5 6; then
  echo "smoke: configurations 0-6 ok; patches: $PATCHES" | tee "$OUT/summary.txt"
elif ! grep -E "^FAULT|OVER THE BOUND" "$R/smoke.log" | grep -qv "config=6\|(6, "; then
  echo "smoke: only configuration 6 failed ($R/smoke.log); wgmma.patch reverted, patches: gemm-loop" \
    | tee "$OUT/summary.txt"
  mv "$R/smoke.log" "$R/smoke_wgmma.log"
  rm -f $touched && tar xf /tmp/before_wgmma.tar
  PATCHES="bench/pending/gemm-loop.patch"
  run_suite 300 build
  locate 0 1 2 3 4 5 || { echo "smoke: gemm-loop fails too; no suite" | tee -a "$OUT/summary.txt"
                          tar czf "$OUT/all.tgz" -C "$R" . && rm -rf "$R"; exit 1; }
else
  echo "smoke: configurations 0-5 fail ($R/smoke.log); no suite" | tee "$OUT/summary.txt"
  tar czf "$OUT/all.tgz" -C "$R" . && rm -rf "$R"; exit 1
fi
run_suite $((LIMIT - SECONDS - 25)) ${STAGES:-suite bench ncu sanitize} ||
  echo "gpu_suite: exit $? after ${SECONDS} s (a failed stage, or the time ran out)" | tee -a "$OUT/summary.txt"
tar czf "$OUT/all.tgz" -C "$R" . && rm -rf "$R"
