// Picks the instantiation for (activation dtype, scale scheme, config) and plans the split-K.
#include "common.cuh"
#include "launch.h"

namespace marlin_fast {

#define MARLIN_DECLARE_GEMM(NAME)                  \
  int NAME##_blocks_per_sm(int config);            \
  cudaError_t NAME##_launch(int config, const GemmArgs& p, cudaStream_t stream);
MARLIN_DECLARE_GEMM(gemm_f16_channel)
MARLIN_DECLARE_GEMM(gemm_f16_group)
MARLIN_DECLARE_GEMM(gemm_bf16_channel)
MARLIN_DECLARE_GEMM(gemm_bf16_group)
MARLIN_DECLARE_GEMM(gemm_bf16_mx)

// What this build's device code is: 1 in sm_90a code (the wgmma kernel is real), 0 elsewhere (it is a trap).
__device__ int g_wgmma_built = MARLIN_HAS_WGMMA;

bool gemm_wgmma_built() {
  int built = 0;
  return cudaMemcpyFromSymbol(&built, g_wgmma_built, sizeof built) == cudaSuccess && built == 1;
}

int gemm_blocks_per_sm(int act, int scheme, int config) {
  if (act == kActFp16) {
    if (scheme == kSchemeChannel) return gemm_f16_channel_blocks_per_sm(config);
    if (scheme == kSchemeGroup128) return gemm_f16_group_blocks_per_sm(config);
    return 0;  // MXFP8 has no fp16 kernel (spec §2.10)
  }
  if (scheme == kSchemeChannel) return gemm_bf16_channel_blocks_per_sm(config);
  if (scheme == kSchemeGroup128) return gemm_bf16_group_blocks_per_sm(config);
  return gemm_bf16_mx_blocks_per_sm(config);
}

cudaError_t launch_gemm(int act, int scheme, int config, const GemmArgs& p, cudaStream_t stream) {
  if (act == kActFp16) {
    if (scheme == kSchemeChannel) return gemm_f16_channel_launch(config, p, stream);
    if (scheme == kSchemeGroup128) return gemm_f16_group_launch(config, p, stream);
    return cudaErrorInvalidValue;
  }
  if (scheme == kSchemeChannel) return gemm_bf16_channel_launch(config, p, stream);
  if (scheme == kSchemeGroup128) return gemm_bf16_group_launch(config, p, stream);
  return gemm_bf16_mx_launch(config, p, stream);
}

// Split-K choice.  Measured on an H100 (bench/probe_gpu.py sweep): a kernel streams weights at a
// per-SM rate, so the time is the work of the busiest SM.  With blocks spread evenly, an SM runs
// ceil(blocks / SMs) blocks of `per` stages; each wave of co-resident blocks also pays a pipeline
// fill (~4 stages), and a split adds a partial-sum pass.  Cost, in stages:
//     ceil(blocks / SMs) * per + 4 * ceil(ceil(blocks / SMs) / resident) + (splits > 1)
// Ties go to fewer splits (less partial traffic).
void plan_gemm(GemmArgs& p, int config, int num_sms, int blocks_per_sm, int forced_splits) {
  const ConfigInfo& c = kConfigs[config];
  p.n_blocks = (p.N + c.block_n() - 1) / c.block_n();
  const int ksteps = p.K / 16;
  p.total_stages = (ksteps + c.stage_ksteps() - 1) / c.stage_ksteps();
  const long long tiles = static_cast<long long>(p.m_blocks) * p.n_blocks;
  const long long sms = num_sms > 0 ? num_sms : 1;
  const long long resident = blocks_per_sm > 0 ? blocks_per_sm : 1;
  constexpr long long kFillStages = 4;
  int best_splits = 1, best_per = p.total_stages;
  if (forced_splits > 0) {
    const int s = forced_splits < p.total_stages ? forced_splits : p.total_stages;
    best_per = (p.total_stages + s - 1) / s;
    best_splits = (p.total_stages + best_per - 1) / best_per;
  } else {
    long long best_cost = -1;
    const int max_splits = p.total_stages < 64 ? p.total_stages : 64;
    for (int s = 1; s <= max_splits; ++s) {
      const int per = (p.total_stages + s - 1) / s;
      const int s_eff = (p.total_stages + per - 1) / per;
      if (s_eff != s) continue;  // the same split as a smaller s
      const long long per_sm = (tiles * s_eff + sms - 1) / sms;
      const long long cost = per_sm * per + kFillStages * ((per_sm + resident - 1) / resident) + (s_eff > 1 ? 1 : 0);
      if (best_cost < 0 || cost < best_cost) {
        best_cost = cost;
        best_splits = s_eff;
        best_per = per;
      }
    }
  }
  p.splits = best_splits;
  p.stages_per_split = best_per;
}

}  // namespace marlin_fast
