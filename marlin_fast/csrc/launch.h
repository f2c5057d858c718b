// Host-side entry points of the CUDA kernels.  Plain C++ (no torch headers): bindings.cpp validates the
// tensors (TORCH_CHECK) and calls these with raw pointers on the current stream.
#pragma once

#include <cuda_runtime.h>
#include <cstdint>

namespace marlin_fast {

// ------------------------------------------------------------------------------------------- repack
// gptq_marlin_repack (spec §2.3).  src: GPTQ-packed int32 [K/pf, N] (src_is_checkpoint = false) or an
// e4m3 checkpoint [N, K] viewed as int32 [N, K/4] (src_is_checkpoint = true, num_bits 8 only, §2.2).
// perm: nullptr or int32[K] (act-order: output row-slot k takes source row perm[k]).
// dst: int32 [K/16, N*16/pf].
cudaError_t launch_repack(const uint32_t* src, const int32_t* perm, uint32_t* dst, int size_k, int size_n,
                          int num_bits, bool src_is_checkpoint, int num_sms, cudaStream_t stream);

// --------------------------------------------------------------------------------------------- GEMM
enum ActDtype : int { kActFp16 = 0, kActBf16 = 1 };
enum ScaleScheme : int { kSchemeChannel = 0, kSchemeGroup128 = 1, kSchemeMx32 = 2 };

// Thread-block configurations (tile sizes), chosen by M; see gemm_kernel.cuh.
constexpr int kNumConfigs = 8;
struct ConfigInfo {
  int mb;  // m16 blocks per warp
  int wm;  // warps along M
  int wn;  // warps along N (one 64-column Marlin tile each)
  int wk;  // warps splitting the k-steps of a stage
  int u;   // k16 steps per warp per stage
  int ns;  // pipeline stages
  int tma; // 1: weight tiles arrive by bulk copies (cp.async.bulk + mbarrier, sm_90+), 0: cp.async
  int wgmma;  // 1: the Hopper kernel of gemm_wgmma.cuh (sm_90a): 4*wm warps = 2 warpgroups on block_m() rows of x
              // and wn Marlin tiles (wm and mb only set the block's shape and the split-K partial size there)
  int steady_grouped = 0;  // 1: large tiles run the steady loop in the grouped schemes too on sm_90 (where ptxas
                           // fits it without spilling; configurations 2 and 3 spill 12-36 bytes with it)
  constexpr int threads() const { return 32 * wm * wn * wk; }
  constexpr int block_m() const { return 16 * mb * wm; }
  constexpr int block_n() const { return 64 * wn; }
  constexpr int stage_ksteps() const { return wk * u; }
  // fp32 values one block writes as its split-K partial (owner warps only, fragment order).
  constexpr int partial_floats() const { return wm * wn * 32 * mb * 32; }
};
constexpr ConfigInfo kConfigs[kNumConfigs] = {
    {1, 1, 2, 4, 2, 5, 0, 0},  // 0: M <= 16   block 16 x 128, stage = 128 k
    {2, 1, 2, 4, 2, 4, 0, 0},  // 1: M <= 32   block 32 x 128
    {4, 1, 2, 4, 2, 4, 0, 0},  // 2: M <= 64   block 64 x 128
    {4, 2, 4, 1, 4, 4, 0, 0},  // 3: M > 64    block 128 x 256, stage = 64 k
    {1, 1, 2, 4, 2, 5, 1, 0},  // 4: as 0, bulk copies (sm_90)
    {1, 1, 4, 2, 4, 4, 1, 0},  // 5: M <= 16, block 16 x 256, stage = 128 k x 4 tiles, bulk copies (sm_90)
    {4, 4, 2, 1, 4, 5, 0, 1},  // 6: M >= 256 on Hopper, block 256 x 128, stage = 64 k, wgmma (sm_90a)
    {4, 1, 4, 2, 2, 4, 0, 0, 1},  // 7: M <= 64 on a large weight, block 64 x 256, stage = 64 k (bindings.cpp)
};
constexpr int kWgmmaConfig = 6;
constexpr int kWideConfig = 7;  // configuration 2's rows on a large weight (bindings.cpp dense_config)

// 1 where the extension was built with the wgmma kernel (sm_90a code for this device), else 0.
bool gemm_wgmma_built();

struct GemmArgs {
  const void* a;        // [M, lda] activations (fp16/bf16), row stride lda elements
  int64_t lda;
  const void* b;        // Marlin int32 [K/16, 4N] (MoE: [E, K/16, 4N])
  const void* scales;   // [G, N] 16-bit (channel/group) or e8m0 bytes (MX); MoE: [E, G, N]
  const void* bias;     // nullptr or [N] (MoE: [E, N]), single-permuted, activation dtype
  void* c;              // output [rows, N], activation dtype, contiguous
  int M, N, K, G;
  // plan (filled by plan_gemm)
  int m_blocks, n_blocks, splits, stages_per_split, total_stages;
  float* partials;      // split-K scratch (only if splits > 1)
  int* counters;        // one zeroed int per output tile (only if splits > 1); the kernel re-zeroes it
  // MoE (sorted_ids == nullptr for a dense GEMM)
  const int32_t* sorted_ids;   // [m_blocks * BM]: output row index, or -1 for padding
  const int32_t* expert_ids;   // [m_blocks]
  int top_k;                   // activation row = output row / top_k
  const float* topk_weights;   // nullptr or [rows] (flattened [M, top_k]); multiplies the output
  int64_t b_expert_stride;     // int32 words per expert
  int64_t s_expert_stride;     // scale elements per expert
  int64_t bias_expert_stride;  // bias elements per expert
};

// Blocks of one configuration that fit on an SM (after raising the dynamic shared-memory limit).
int gemm_blocks_per_sm(int act, int scheme, int config);

// Fills the plan fields of args (n_blocks, splits, stages); args.m_blocks must be set (dense: ceil(M / BM)).
void plan_gemm(GemmArgs& args, int config, int num_sms, int blocks_per_sm, int forced_splits);

cudaError_t launch_gemm(int act, int scheme, int config, const GemmArgs& args, cudaStream_t stream);

}  // namespace marlin_fast
