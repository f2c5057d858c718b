#!/usr/bin/env bash
# Issue 12's decode lead, one device call (~90 s): how many L2 sectors do the probes of bench/probes ask for?
#     bash bench/pending/l2_call.sh      ($OUT is the device tool's)
# l2_sectors: a plain copy in each cp.async form we use (ran 2026-12-05: 1x the bytes, 4 sectors a request).
# l2_pattern: our decode weight stream (and activations) without the compute, in a 5-slot ring.
# Our GEMM asked for 2.00x at every configuration (bench/results/gpu/decode-l2-2026-12-05): if the probes read 1x,
# the doubling comes from the kernel around the copies, not from the copies' pattern. Last, ncu's SourceCounters
# on our decode GEMM itself.
set -uo pipefail
cd "$(dirname "$0")/../probes"
m=lts__t_sectors_srcunit_tex_op_read.sum,lts__t_requests_srcunit_tex_op_read.sum
m=$m,lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum,dram__bytes_read.sum,gpu__time_duration.sum
for probe in l2_sectors:3 l2_pattern:6; do
  name=${probe%:*} kernels=${probe#*:}
  nvcc -O3 -arch=sm_90a -o "/tmp/$name" "$name.cu" || exit 1
  # the second round of launches: the first warms the TLBs
  timeout 120 ncu --launch-skip "$kernels" --launch-count "$kernels" --metrics "$m" "/tmp/$name" 2>&1 |
    grep -v "^==PROF==" > "$OUT/${name}_ncu.log"
  grep -E "_kernel|lts__|dram__|gpu__|$name:|ERROR" "$OUT/${name}_ncu.log"
done
# Our decode GEMM itself: SourceCounters names the instructions with excess L2 sectors ("L2 Theoretical Sectors
# Global Excessive"), if the doubling shows there.
cd ../..   # the repository root
PYTHONPATH=$PWD MARLIN_FAST_BUILD_DIR=$PWD/.l2_build MAX_JOBS=16 python3 -c "from marlin_fast import _ext; _ext.load()" \
  > "$OUT/build.log" 2>&1 || { echo "build failed: $OUT/build.log"; exit 1; }
PYTHONPATH=$PWD MARLIN_FAST_BUILD_DIR=$PWD/.l2_build timeout 150 ncu --target-processes all \
  -k "regex:^marlin_gemm_kernel$" --launch-skip 3 --launch-count 1 --section SourceCounters --print-details all \
  --metrics "$m" python3 bench/probe_gpu.py one 16 8192 8192 channel 2>&1 | grep -v "^==PROF==" > "$OUT/gemm_source_ncu.log"
grep -iE "lts__|excessive|uncoalesced" "$OUT/gemm_source_ncu.log" | head -20
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
