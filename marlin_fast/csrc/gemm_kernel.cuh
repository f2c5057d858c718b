// The Marlin FP8 / MXFP8 W8A16 GEMM: y[M, N] = x[M, K] . W[K, N] (+ bias), spec §3.
//
// Work split.  A block owns BM rows x BN = 64*WN columns and a contiguous range of k "stages"
// (KC = WK*U k16-steps each; several blocks split K: split-K).  Warp (wm, wn, wk) owns rows
// [16*MB*wm, +16*MB) and the 64-column Marlin tile wn, and the k16-steps [wk*U, +U) of every stage.
//
// Data path per stage (cp.async, NS-deep pipeline):
//   A   [BM rows, 16*KC]  -> shared, 16-byte chunks XOR-swizzled by row, read with ldmatrix.x4
//   B   KC x WN Marlin tile blocks, copied verbatim (1024 bytes each, 16-byte chunk c stored at
//       c ^ ((c >> 3) & 1) so the two loads of a warp hit distinct banks); lane t then loads its own
//       32 bytes of the tile (chunks 2t, 2t+1) into registers: the B fragment straight from the
//       Marlin layout (§2.14), no un-permute anywhere.  Configs with `tma` move each k16 row of the
//       block's tiles with one cp.async.bulk onto an mbarrier instead (sm_90; not faster, kept as an
//       option), and read the unswizzled tile with a lane-order swap to avoid the bank conflict.
//   scales (group 128 / MX 32) rows of the stage -> shared; lane t reads its 8 values at 8*c8.
// Dequant (§3.1) by bit moves only; group scales multiply the fragment in the activation dtype
// (§3.2 B, C); channel-wise fused scales multiply the fp32 accumulator before any cross-block
// reduction (§3.2 A).  Warps that split a stage's k-steps are summed in shared memory in wk order;
// blocks that split K write fp32 partials and the last block to arrive sums them in split order, so
// the result is deterministic for a given (M, N, K, config, splits) and uses no atomics on data.
// Epilogue: out = RT(acc), then RT(out + bias) (half2 add), then RT(out * RT(topk_w)) for MoE (§5).
#pragma once

#include "common.cuh"
#include "launch.h"

#include <type_traits>

namespace marlin_fast {

template <int SCHEME>
struct SchemeInfo;
template <>
struct SchemeInfo<kSchemeChannel> {
  static constexpr int kGroup = 0;
  static constexpr int kScaleBytes = 2;
};
template <>
struct SchemeInfo<kSchemeGroup128> {
  static constexpr int kGroup = 128;
  static constexpr int kScaleBytes = 2;
};
template <>
struct SchemeInfo<kSchemeMx32> {
  static constexpr int kGroup = 32;
  static constexpr int kScaleBytes = 1;
};

// A stage covers whole scale groups, or lies inside one (group 0 = channel-wise: no groups).
constexpr bool stage_fits_groups(int stage_k, int group) {
  return group == 0 || stage_k % group == 0 || group % stage_k == 0;
}

template <int CONFIG, int SCHEME>
struct Tiling {
  static constexpr ConfigInfo kInfo = kConfigs[CONFIG];
  static constexpr int MB = kInfo.mb, WM = kInfo.wm, WN = kInfo.wn, WK = kInfo.wk, U = kInfo.u, NS = kInfo.ns;
  static constexpr int kThreads = kInfo.threads();
  // 16-row tiles: keep two blocks per SM (register cap 128), so one block's barrier never idles the SM.
  static constexpr int kMinBlocks = kInfo.mb * kInfo.wm == 1 ? 2 : 1;
  static constexpr bool TMA = kInfo.tma != 0;
  static constexpr int BM = kInfo.block_m();
  static constexpr int BN = kInfo.block_n();
  static constexpr int KC = kInfo.stage_ksteps();
  static constexpr int kGroup = SchemeInfo<SCHEME>::kGroup;
  static constexpr int kScaleBytes = SchemeInfo<SCHEME>::kScaleBytes;
  // scale rows a stage needs: one per group inside the stage, or the one group the stage lies in
  static constexpr int SR = SCHEME == kSchemeChannel ? 0 : (KC * kTileK >= kGroup ? KC * kTileK / kGroup : 1);
  static constexpr int A_BYTES = BM * KC * kTileK * 2;
  static constexpr int B_BYTES = KC * WN * 1024;
  static constexpr int S_BYTES = (SR * BN * kScaleBytes + 15) / 16 * 16;
  static constexpr int STAGE_BYTES = A_BYTES + B_BYTES + S_BYTES;
  static constexpr int RED_BYTES = (WK - 1) * WM * WN * kWarp * MB * 32 * 4;
  static constexpr int SMEM_BYTES = NS * STAGE_BYTES > RED_BYTES ? NS * STAGE_BYTES : RED_BYTES;
  static constexpr int A_CHUNKS = 2 * KC;  // 16-byte chunks per A row per stage
  static constexpr int A_ITERS = (BM * A_CHUNKS + kThreads - 1) / kThreads;
  static constexpr int B_VECS = KC * WN * 64;
  static_assert(B_VECS % kThreads == 0, "B copy must divide evenly among threads");
  static_assert(A_CHUNKS >= 8 && (A_CHUNKS & (A_CHUNKS - 1)) == 0, "A swizzle needs >= 8 chunks, power of 2");
  static_assert(stage_fits_groups(KC * kTileK, kGroup), "stages must align with scale groups");
};

// bench/sass_report.py counts the instructions of a steady-state stage in the SASS.  It compiles with
// MARLIN_SASS_STEADY_STATE=1, which turns into traps the paths a steady-state stage does not take: the tail loop
// where a steady loop exists, the tested copies, and the tested compute where a whole-stage compute exists, so
// that the loop of mma it measures holds the steady state alone.  Never defined in a build that runs.
#ifndef MARLIN_SASS_STEADY_STATE
#define MARLIN_SASS_STEADY_STATE 0
#endif
constexpr bool kSteadyStateOnly = MARLIN_SASS_STEADY_STATE != 0;

__device__ inline int swizzle_b(int chunk) { return chunk ^ ((chunk >> 3) & 1); }

// A single-permuted [N] vector (channel scales, bias; §2.4) seen from lane q of a warp's 64-column
// tile: the 16-bit pair of fragment sub-tile jj (columns 8jj + 2q, +1) is 32-bit word pair_word(jj)
// counted from element 8q, i.e. element 8q + 2(jj % 4) + 32(jj >= 4).
__device__ inline int pair_word(int jj) { return (jj < 4 ? 0 : 16) + jj % 4; }

// What a block owns (plan_gemm): blockIdx.x = (nblk * splits + split) * m_blocks + mblk, i.e. row block mblk, column
// block nblk, and stages [st0, st0 + nst) of the K range (split `split` of `splits`); MoE: its rows' expert.
struct BlockWork {
  int mblk, split, nblk, st0, nst, expert;
  __device__ explicit BlockWork(const GemmArgs& p) {
    const int bid = blockIdx.x;
    mblk = bid % p.m_blocks;
    split = (bid / p.m_blocks) % p.splits;
    nblk = bid / p.m_blocks / p.splits;
    st0 = split * p.stages_per_split;
    nst = min(p.total_stages, st0 + p.stages_per_split) - st0;
    expert = p.expert_ids ? p.expert_ids[mblk] : 0;
  }
  // The expert's packed weight, in 16-byte vectors.
  __device__ const int4* weight(const GemmArgs& p) const {
    return reinterpret_cast<const int4*>(p.b) + expert * (p.b_expert_stride / 4);
  }
  // The expert's scale table, in bytes (SchemeInfo<SCHEME>::kScaleBytes a scale).
  template <int SCHEME>
  __device__ const unsigned char* scale_table(const GemmArgs& p) const {
    return reinterpret_cast<const unsigned char*>(p.scales) +
           expert * p.s_expert_stride * SchemeInfo<SCHEME>::kScaleBytes;
  }
  // The expert's single-permuted bias vector [N] (p.bias must be set).
  template <typename T>
  __device__ const T* bias(const GemmArgs& p) const {
    return reinterpret_cast<const T*>(p.bias) + expert * p.bias_expert_stride;
  }
};

template <typename T, int SCHEME, int CONFIG>
__global__ void __launch_bounds__(Tiling<CONFIG, SCHEME>::kThreads, Tiling<CONFIG, SCHEME>::kMinBlocks)
    marlin_gemm_kernel(const GemmArgs p) {
  using Tl = Tiling<CONFIG, SCHEME>;
  using T2 = typename Act<T>::T2;
  constexpr int MB = Tl::MB, WN = Tl::WN, WK = Tl::WK, U = Tl::U, NS = Tl::NS;
  constexpr int BM = Tl::BM, BN = Tl::BN, KC = Tl::KC, SR = Tl::SR, GROUP = Tl::kGroup;
  constexpr int ES = Tl::kScaleBytes;
  extern __shared__ int4 smem_vec[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(smem_vec);
  __shared__ int s_is_last;
  __shared__ __align__(8) uint64_t s_full[Tl::TMA ? NS : 1];  // bulk-copy completion, one per stage slot

  const int tid = threadIdx.x, lane = tid % kWarp, warp = tid / kWarp;
  const int wk = warp % WK, wn = (warp / WK) % WN, wm = warp / (WK * WN);
  const int wmn = warp / WK;  // = wm * WN + wn
  const int q = lane % 4, c8 = lane / 4;

  const BlockWork work(p);
  const int mblk = work.mblk, split = work.split, nblk = work.nblk, st0 = work.st0, nst = work.nst;
  const int ksteps = p.K / kTileK;

  const int4* bq = work.weight(p);
  // Opaque, so that a copy's address is one IMAD.WIDE from it (the compiler otherwise re-adds the expert's
  // offset to every 32-bit offset of the large tiles' copies in 64 bits: four more instructions each).
  asm volatile("" : "+l"(bq));
  const unsigned char* sc = work.scale_table<SCHEME>(p);
  const int n_blk0 = nblk * BN;
  const int n_tiles = p.N / kTileN;
  const bool n_ok = n_blk0 / kTileN + wn < n_tiles;  // the last block may overhang N (N % 64 == 0 only)

  // ---- what this thread copies at every stage ----
  // A stage wholly inside K, of a block wholly inside N (every stage but a K tail, in every block but an N
  // tail), copies with no bounds test: one block-uniform test a stage (s < whole_copy).  Small tiles (the
  // decode configurations, 16-32 rows) keep a running global pointer and the shared offset of each copy, so
  // a whole stage's copy is one cp.async and one 64-bit add each; the large tiles keep a 32-bit offset per A
  // copy and rebuild the rest, so that their registers go to the accumulators (they spilled).
  constexpr bool kKeepAddresses = MB * Tl::WM <= 2;
  // The steady loop (below) is a second copy of the pipeline, and a whole stage's compute without per-k-step
  // tests a second copy of the compute.  The small tiles get both.  The large tiles, at 255 registers, get what
  // ptxas fits without spilling: on sm_90 the whole-stage compute, and the steady loop for channel-wise scales
  // (the grouped schemes hold scales in registers too: only where the configuration says ptxas fits it,
  // steady_grouped); on sm_80 neither (4-28 bytes of spills otherwise).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr bool kLargeTileFastPaths = true;
#else
  constexpr bool kLargeTileFastPaths = false;
#endif
  constexpr bool kSteadyLoop =
      kKeepAddresses || (kLargeTileFastPaths && (SCHEME == kSchemeChannel || Tl::kInfo.steady_grouped));
  constexpr bool kWholeCompute = kKeepAddresses || kLargeTileFastPaths;
  constexpr int A_ITERS = Tl::A_ITERS;
  constexpr int A_COPIES = BM * Tl::A_CHUNKS;                   // 16-byte A chunks a stage
  constexpr bool kAllCopyA = A_COPIES % Tl::kThreads == 0;      // every thread copies A_ITERS chunks
  constexpr int B_ITERS = Tl::B_VECS / Tl::kThreads;
  uint32_t smem_base = smem_addr(smem);
  asm volatile("" : "+r"(smem_base));  // kept, not rebuilt from SR_CgaCtaId at every stage
  const bool n_full = n_blk0 / kTileN + WN <= n_tiles;          // no tile of this block overhangs N
  // A: where copy i reads at stage 0 (row 0 for a zero-filled row, which reads nothing: src-size 0) and whether
  // it has a source row (bit i of a_valid).  The small tiles keep a pointer and the swizzled shared offset; the
  // large ones a 32-bit offset in 16-byte vectors from p.a (check_gemm keeps A under 2^32 vectors), one register.
  uint32_t a_valid = 0;
  const T* a_src[kKeepAddresses ? A_ITERS : 1];
  uint32_t a_dst[kKeepAddresses ? A_ITERS : 1];
  uint32_t a_vec[kKeepAddresses ? 1 : A_ITERS];
#pragma unroll
  for (int i = 0; i < A_ITERS; ++i) {
    const int v = tid + i * Tl::kThreads;
    const int r = v / Tl::A_CHUNKS, c = v % Tl::A_CHUNKS;
    int row = -1;
    if (kAllCopyA || v < A_COPIES) {
      if (p.sorted_ids) {
        const int sid = p.sorted_ids[mblk * BM + r];
        row = sid >= 0 ? sid / p.top_k : -1;
      } else {
        row = mblk * BM + r < p.M ? mblk * BM + r : -1;
      }
    }
    a_valid |= (row >= 0 ? 1u : 0u) << i;
    const long long at_k0 = (row >= 0 ? row * p.lda : 0) + c * 8;  // elements from p.a at k = 0
    if constexpr (kKeepAddresses) {
      a_src[i] = reinterpret_cast<const T*>(p.a) + at_k0 + static_cast<long long>(st0) * KC * kTileK;
      a_dst[i] = (r * Tl::A_CHUNKS + (c ^ (r & 7))) * 16;
    } else {
      a_vec[i] = static_cast<uint32_t>(at_k0 / 8);  // lda is a multiple of 8 (check_gemm)
    }
  }
#define B_ROW(i) ((tid + (i) * Tl::kThreads) / (WN * 64))  // k16 row of the stage
  const int4* b_src[kKeepAddresses ? B_ITERS : 1];              // vector c of tile (kl, j) at stage s
  uint32_t b_dst[kKeepAddresses ? B_ITERS : 1];                 // its shared-window address in slot 0
  bool b_ok[kKeepAddresses ? B_ITERS : 1];                      // tile j lies inside N
#pragma unroll
  for (int i = 0; i < (kKeepAddresses ? B_ITERS : 0); ++i) {
    const int v = tid + i * Tl::kThreads;
    const int kl = v / (WN * 64), j = (v / 64) % WN, c = v % 64;
    b_ok[i] = n_blk0 / 64 + j < n_tiles;
    b_src[i] = bq + (static_cast<long long>(st0) * KC + kl) * p.N + (n_blk0 / 64 + j) * 64 + c;
    b_dst[i] = smem_base + Tl::A_BYTES + ((kl * WN + j) * 64 + swizzle_b(c)) * 16;
    // Opaque, so that a copy's address is this register plus the slot's constant. ptxas 13.0 otherwise splits it
    // into [lane offset + uniform slot base] and then encodes the cache-policy operand of the streaming copy in an
    // odd uniform register: an illegal instruction on the GPU (configurations 0 and 1 faulted on the H100,
    // bench/results/gpu/fault-2026-12-05; bench/sass_report.py --check refuses such SASS).
    asm volatile("" : "+r"(b_dst[i]));
  }
  const long long b_stage_step = static_cast<long long>(KC) * p.N;  // int4 vectors from one stage to the next
  // Stages [0, whole_k) of this block lie wholly inside K (one test a stage, not one a copy or a k-step); the
  // copies need no test in stages [0, whole_copy): wholly inside K, of a block wholly inside N.
  const int whole_k = max(0, min(nst, ksteps / KC - st0));
  const int whole_copy = n_full ? whole_k : 0;
  // Scale rows (grouped schemes): thread tid < SR * kRowVecs copies 16-byte vector s_col of scale row s_row of
  // each stage, byte s_off0 + g * s_row_bytes of the table for group g. 32-bit: an expert's scale table is at most
  // 1/32 of its weight's bytes (e8m0 per 32), which check_gemm keeps under 2^36. Nothing 64-bit is kept for it
  // (a kept pointer made MX configuration 3 spill 8 bytes on sm_90a).
  constexpr int kRowVecs = BN * ES / 16;
  static_assert(SR * kRowVecs <= Tl::kThreads, "one 16-byte scale copy a thread at most");
  [[maybe_unused]] const bool s_copier = tid < SR * kRowVecs;
  [[maybe_unused]] const int s_row = tid / kRowVecs, s_col = tid % kRowVecs;
  [[maybe_unused]] const uint32_t s_off0 = static_cast<uint32_t>(n_blk0 * ES + s_col * 16);
  [[maybe_unused]] const uint32_t s_row_bytes = static_cast<uint32_t>(p.N) * ES;
  const uint64_t policy = evict_first_policy();
  if constexpr (Tl::TMA) {
    if (tid == 0) {
      for (int i = 0; i < NS; ++i) mbar_init(&s_full[i], 1);
    }
    __syncthreads();
  }

  // The copies of a stage (first k16 step k0) into a slot; WHOLE (a std::bool_constant): no bounds tests.
  auto copy_stage = [&](int k0, int slot, auto whole) {
    constexpr bool WHOLE = decltype(whole)::value;
    const uint32_t slot_base = smem_base + slot * Tl::STAGE_BYTES;
#pragma unroll
    for (int i = 0; i < A_ITERS; ++i) {
      const int v = tid + i * Tl::kThreads;
      if (kAllCopyA || v < A_COPIES) {
        const int c = v % Tl::A_CHUNKS;
        const bool ok = ((a_valid >> i) & 1u) && (WHOLE || 2 * k0 + c < 2 * ksteps);
        // the source address is in bounds in a whole stage even for a zero-filled row (row 0)
        if constexpr (kKeepAddresses) {
          cp_async16(slot_base + a_dst[i], WHOLE || ok ? a_src[i] : p.a, ok);
        } else {
          const int r = v / Tl::A_CHUNKS;
          const int4* src = reinterpret_cast<const int4*>(p.a) + (a_vec[i] + 2u * k0);
          cp_async16(slot_base + (r * Tl::A_CHUNKS + (c ^ (r & 7))) * 16, WHOLE || ok ? src : p.a, ok);
        }
      }
    }
    if constexpr (Tl::TMA) {
      // One bulk copy per k16 row: the block's WN tiles of that row are contiguous (1 KB each).
      if (tid == 0) {
        const int rows = WHOLE ? KC : min(KC, ksteps - k0);
        const int tiles = WHOLE ? WN : min(WN, n_tiles - n_blk0 / 64);
        int4* bs = reinterpret_cast<int4*>(smem + slot * Tl::STAGE_BYTES + Tl::A_BYTES);
        fence_proxy_async();  // the slot's previous contents were read (generic proxy) before the barrier
        mbar_expect_tx(&s_full[slot], static_cast<uint32_t>(rows * tiles * 1024));
        for (int kl = 0; kl < rows; ++kl) {
          bulk_copy_g2s(bs + kl * WN * 64, bq + static_cast<long long>(k0 + kl) * p.N + n_blk0, tiles * 1024,
                        &s_full[slot], policy);
        }
      }
    } else {
      const int rows_left = ksteps - k0;  // k16 rows of this stage inside K
#pragma unroll
      for (int i = 0; i < B_ITERS; ++i) {
        if constexpr (kKeepAddresses) {
          if (WHOLE || (b_ok[i] && B_ROW(i) < rows_left))
            cp_async16_stream(b_dst[i] + slot * Tl::STAGE_BYTES, b_src[i], policy);
        } else {
          // 32-bit offset in 16-byte vectors: check_gemm keeps one expert's weight under 2^32 of them
          const int v = tid + i * Tl::kThreads;
          const int kl = v / (WN * 64), j = (v / 64) % WN, c = v % 64;
          if (WHOLE || (kl < rows_left && n_blk0 / 64 + j < n_tiles)) {
            const uint32_t vec = static_cast<uint32_t>(k0 + kl) * static_cast<uint32_t>(p.N) +
                                 static_cast<uint32_t>((n_blk0 / 64 + j) * 64 + c);
            cp_async16_stream(slot_base + Tl::A_BYTES + ((kl * WN + j) * 64 + swizzle_b(c)) * 16, bq + vec, policy);
          }
        }
      }
    }
    if constexpr (SCHEME != kSchemeChannel) {
      if (s_copier) {
        const int g = k0 * kTileK / GROUP + s_row;  // a whole stage's groups lie inside G, its columns inside N
        const bool ok = WHOLE || (g < p.G && n_blk0 + s_col * 16 / ES < p.N);
        cp_async16(slot_base + Tl::A_BYTES + Tl::B_BYTES + tid * 16,
                   WHOLE || ok ? sc + (s_off0 + static_cast<uint32_t>(g) * s_row_bytes) : sc, ok);
      }
    }
  };
  // Stages are loaded in order, once each: the running pointers move one stage after every load.
  // STEADY (a std::bool_constant): the caller knows the stage is whole (s < whole_copy).
  auto load_stage = [&](int s, int slot, auto steady) {
    const int k0 = (st0 + s) * KC;  // first k16 step of the stage
    if (decltype(steady)::value || s < whole_copy) {
      copy_stage(k0, slot, std::true_type{});
    } else if constexpr (kSteadyStateOnly) {
      __trap();  // bench/sass_report.py: a steady-state stage copies a whole stage
    } else {
      copy_stage(k0, slot, std::false_type{});
    }
    if constexpr (kKeepAddresses) {
#pragma unroll
      for (int i = 0; i < A_ITERS; ++i) a_src[i] += KC * kTileK;
#pragma unroll
      for (int i = 0; i < B_ITERS; ++i) b_src[i] += b_stage_step;
    }
  };

  float acc[MB][8][4];
#pragma unroll
  for (int mb = 0; mb < MB; ++mb)
#pragma unroll
    for (int jj = 0; jj < 8; ++jj)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mb][jj][e] = 0.f;

  // The lane's fragments in slot 0 (a slot adds STAGE_BYTES, a k-step of B WN KB): its two 16-byte chunks of B
  // tile (wk*U, wn), stored at swizzle_b(c) by cp.async (read odd chunk first on lanes 4-7 of each 8-lane phase
  // when the bulk copies stored them verbatim, so two loads of a phase hit distinct banks); its ldmatrix row of
  // A per (row block, k-step), kept by the small tiles and rebuilt by the large ones.
  const int odd_first = Tl::TMA ? (lane >> 2) & 1 : 0;
  const uint32_t b_tile = smem_base + Tl::A_BYTES + (wk * U * WN + wn) * 1024;
  uint32_t b_first = b_tile + (Tl::TMA ? 2 * lane + odd_first : swizzle_b(2 * lane)) * 16;
  uint32_t b_second = b_tile + (Tl::TMA ? 2 * lane + 1 - odd_first : swizzle_b(2 * lane + 1)) * 16;
  // Opaque to the compiler, so that the small tiles keep the two addresses (ptxas would rebuild them from the
  // lane at every stage: seven instructions); the large tiles need the registers for the accumulators.
  if constexpr (kKeepAddresses) asm volatile("" : "+r"(b_first), "+r"(b_second));
  // The lane's 8 scales of a stage's scale row (group 128, MX: row kl / 2 adds kl / 2 * BN bytes).
  [[maybe_unused]] const uint32_t s_lane = smem_base + Tl::A_BYTES + Tl::B_BYTES + (wn * 64 + 8 * c8) * ES;
  auto a_frag_addr = [&](int mb, int i) -> uint32_t {
    const int row = (wm * MB + mb) * 16 + (lane % 16);
    const int chunk = 2 * (wk * U + i) + lane / 16;
    return smem_base + (row * Tl::A_CHUNKS + (chunk ^ (row & 7))) * 16;
  };
  uint32_t a_frag[kKeepAddresses ? MB : 1][kKeepAddresses ? U : 1];
#pragma unroll
  for (int mb = 0; mb < (kKeepAddresses ? MB : 0); ++mb)
#pragma unroll
    for (int i = 0; i < U; ++i) a_frag[mb][i] = a_frag_addr(mb, i);

  // STEADY: the caller knows the stage is whole and the block wholly inside N (s < whole_copy).
  auto compute_stage = [&](int slot, int s, auto steady) {
    constexpr bool STEADY = decltype(steady)::value;
    if (!STEADY && !n_ok) return;  // this warp's 64 columns lie beyond N: nothing of them was copied
    const int k0 = (st0 + s) * KC;
    const uint32_t slot_off = slot * Tl::STAGE_BYTES;
    // Group-128 stages lie inside one group (SR == 1): read and pair up the 8 scales once per stage.
    [[maybe_unused]] uint32_t group_scale[8];
    if constexpr (SCHEME == kSchemeGroup128) {
      static_assert(SR == 1, "a stage spans one 128-group");
      const int4 sv = lds128(s_lane + slot_off);
      const uint32_t sw[4] = {(uint32_t)sv.x, (uint32_t)sv.y, (uint32_t)sv.z, (uint32_t)sv.w};
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) group_scale[jj] = group_scale_pair(sw[jj / 2], jj % 2);
    }
    // MX: one 32-group per two k16 steps (U is even, so pairs never straddle).  8 e8m0 bytes at 8*c8: word j/2,
    // byte (j%2) + 2h scales sub-tile jj = 2j + h (§2.7, §2.14).
    [[maybe_unused]] uint32_t mx_scale[8];
    auto k_step = [&](int i) {
      if constexpr (SCHEME == kSchemeMx32) {
        static_assert(U % 2 == 0 && GROUP == 2 * kTileK, "MX scale rows cover k16-step pairs");
        if (i % 2 == 0) {
          const uint2 raw = lds64(s_lane + slot_off + (wk * U + i) / 2 * BN);
#pragma unroll
          for (int jj = 0; jj < 8; ++jj) {
            const int j = jj / 2, h = jj % 2;
            mx_scale[jj] = mx_scale_pair(j < 2 ? raw.x : raw.y, (j % 2) + 2 * h);
          }
        }
      }
      // B fragment: the lane's own 32 bytes of tile (kl, wn); word jj = n8 sub-tile jj = 2j + h.
      const uint32_t b_at = slot_off + i * WN * 1024;
      const int4 r0 = lds128(b_first + b_at), r1 = lds128(b_second + b_at);
      const int4 w0 = odd_first ? r1 : r0, w1 = odd_first ? r0 : r1;
      const uint32_t words[8] = {(uint32_t)w0.x, (uint32_t)w0.y, (uint32_t)w0.z, (uint32_t)w0.w,
                                 (uint32_t)w1.x, (uint32_t)w1.y, (uint32_t)w1.z, (uint32_t)w1.w};
      uint32_t bf[8][2];
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) dequant_fp8x4<T>(words[jj], bf[jj][0], bf[jj][1]);
      if constexpr (SCHEME == kSchemeGroup128) {
        // fused scale jj (column 16j + 8h + c8) times sub-tile jj: RT(u * S_g) (§3.2 B).
#pragma unroll
        for (int jj = 0; jj < 8; ++jj)
#pragma unroll
          for (int r = 0; r < 2; ++r) bf[jj][r] = scale_pair_group<T>(bf[jj][r], group_scale[jj]);
      } else if constexpr (SCHEME == kSchemeMx32) {
#pragma unroll
        for (int jj = 0; jj < 8; ++jj)
#pragma unroll
          for (int r = 0; r < 2; ++r) bf[jj][r] = scale_pair_mx<T>(bf[jj][r], mx_scale[jj]);
      }
#pragma unroll
      for (int mb = 0; mb < MB; ++mb) {
        uint32_t af[4];
        uint32_t a_at;
        if constexpr (kKeepAddresses) {
          a_at = a_frag[mb][i];
        } else {
          a_at = a_frag_addr(mb, i);
        }
        ldmatrix_x4(af, a_at + slot_off);
#pragma unroll
        for (int jj = 0; jj < 8; ++jj) mma_16816<T>(acc[mb][jj], af, bf[jj][0], bf[jj][1]);
      }
    };
    if (STEADY || (kWholeCompute && s < whole_k)) {  // a whole stage: no test per k-step
#pragma unroll
      for (int i = 0; i < U; ++i) k_step(i);
    } else if constexpr (kSteadyStateOnly && kWholeCompute) {
      __trap();  // bench/sass_report.py: a steady-state stage computes a whole stage (where that path exists)
    } else {
#pragma unroll
      for (int i = 0; i < U; ++i)
        if (k0 + wk * U + i < ksteps) k_step(i);
    }
  };

  // ---- main pipeline ----
  // Unrolled over the NS slots, so that every shared-memory offset of a stage is a constant.  The steady loop
  // runs whole trips of NS stages that each compute a whole stage and load one NS - 1 ahead, all inside K and
  // N: no test at all but the loop's.  The tail loop takes the rest (the last NS - 1 stages, a K or N tail),
  // testing each stage; it starts on a multiple of NS, so stage s is in slot s % NS in both.
#pragma unroll
  for (int s = 0; s < NS - 1; ++s) {
    if (s < nst) load_stage(s, s, std::false_type{});
    cp_async_commit();
  }
  uint32_t parity = 0;  // (s / NS) & 1: completions seen by the slots' barriers
  auto pipeline_stage = [&](int s, int slot, auto steady) {
    cp_async_wait<NS - 2>();
    if constexpr (Tl::TMA) mbar_wait(&s_full[slot], parity);
    __syncthreads();
    if (decltype(steady)::value || s + NS - 1 < nst) load_stage(s + NS - 1, (slot + NS - 1) % NS, steady);
    cp_async_commit();
    compute_stage(slot, s, steady);
  };
  const int steady_end = kSteadyLoop ? whole_copy - (NS - 1) : 0;  // stages before it load a whole stage NS - 1 ahead
  int s0 = 0;
  for (; s0 + NS <= steady_end; s0 += NS) {
#pragma unroll
    for (int slot = 0; slot < NS; ++slot) pipeline_stage(s0 + slot, slot, std::true_type{});
    parity ^= 1;
  }
  if constexpr (kSteadyStateOnly && kSteadyLoop) {
    if (s0 < nst) __trap();  // bench/sass_report.py: the steady loop alone
  } else {
    for (; s0 < nst; s0 += NS) {
#pragma unroll
      for (int slot = 0; slot < NS; ++slot) {
        if (s0 + slot >= nst) break;
        pipeline_stage(s0 + slot, slot, std::false_type{});
      }
      parity ^= 1;
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  // ---- sum the WK warps of one output tile, in wk order ----
  if constexpr (WK > 1) {
    float4* red = reinterpret_cast<float4*>(smem);
    if (wk > 0) {
#pragma unroll
      for (int mb = 0; mb < MB; ++mb)
#pragma unroll
        for (int jj = 0; jj < 8; ++jj)
          red[(((wk - 1) * Tl::WM * WN + wmn) * MB * 8 + mb * 8 + jj) * kWarp + lane] =
              make_float4(acc[mb][jj][0], acc[mb][jj][1], acc[mb][jj][2], acc[mb][jj][3]);
    }
    __syncthreads();
    if (wk == 0) {
#pragma unroll 1
      for (int w = 1; w < WK; ++w) {
#pragma unroll
        for (int mb = 0; mb < MB; ++mb)
#pragma unroll
          for (int jj = 0; jj < 8; ++jj) {
            const float4 v = red[(((w - 1) * Tl::WM * WN + wmn) * MB * 8 + mb * 8 + jj) * kWarp + lane];
            acc[mb][jj][0] += v.x;
            acc[mb][jj][1] += v.y;
            acc[mb][jj][2] += v.z;
            acc[mb][jj][3] += v.w;
          }
      }
    }
  }
  const bool owner = wk == 0;
  const int n_warp0 = n_blk0 + wn * 64;

  // Channel-wise: acc *= float(F), F = S * 2^beta, before any cross-block reduction (§3.2 A): in place
  // when the block owns its whole k range, in the partial store when it does not.  Each pair of F is
  // read where it is used: eight words held beside the accumulators made the 64-row tiles spill.
  auto channel_factor = [&](int jj) -> float2 {   // the address is rebuilt at each use: two registers
    const T* lane_scales = reinterpret_cast<const T*>(sc) + n_warp0 + 8 * q;
    const T2 f = Act<T>::from_bits(__ldg(reinterpret_cast<const uint32_t*>(lane_scales) + pair_word(jj)));
    return make_float2(Act<T>::to_float(f.x), Act<T>::to_float(f.y));
  };
  constexpr bool kChannel = SCHEME == kSchemeChannel;

  // ---- split-K: the last block of a tile sums all partials in split order ----
  if (p.splits > 1) {
    const int tile = nblk * p.m_blocks + mblk;
    constexpr int kWarpsMN = Tl::WM * WN;
    float4* part = reinterpret_cast<float4*>(p.partials);
    const long long tile_base = static_cast<long long>(tile) * p.splits;
    if (owner) {
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) {
        const float2 f = kChannel && n_ok ? channel_factor(jj) : make_float2(1.f, 1.f);
#pragma unroll
        for (int mb = 0; mb < MB; ++mb)
          part[((tile_base + split) * kWarpsMN + wmn) * MB * 8 * kWarp + (mb * 8 + jj) * kWarp + lane] =
              make_float4(acc[mb][jj][0] * f.x, acc[mb][jj][1] * f.y, acc[mb][jj][2] * f.x, acc[mb][jj][3] * f.y);
      }
    }
    if (!last_split_to_arrive(&p.counters[tile], p.splits, &s_is_last)) return;
    if (owner) {
      // Sum in split order: split 0's partial replaces the accumulators (every block wrote its own), the
      // others add to them.  Peeled so that the old accumulators die at the first load.
      const float4* tile_part = part + (tile_base * kWarpsMN + wmn) * MB * 8 * kWarp + lane;
#pragma unroll
      for (int mb = 0; mb < MB; ++mb)
#pragma unroll
        for (int jj = 0; jj < 8; ++jj) {
          const float4 v = __ldcg(tile_part + (mb * 8 + jj) * kWarp);
          acc[mb][jj][0] = v.x;
          acc[mb][jj][1] = v.y;
          acc[mb][jj][2] = v.z;
          acc[mb][jj][3] = v.w;
        }
#pragma unroll 1
      for (int s = 1; s < p.splits; ++s) {
        const float4* split_part = tile_part + static_cast<long long>(s) * kWarpsMN * MB * 8 * kWarp;
#pragma unroll
        for (int mb = 0; mb < MB; ++mb) {
#pragma unroll
          for (int jj = 0; jj < 8; ++jj) {
            const float4 v = __ldcg(split_part + (mb * 8 + jj) * kWarp);
            acc[mb][jj][0] += v.x;
            acc[mb][jj][1] += v.y;
            acc[mb][jj][2] += v.z;
            acc[mb][jj][3] += v.w;
          }
        }
      }
    }
    if (tid == 0) p.counters[tile] = 0;  // ready for the next launch on this stream
  } else if (kChannel && owner && n_ok) {
#pragma unroll
    for (int jj = 0; jj < 8; ++jj) {
      const float2 f = channel_factor(jj);
#pragma unroll
      for (int mb = 0; mb < MB; ++mb) {
        acc[mb][jj][0] *= f.x;
        acc[mb][jj][1] *= f.y;
        acc[mb][jj][2] *= f.x;
        acc[mb][jj][3] *= f.y;
      }
    }
  }
  if (!owner || !n_ok) return;

  // ---- epilogue ----
  // Bias pairs (single-permuted like channel scales) are read where they are added, L1 hits after the
  // first row, not held in eight registers (spills).
  const uint32_t* bias_pairs =
      p.bias ? reinterpret_cast<const uint32_t*>(work.bias<T>(p) + n_warp0 + 8 * q) : nullptr;
  T* out = reinterpret_cast<T*>(p.c);
#pragma unroll
  for (int mb = 0; mb < MB; ++mb) {
#pragma unroll
    for (int half_row = 0; half_row < 2; ++half_row) {
      const int r_local = (wm * MB + mb) * 16 + c8 + 8 * half_row;
      int row;
      bool ok;
      if (p.sorted_ids) {
        row = p.sorted_ids[mblk * BM + r_local];
        ok = row >= 0;
      } else {
        row = mblk * BM + r_local;
        ok = row < p.M;
      }
      if (!ok) continue;
      T2 topk = Act<T>::from_float2(1.f, 1.f);
      if (p.topk_weights) {
        const float w = p.topk_weights[row];
        topk = Act<T>::from_float2(w, w);  // RT(topk_w), §5
      }
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) {
        T2 v = Act<T>::from_float2(acc[mb][jj][2 * half_row], acc[mb][jj][2 * half_row + 1]);
        if (bias_pairs) v = __hadd2(v, Act<T>::from_bits(__ldg(bias_pairs + pair_word(jj))));
        if (p.topk_weights) v = __hmul2(v, topk);
        *reinterpret_cast<T2*>(out + static_cast<long long>(row) * p.N + n_warp0 + 8 * jj + 2 * q) = v;
      }
    }
  }
}

#undef B_ROW

// Launch helpers of a GEMM kernel (this one or gemm_wgmma.cuh's), instantiated per (activation dtype, scheme) in
// gemm_*.cu: blocks of it that fit on an SM, and a launch over the plan's m_blocks x n_blocks x splits blocks.
template <typename Kernel>
int kernel_blocks_per_sm(Kernel kernel, int threads, int smem_bytes) {
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
  int blocks = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, smem_bytes) != cudaSuccess) return 0;
  return blocks;
}

template <typename Kernel>
cudaError_t launch_kernel(Kernel kernel, int threads, int smem_bytes, const GemmArgs& p, cudaStream_t stream) {
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
  if (err != cudaSuccess) return err;
  const long long blocks = static_cast<long long>(p.m_blocks) * p.n_blocks * p.splits;
  if (blocks == 0) return cudaSuccess;
  kernel<<<static_cast<unsigned>(blocks), threads, smem_bytes, stream>>>(p);
  return cudaGetLastError();
}

template <typename T, int SCHEME, int CONFIG>
int blocks_per_sm_impl() {
  using Tl = Tiling<CONFIG, SCHEME>;
  return kernel_blocks_per_sm(&marlin_gemm_kernel<T, SCHEME, CONFIG>, Tl::kThreads, Tl::SMEM_BYTES);
}

template <typename T, int SCHEME, int CONFIG>
cudaError_t launch_impl(const GemmArgs& p, cudaStream_t stream) {
  using Tl = Tiling<CONFIG, SCHEME>;
  return launch_kernel(&marlin_gemm_kernel<T, SCHEME, CONFIG>, Tl::kThreads, Tl::SMEM_BYTES, p, stream);
}

}  // namespace marlin_fast
