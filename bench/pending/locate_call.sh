#!/usr/bin/env bash
# Device call after the first call's suite failed with "illegal instruction" (2026-12-05): which GEMM cases fault
# with gemm-loop alone (sm_90 build) and with wgmma on top (sm_90a build), bench/fault_locate.py; then, if
# gemm-loop alone has no fault, gpu_suite.sh on it (suite, bench with the peer, sanitize, ncu) in the time left.
#     bash bench/pending/locate_call.sh COMMIT     (carry .snapshot and .whl)
set -uo pipefail
COMMIT=${1:?usage: locate_call.sh COMMIT}
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
BUILD=$PWD/.gpu_build
mkdir -p "$BUILD" "$OUT/r"
( MAX_JOBS=8 timeout 540 python3 bench/peers/build_vllm_snapshot.py --source .snapshot/vllm-quantization \
    --out "$BUILD/snapshot" > "$OUT/r/snapshot_build.log" 2>&1; echo "exit $?" >> "$OUT/r/snapshot_build.log" ) &
echo $! > "$BUILD/snapshot_build.pid"
b() { local t0=$SECONDS; MARLIN_FAST_BUILD_DIR=$PWD/.b/$1 PYTHONPATH=$PWD:/tmp/site timeout 300 python3 -c \
  "from marlin_fast import _ext; _ext.load(); print('built')" 2>&1 | tail -5; echo "build $1: $((SECONDS - t0)) s"; }
L() { MARLIN_FAST_BUILD_DIR=$PWD/.b/$1 PYTHONPATH=$PWD:/tmp/site timeout $2 python3 bench/fault_locate.py "${@:3}"; }
git apply bench/pending/gemm-loop.patch || exit 2
echo "== gemm-loop (sm_90)"; b loop; L loop 120 0 1 2 3 4 5 > "$OUT/loop.log" 2>&1; loop_rc=$?
tail -25 "$OUT/loop.log"; echo "gemm-loop locate exit $loop_rc"
touched=$(grep '^diff --git' bench/pending/wgmma.patch | awk '{print $3}' | sed 's#^a/##' | sort -u)
tar cf /tmp/before_wgmma.tar $(for f in $touched; do [ -e "$f" ] && echo "$f"; done)
git apply bench/pending/wgmma.patch || exit 2
echo "== gemm-loop + wgmma (sm_90a)"; b wg; L wg 120 0 1 2 3 4 5 6 > "$OUT/wg.log" 2>&1; echo "wgmma locate exit $?"
tail -25 "$OUT/wg.log"
rm -f $touched && tar xf /tmp/before_wgmma.tar   # back to gemm-loop alone
if [ $loop_rc -eq 0 ]; then
  OUT=$OUT/r COMMIT=$COMMIT PATCHES=bench/pending/gemm-loop.patch SNAPSHOT_SRC=.snapshot/vllm-quantization \
    SUITE_TIMEOUT=200 BENCH_TIMEOUT=150 timeout $((570 - SECONDS)) bash bench/gpu_suite.sh build suite bench sanitize ncu
  echo "gpu_suite exit $? at ${SECONDS} s"
fi
tar czf "$OUT/all.tgz" -C "$OUT/r" . && rm -rf "$OUT/r"
