#!/usr/bin/env bash
# A/B of each PATCH against this tree (ab_call.sh), then ncu's memory sections on a decode GEMM of each tree:
#     ROWS="1 16" bash bench/pending/ab_ncu_call.sh A.patch [B.patch ...]
set -uo pipefail
cd "$(dirname "$0")/../.."
ALL=$OUT
for patch in "$@"; do
  name=$(basename "$patch" .patch)
  export OUT=$ALL/$name && mkdir -p "$OUT"
  bash bench/pending/ab_call.sh "$patch"
  for side in a b; do
    tree=$PWD; [ "$side" = b ] && tree=/tmp/ab_b
    (cd "$tree" && PYTHONPATH=$tree MARLIN_FAST_BUILD_DIR=$tree/.ab_build timeout 100 ncu --target-processes all \
      -k "regex:^marlin_gemm_kernel$" --launch-skip 3 --launch-count 1 --section SpeedOfLight \
      --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
      python3 bench/probe_gpu.py one ${NCU_ARGS:-16 8192 8192 channel}) > "$OUT/ncu_$side.log" 2>&1
    echo "$name ncu $side: exit $? at ${SECONDS} s"
    if [ -n "${NCU_METRICS:-}" ]; then   # a second pass: named metrics only (a wrong name fails this pass alone)
      (cd "$tree" && PYTHONPATH=$tree MARLIN_FAST_BUILD_DIR=$tree/.ab_build timeout 100 ncu --target-processes all \
        -k "regex:^marlin_gemm_kernel$" --launch-skip 3 --launch-count 1 --metrics "$NCU_METRICS" \
        python3 bench/probe_gpu.py one ${NCU_ARGS:-16 8192 8192 channel}) > "$OUT/ncu_metrics_$side.log" 2>&1
      echo "$name ncu metrics $side: exit $? at ${SECONDS} s"
    fi
  done
done
