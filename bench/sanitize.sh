#!/usr/bin/env bash
# compute-sanitizer memcheck over the small GPU-tier cases (tests named *sanitize*): repack with and
# without perm, the checkpoint path, every GEMM config with split-K and bias, and a MoE call.
# The caching allocator is off so that every tensor is its own allocation and out-of-bounds accesses
# past a tensor are caught.  Usage: bash bench/sanitize.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTORCH_NO_CUDA_MEMORY_CACHING=1
# build the extension outside the sanitizer (nvcc under memcheck is slow and irrelevant)
python3 -c "from marlin_fast import _ext; _ext.load()"
exec compute-sanitizer --tool memcheck --error-exitcode 99 --target-processes all \
  python3 -m pytest -q -p no:randomly -p no:cacheprovider tests/gpu -k sanitize "$@"
