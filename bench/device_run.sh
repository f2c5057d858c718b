#!/usr/bin/env bash
# One call on a GPU machine: build the extension, run the GPU tier, benchmark, sanitize; logs in $OUT.
#   OUT=dir bash bench/device_run.sh [build] [tests[=PYTEST_K_EXPR]] [bench|bench-quick] [sanitize]
# Each stage is bounded by `timeout`; the later stages still run when an earlier one fails.
set -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/marlin_out}
mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1
export MARLIN_FAST_BUILD_DIR=${MARLIN_FAST_BUILD_DIR:-/tmp/marlin_fast_build}
status=0
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  nvcc --version | tail -2
} > "$OUT/env.txt" 2>&1
for stage in "$@"; do
  t0=$(date +%s)
  case "$stage" in
    build)
      MARLIN_FAST_VERBOSE=1 timeout 400 python3 -c "from marlin_fast import _ext; _ext.load(); print('built')" \
        > "$OUT/build.log" 2>&1 || { status=1; tail -40 "$OUT/build.log"; } ;;
    tests*)
      expr=${stage#tests}; expr=${expr#=}
      for f in tests/gpu/test_*.py; do   # each file reports its own first failures
        timeout 300 python3 -m pytest -q -p no:randomly -p no:cacheprovider --tb=short --maxfail="${MAXFAIL:-3}" \
          "$f" ${expr:+-k "$expr"} ${HYPOTHESIS_PROFILE:+--hypothesis-profile "$HYPOTHESIS_PROFILE"} 2>&1 \
          | tee -a "$OUT/tests.log" | tail -4
        [ "${PIPESTATUS[0]}" = 0 ] || [ "${PIPESTATUS[0]}" = 5 ] || status=1
      done ;;
    bench|bench-quick)
      quick=""; [ "$stage" = bench-quick ] && quick=--quick
      timeout 400 python3 bench/bench_gpu.py --out "$OUT" $quick 2>&1 | tee "$OUT/bench.log" | tail -60
      [ "${PIPESTATUS[0]}" = 0 ] || status=1 ;;
    probe)
      timeout 120 python3 bench/probe_gpu.py exceptions 2>&1 | tee "$OUT/probe.log" | tail -8
      timeout 200 python3 bench/probe_gpu.py sweep 2>&1 | tee -a "$OUT/probe.log" | tail -14 ;;
    ncu)
      for shape in "1 8192 8192" "1024 8192 8192"; do
        timeout 150 ncu --target-processes all -k regex:marlin_gemm_kernel --launch-skip 3 --launch-count 1 \
          --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats \
          --section LaunchStats python3 bench/probe_gpu.py one $shape 2>&1 | grep -v "^==PROF==" >> "$OUT/ncu.log"
      done
      grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Registers|Stall|Warp Cycles" \
        "$OUT/ncu.log" | head -40 ;;
    ncu-stalls)
      m=dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum
      m=$m,sm__cycles_active.min,sm__cycles_active.max,sm__cycles_active.avg,sm__cycles_elapsed.max
      for r in barrier long_scoreboard wait mio_throttle lg_throttle short_scoreboard math_pipe_throttle \
               not_selected selected dispatch_stall drain no_instruction membar imc_miss branch_resolving; do
        m=$m,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio
      done
      for args in "1 8192 8192 channel 0 4" "1 8192 8192 channel 0 2" "1 28672 4096 channel 0 1" "1024 8192 8192 channel 3 1"; do
        echo "== $args" >> "$OUT/ncu.log"
        timeout 120 ncu --target-processes all -k regex:marlin_gemm_kernel --launch-skip 3 --launch-count 1 \
          --metrics "$m" python3 bench/probe_gpu.py one $args 2>&1 | grep -v "^==PROF==" >> "$OUT/ncu.log"
      done
      grep -E "^==|dram__|duration|cycles_active|stalled" "$OUT/ncu.log" | sed -E 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | head -100 ;;
    sass)
      so=$(ls "$MARLIN_FAST_BUILD_DIR"/*.so | head -1)
      cuobjdump -sass -fun '_ZN11marlin_fast18marlin_gemm_kernelI13__nv_bfloat16Li0ELi0EEEvNS_8GemmArgsE' "$so" \
        > "$OUT/sass_bf16_channel_c0.txt" 2>&1
      grep -oE '^\s+/\*[0-9a-f]{4}\*/\s+[A-Z0-9_.]+' "$OUT/sass_bf16_channel_c0.txt" | awk '{print $2}' \
        | sed 's/\..*//' | sort | uniq -c | sort -rn | head -25 ;;
    sanitize)
      timeout 400 bash bench/sanitize.sh 2>&1 | tee "$OUT/sanitize.log" | tail -15
      [ "${PIPESTATUS[0]}" = 0 ] || status=1 ;;
  esac
  echo "== stage $stage: $(( $(date +%s) - t0 )) s (status so far $status)"
done
exit $status
