#!/usr/bin/env bash
# The suite on a GPU machine, in stages, each bounded by `timeout`; the later stages run when an earlier one fails.
#   OUT=dir COMMIT=sha SNAPSHOT_SRC=path bash bench/gpu_suite.sh STAGE...
# Stages:
#   build           our CUDA extension; with SNAPSHOT_SRC set, the vLLM snapshot's FP8 Marlin (bench/peers/
#                   build_vllm_snapshot.py) in the background at the same time (`snapshot` waits for it)
#   suite           the whole suite, laws on our CUDA kernels (backend `cuda`, profile `gpu`), compliance report
#   snapshot        the backend tests on the snapshot library (--marlin-load, backend marlin-ops:marlin_snapshot),
#                   compliance report: what the snapshot lacks (MXFP8, bias) is "not provided"
#   kill            the GEMM mutants and the two GPU-only mutants wrapping our CUDA kernels (profile `gpu`)
#   kill-snapshot   mutants wrapping the snapshot's kernel: the suite's strength on a kernel we did not write
#   sanitize        compute-sanitizer memcheck over the small cases (bench/sanitize.sh)
#   oracle-cost     the oracle's cost of one model-shape example, K = N = 8192, M = 1024 (bench/oracle_cost.py)
#   bench           bench/bench_gpu.py into $OUT/bench, with the snapshot as its peer column when it was built, and
#                   bench/perf_targets.py's table of issue 12's targets (bench/targets.md)
#   ncu             Nsight Compute on a decode (M = 16), an M = 64 and an M = 1024 GEMM, ours and the snapshot's:
#                   speed of light, memory workload (L1/L2 hit rates, busiest memory unit), warp stalls, occupancy,
#                   registers ($OUT/ncu.log; clocks locked, durations not the bench's)
# PATCHES="bench/pending/x.patch ..." (optional): applied to this copy of the tree before any stage, so that a
# pending kernel change runs the GPU tier before it lands on main (bench/pending/README.md); a patch already in
# the tree is left as it is (a series whose last patch is in the tree is taken as in); env.txt lists them. A patch
# must not change this script.
# Builds go to .gpu_build/ (ignored, not carried), so a second call on the same warm machine reuses them.
# Logs and reports under $OUT; the first lines of $OUT/env.txt name the device, versions and commit.
set -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/marlin_out}
BUILD=${BUILD:-$PWD/.gpu_build}
mkdir -p "$OUT" "$BUILD"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MARLIN_FAST_BUILD_DIR=$BUILD/marlin_fast
SNAPSHOT_SO=$BUILD/snapshot/build/_vllm_marlin_snapshot.so
SNAPSHOT=(--marlin-load "$SNAPSHOT_SO" --marlin-backend marlin-ops:marlin_snapshot)
GEMM_MUTANTS="gemm_bias_logical_order gemm_exponent_bias_missing gemm_exponent_bias_twice
  gemm_group_scale_after_mma gemm_e8m0_value_decode gemm_nan_codes_propagate"
GPU_ONLY_MUTANTS="gemm_drops_last_k_tile_at_large_k gemm_rows_beyond_64_shifted"
# on the snapshot: the mutants of what it provides (no MXFP8, no bias in its GEMM), its repack and GEMM wrapped
SNAPSHOT_MUTANTS="interleave8_identity word_index_warp_major row_set_consecutive tile_order_n_reversed
  tile_order_k_major act_order_perm_ignored gemm_exponent_bias_missing gemm_exponent_bias_twice
  gemm_group_scale_after_mma gemm_nan_codes_propagate $GPU_ONLY_MUTANTS linear_wrong_n_slice"
# files whose tests run CPU backends in subprocesses or check packaging: the CPU CI runs them
CPU_ONLY=(--ignore=tests/test_mutants.py --ignore=tests/test_external_library.py --ignore=tests/test_plugin_opt_in.py
          --ignore=tests/test_mutation_survivors.py)
patch_applies() {   # PATCH [reverse]: whether the patch (or its reverse) applies here: git apply, else patch(1)
  if command -v git > /dev/null; then git apply --check ${2:+--reverse} "$1" 2> /dev/null
  else patch -p1 --dry-run --batch --silent ${2:+-R} < "$1" > /dev/null 2>&1; fi
}
apply_patch() {     # PATCH: git apply (works outside a repository), else patch(1)
  if command -v git > /dev/null; then git apply "$1"; else patch -p1 --batch --silent < "$1"; fi
}
patches=(${PATCHES:-})
if [ ${#patches[@]} -gt 0 ] && patch_applies "${patches[-1]}" reverse; then
  # The last patch of the series is in the tree, so the whole series is (a later call on a copy patched by an
  # earlier one): an earlier patch of a series may neither apply nor reverse-apply once later ones are on top.
  for patch_file in "${patches[@]}"; do echo "# patch $patch_file: already applied" | tee -a "$OUT/env.txt"; done
else
  for patch_file in "${patches[@]}"; do
    if patch_applies "$patch_file" && apply_patch "$patch_file"; then result="applied"
    elif patch_applies "$patch_file" reverse; then result="already applied"
    else
      echo "gpu_suite: cannot apply $patch_file to this tree (neither it nor its reverse applies)" | tee -a "$OUT/env.txt"
      exit 2
    fi
    echo "# patch $patch_file: $result" | tee -a "$OUT/env.txt"
  done
fi
status=0
{
  echo "# commit ${COMMIT:-unknown}${PATCHES:+ + patches: $PATCHES}; stages: $*"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, sys, hypothesis, numpy, ml_dtypes, pytest
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'hypothesis',
      hypothesis.__version__, 'numpy', numpy.__version__, 'ml_dtypes', ml_dtypes.__version__, 'pytest', pytest.__version__)"
  nvcc --version | tail -1
  nproc
} >> "$OUT/env.txt" 2>&1

stage_pytest() {   # NAME TIMEOUT ARGS...: pytest into $OUT/NAME.log, its tail on stdout
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" python3 -m pytest -p no:cacheprovider -p no:randomly --hypothesis-profile=gpu "$@" \
    > "$OUT/$name.log" 2>&1
  local code=$?
  tail -6 "$OUT/$name.log"
  echo "stage $name: exit $code in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/$name.log"
  [ "$code" = 0 ] || status=1
}

wait_gpu_idle() {  # timings need the GPU to themselves: a stage cut by its timeout can leave pytest workers on it
  local waited=0 apps
  while apps=$(nvidia-smi --query-compute-apps=pid,process_name --format=csv,noheader 2> /dev/null) && [ -n "$apps" ]; do
    if [ "$waited" -ge 60 ]; then
      echo "gpu_suite: the GPU is still busy after 60 s; killing: $(echo $apps)"
      kill -9 $(echo "$apps" | cut -d, -f1) 2> /dev/null
      sleep 2
      break
    fi
    sleep 2 && waited=$((waited + 2))
  done
  [ "$waited" = 0 ] || echo "gpu_suite: waited ${waited} s for the GPU to go idle"
}

kill_matrix() {    # NAME BASE MUTANTS...: the kill matrix of the mutants wrapping BASE, profile `gpu`
  local name=$1 base=$2; shift 2
  local args=(); for m in "$@"; do args+=(--mutant "$m"); done
  local t0=$(date +%s)
  MARLIN_KILL_PROFILE=gpu timeout "${KILL_TIMEOUT:-280}" python3 -m properties.strength.kill_matrix --base "$base" --relevant \
    --stop-first --jobs 8 "${args[@]}" --out "$OUT/$name" > "$OUT/$name.log" 2>&1 || status=1
  tail -4 "$OUT/$name.log"
  echo "stage $name: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/$name.log"
}

wait_snapshot_build() {   # the background build of stage `build`, if one runs
  local pid; pid=$(cat "$BUILD/snapshot_build.pid" 2>/dev/null)
  while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do sleep 5; done
}

for stage in "$@"; do
  case "$stage" in
    build)
      building=$(cat "$BUILD/snapshot_build.pid" 2>/dev/null)
      if [ -n "$building" ] && kill -0 "$building" 2>/dev/null; then building=yes; else building=; fi
      if [ -n "${SNAPSHOT_SRC:-}" ] && [ ! -f "$SNAPSHOT_SO" ] && [ -z "$building" ]; then   # one build at a time
        ( MAX_JOBS=8 timeout 540 python3 bench/peers/build_vllm_snapshot.py --source "$SNAPSHOT_SRC" \
            --out "$BUILD/snapshot" > "$OUT/snapshot_build.log" 2>&1; echo "exit $?" >> "$OUT/snapshot_build.log" ) &
        echo $! > "$BUILD/snapshot_build.pid"
      fi
      t0=$(date +%s)
      timeout 400 python3 -c "from marlin_fast import _ext; _ext.load(); print('extension built')" \
        > "$OUT/build.log" 2>&1 || { status=1; tail -20 "$OUT/build.log"; }
      echo "stage build (ours): $(( $(date +%s) - t0 )) s" | tee -a "$OUT/build.log" ;;
    suite)
      stage_pytest suite "${SUITE_TIMEOUT:-330}" -n "${WORKERS:-12}" "${CPU_ONLY[@]}" --marlin-backend=cuda \
        --marlin-report="$OUT/compliance_cuda" --durations=0 ;;   # durations: the GPU tier's examples per second
    snapshot)
      wait_snapshot_build
      tail -3 "$OUT/snapshot_build.log" 2>/dev/null
      if [ -f "$SNAPSHOT_SO" ]; then
        stage_pytest snapshot "${SNAPSHOT_TIMEOUT:-300}" -n "${WORKERS:-12}" "${CPU_ONLY[@]}" -m marlin_backend \
          "${SNAPSHOT[@]}" --marlin-report="$OUT/compliance_snapshot"
      else
        echo "stage snapshot: no library at $SNAPSHOT_SO"; status=1
      fi ;;
    kill)
      kill_matrix kill_matrix_cuda cuda $GEMM_MUTANTS $GPU_ONLY_MUTANTS ;;
    kill-snapshot)
      MARLIN_LOAD=$SNAPSHOT_SO kill_matrix kill_matrix_snapshot marlin-ops:marlin_snapshot $SNAPSHOT_MUTANTS ;;
    sanitize)
      timeout 200 bash bench/sanitize.sh > "$OUT/sanitize.log" 2>&1 || status=1
      tail -3 "$OUT/sanitize.log" ;;
    bench)
      wait_snapshot_build
      wait_gpu_idle   # a 7x outlier (336 us at 4096^2 M = 256) ran right after a GPU tier cut at 240 s
      peer=(); [ -f "$SNAPSHOT_SO" ] && peer=(--peer-load "$SNAPSHOT_SO")
      timeout "${BENCH_TIMEOUT:-400}" python3 bench/bench_gpu.py --out "$OUT/bench" --commit "${COMMIT:-unknown}" \
        "${peer[@]}" > "$OUT/bench.log" 2>&1 || status=1
      python3 bench/perf_targets.py "$OUT/bench/bench_gpu.json" > "$OUT/bench/targets.md" 2>&1   # issue 12's targets
      cat "$OUT/bench/targets.md" ;;
    ncu)
      wait_snapshot_build
      wait_gpu_idle
      m=dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__cycles_active.avg
      m=$m,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
      # where L2's read sectors come from: ours asks for 2x the sectors it copies, in every configuration, the peer 1x
      m=$m,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum
      m=$m,lts__t_requests_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_ltcfabric.sum
      for r in barrier long_scoreboard wait mio_throttle short_scoreboard math_pipe_throttle not_selected dispatch_stall; do
        m=$m,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio
      done
      kernels="marlin_gemm_kernel|marlin_gemm_wgmma_kernel|Marlin"   # ours (mma.sync, wgmma), the snapshot's
      for who in ours peer; do
        peer_env=(); [ "$who" = peer ] && peer_env=(PEER_LOAD="$SNAPSHOT_SO")
        [ "$who" = peer ] && [ ! -f "$SNAPSHOT_SO" ] && continue
        for args in "16 8192 8192 channel" "64 28672 4096 channel" "1024 8192 8192 channel"; do
          echo "== $who $args" >> "$OUT/ncu.log"
          env "${peer_env[@]}" timeout 120 ncu --target-processes all -k "regex:^($kernels)$" \
            --launch-skip 3 --launch-count 1 --section SpeedOfLight --section Occupancy --section LaunchStats \
            --section MemoryWorkloadAnalysis \
            --metrics "$m" python3 bench/probe_gpu.py one $args 2>&1 | grep -v "^==PROF==" >> "$OUT/ncu.log"
        done
      done
      keep="^==|Duration|Registers Per|Achieved Occupancy|Memory Throughput|Mem Busy|Max Bandwidth|L1/TEX Hit|L2 Hit"
      grep -E "$keep|dram__|lts__|issue_active|hmma|stalled" \
        "$OUT/ncu.log" | sed -E 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | head -200 ;;
    oracle-cost)
      timeout 120 python3 bench/oracle_cost.py --backend cuda --out "$OUT/oracle_cost.json" > "$OUT/oracle_cost.log" 2>&1 \
        || status=1
      cat "$OUT/oracle_cost.log" ;;
    *) echo "gpu_suite: unknown stage '$stage' (build, suite, snapshot, kill, kill-snapshot, sanitize, oracle-cost, bench, ncu)" >&2
       exit 2 ;;
  esac
done
echo "gpu_suite status $status"
exit $status
