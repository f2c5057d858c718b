#!/usr/bin/env bash
# A/B of each PATCH against this tree (ab_call.sh), then ncu's memory sections on a decode GEMM of each tree:
#     ROWS="1 16" [NCU_ARGS="ROWS N K SCHEME"] [NCU_METRICS=m1,m2] bash bench/pending/ab_ncu_call.sh A.patch [B.patch ...]
set -uo pipefail
cd "$(dirname "$0")/../.."
ALL=$OUT
ncu_gemm() {   # TREE LOG NCU-ARGS...: ncu on one GEMM (probe_gpu.py one) built from TREE, into $OUT/LOG
  local tree=$1 log=$2; shift 2
  (cd "$tree" && PYTHONPATH=$tree MARLIN_FAST_BUILD_DIR=$tree/.ab_build timeout 100 ncu --target-processes all \
    -k "regex:^marlin_gemm_kernel$" --launch-skip 3 --launch-count 1 "$@" \
    python3 bench/probe_gpu.py one ${NCU_ARGS:-16 8192 8192 channel}) > "$OUT/$log" 2>&1
  echo "$(basename "$OUT") $log: exit $? at ${SECONDS} s"
}
for patch in "$@"; do
  export OUT=$ALL/$(basename "$patch" .patch) && mkdir -p "$OUT"
  bash bench/pending/ab_call.sh "$patch"   # builds the tree and /tmp/ab_b (the tree + patch), times both
  for side in a b; do
    tree=$PWD; [ "$side" = b ] && tree=/tmp/ab_b
    ncu_gemm "$tree" "ncu_$side.log" --section SpeedOfLight --section MemoryWorkloadAnalysis \
      --section MemoryWorkloadAnalysis_Tables
    # a second pass: the named metrics only (a wrong name fails this pass alone)
    [ -z "${NCU_METRICS:-}" ] || ncu_gemm "$tree" "ncu_metrics_$side.log" --metrics "$NCU_METRICS"
  done
done
