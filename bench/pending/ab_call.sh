#!/usr/bin/env bash
# A/B of a pending kernel patch against this tree, one device call: both built side by side, then
# `probe_gpu.py times ROWS...` run alternately (A B A B ...) in separate processes, one file per run under $OUT.
#     ROWS="64 256" ROUNDS=2 bash bench/pending/ab_call.sh bench/pending/x.patch
set -uo pipefail
cd "$(dirname "$0")/../.."
PATCH=${1:?usage: bash bench/pending/ab_call.sh PATCH}
B=/tmp/ab_b
rm -rf "$B" && mkdir -p "$B"
tar c --exclude=./.gpu_build --exclude=./.snapshot --exclude=./.whl . | tar x -C "$B"
(cd "$B" && { git apply "$PATCH" 2>/dev/null || patch -p1 --batch --silent < "$PATCH"; }) || { echo "patch failed"; exit 2; }
build() { (cd "$1" && PYTHONPATH=$1 MARLIN_FAST_BUILD_DIR=$1/.ab_build MAX_JOBS=8 \
  python3 -c "from marlin_fast import _ext; _ext.load()" > "$OUT/build_$2.log" 2>&1); }
build "$PWD" a & build "$B" b & wait
echo "built in ${SECONDS} s"
for round in $(seq "${ROUNDS:-2}"); do
  for side in a b; do
    tree=$PWD; [ "$side" = b ] && tree=$B
    (cd "$tree" && PYTHONPATH=$tree MARLIN_FAST_BUILD_DIR=$tree/.ab_build timeout 120 \
      python3 bench/probe_gpu.py times ${ROWS:-64 256}) > "$OUT/times_${side}_${round}.txt" 2>&1
    echo "round $round $side: exit $? at ${SECONDS} s"
  done
done
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/device.txt"
