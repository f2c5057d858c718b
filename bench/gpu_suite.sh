#!/usr/bin/env bash
# The whole suite on a GPU machine, in one call: both tiers with the laws run on the CUDA kernels (backend
# `cuda`, profile `gpu`), the compliance report, the GEMM mutants wrapping the kernels (kill matrix, profile
# `gpu`), and the compute-sanitizer subset. Logs and reports under $OUT.
#   OUT=dir COMMIT=sha bash bench/gpu_suite.sh
set -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/marlin_out}
mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1 MARLIN_FAST_BUILD_DIR=${MARLIN_FAST_BUILD_DIR:-/tmp/marlin_fast_build}
GEMM_MUTANTS="gemm_bias_logical_order gemm_exponent_bias_missing gemm_exponent_bias_twice
  gemm_group_scale_after_mma gemm_e8m0_value_decode gemm_nan_codes_propagate"
status=0
{
  echo "# commit ${COMMIT:-unknown}; command: OUT=\$OUT COMMIT=${COMMIT:-unknown} bash bench/gpu_suite.sh"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  nvcc --version | tail -1
} > "$OUT/suite.log" 2>&1
timeout 300 python3 -c "from marlin_fast import _ext; _ext.load(); print('extension built')" >> "$OUT/suite.log" 2>&1 || status=1
timeout ${SUITE_TIMEOUT:-330} python3 -m pytest -n ${WORKERS:-16} -p no:cacheprovider --hypothesis-profile=gpu \
  --marlin-backend=cuda --marlin-report="$OUT/compliance" 2>&1 | tee -a "$OUT/suite.log" | tail -8
[ "${PIPESTATUS[0]}" = 0 ] || status=1
args=(); for m in $GEMM_MUTANTS; do args+=(--mutant "$m"); done
MARLIN_KILL_PROFILE=gpu timeout 150 python3 -m properties.strength.kill_matrix --base cuda --relevant "${args[@]}" \
  --out "$OUT/kill_matrix_gpu" 2>&1 | tee "$OUT/kill_matrix_gpu.log" | tail -8
[ "${PIPESTATUS[0]}" = 0 ] || status=1
timeout 150 bash bench/sanitize.sh > "$OUT/sanitize.log" 2>&1 || status=1
tail -3 "$OUT/sanitize.log"
echo "gpu_suite status $status"
exit $status
