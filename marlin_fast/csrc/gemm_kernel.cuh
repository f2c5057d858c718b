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

__device__ inline int swizzle_b(int chunk) { return chunk ^ ((chunk >> 3) & 1); }

// A single-permuted [N] vector (channel scales, bias; §2.4) seen from lane q of a warp's 64-column
// tile: the 16-bit pair of fragment sub-tile jj (columns 8jj + 2q, +1) is 32-bit word pair_word(jj)
// counted from element 8q, i.e. element 8q + 2(jj % 4) + 32(jj >= 4).
__device__ inline int pair_word(int jj) { return (jj < 4 ? 0 : 16) + jj % 4; }

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

  int bid = blockIdx.x;
  const int mblk = bid % p.m_blocks;
  bid /= p.m_blocks;
  const int split = bid % p.splits;
  const int nblk = bid / p.splits;
  const int st0 = split * p.stages_per_split;
  const int st1 = min(p.total_stages, st0 + p.stages_per_split);
  const int nst = st1 - st0;
  const int ksteps = p.K / kTileK;

  const int expert = p.expert_ids ? p.expert_ids[mblk] : 0;
  const int4* bq = reinterpret_cast<const int4*>(p.b) + expert * (p.b_expert_stride / 4);
  const unsigned char* sc = reinterpret_cast<const unsigned char*>(p.scales) + expert * p.s_expert_stride * ES;
  const int n_blk0 = nblk * BN;
  const int n_tiles = p.N / kTileN;
  const bool n_ok = n_blk0 / kTileN + wn < n_tiles;  // the last block may overhang N (N % 64 == 0 only)

  // ---- A rows this thread copies (fixed for all stages): the source row, or -1 for a zero-filled row ----
  // Only the row is kept (one register per copy); the chunk and its swizzled slot are recomputed from
  // tid at each stage, so the large tiles keep their registers for the accumulators.
  int a_row[Tl::A_ITERS];
#pragma unroll
  for (int i = 0; i < Tl::A_ITERS; ++i) {
    const int v = tid + i * Tl::kThreads;
    const int r = v / Tl::A_CHUNKS;
    int row = -1;
    if (v < BM * Tl::A_CHUNKS) {
      if (p.sorted_ids) {
        const int sid = p.sorted_ids[mblk * BM + r];
        row = sid >= 0 ? sid / p.top_k : -1;
      } else {
        row = mblk * BM + r < p.M ? mblk * BM + r : -1;
      }
    }
    a_row[i] = row;
  }
  // ---- B vectors this thread copies (cp.async path): fixed tile/chunk, moving by KC rows a stage ----
  constexpr int B_ITERS = Tl::B_VECS / Tl::kThreads;
  constexpr bool kKeepBAddresses = MB * Tl::WM <= 2;   // small accumulators leave registers to spare
#define B_ROW(i) ((tid + (i) * Tl::kThreads) / (WN * 64))  // k16 row of the stage
  const int4* b_src[kKeepBAddresses ? B_ITERS : 1];
  int b_dst[kKeepBAddresses ? B_ITERS : 1];
  bool b_ok[kKeepBAddresses ? B_ITERS : 1];
#pragma unroll
  for (int i = 0; i < (kKeepBAddresses ? B_ITERS : 0); ++i) {
    const int v = tid + i * Tl::kThreads;
    const int kl = v / (WN * 64), j = (v / 64) % WN, c = v % 64;
    b_ok[i] = n_blk0 / 64 + j < n_tiles;
    b_src[i] = bq + (static_cast<long long>(st0) * KC + kl) * p.N + (n_blk0 / 64 + j) * 64 + c;
    b_dst[i] = (kl * WN + j) * 64 + swizzle_b(c);
  }
  const uint64_t policy = evict_first_policy();
  if constexpr (Tl::TMA) {
    if (tid == 0) {
      for (int i = 0; i < NS; ++i) mbar_init(&s_full[i], 1);
    }
    __syncthreads();
  }

  auto load_stage = [&](int s, int slot) {
    unsigned char* base = smem + slot * Tl::STAGE_BYTES;
    const int k0 = (st0 + s) * KC;  // first k16 step of the stage
    int4* as = reinterpret_cast<int4*>(base);
#pragma unroll
    for (int i = 0; i < Tl::A_ITERS; ++i) {
      const int v = tid + i * Tl::kThreads;
      if (v < BM * Tl::A_CHUNKS) {
        const int r = v / Tl::A_CHUNKS, c = v % Tl::A_CHUNKS;
        const bool ok = a_row[i] >= 0 && (2 * k0 + c < 2 * ksteps);
        const T* src = reinterpret_cast<const T*>(p.a) + a_row[i] * p.lda + k0 * kTileK + c * 8;
        cp_async16(as + r * Tl::A_CHUNKS + (c ^ (r & 7)), ok ? src : p.a, ok);
      }
    }
    int4* bs = reinterpret_cast<int4*>(base + Tl::A_BYTES);
    if constexpr (Tl::TMA) {
      // One bulk copy per k16 row: the block's WN tiles of that row are contiguous (1 KB each).
      if (tid == 0) {
        const int rows = min(KC, ksteps - k0);
        const int tiles = min(WN, n_tiles - n_blk0 / 64);
        fence_proxy_async();  // the slot's previous contents were read (generic proxy) before the barrier
        mbar_expect_tx(&s_full[slot], static_cast<uint32_t>(rows * tiles * 1024));
        for (int kl = 0; kl < rows; ++kl) {
          bulk_copy_g2s(bs + kl * WN * 64, bq + static_cast<long long>(k0 + kl) * p.N + n_blk0, tiles * 1024,
                        &s_full[slot], policy);
        }
      }
    } else {
      const int rows_left = ksteps - k0;               // k16 rows of this stage inside K
      const long long stage_offset = static_cast<long long>(s) * KC * p.N;
#pragma unroll
      for (int i = 0; i < B_ITERS; ++i) {
        if constexpr (kKeepBAddresses) {
          if (b_ok[i] && B_ROW(i) < rows_left) cp_async16_stream(bs + b_dst[i], b_src[i] + stage_offset, policy);
        } else {  // large tiles: registers go to the accumulators, recompute the addresses
          const int v = tid + i * Tl::kThreads;
          const int kl = v / (WN * 64), j = (v / 64) % WN, c = v % 64;
          if (kl < rows_left && n_blk0 / 64 + j < n_tiles) {
            cp_async16_stream(bs + (kl * WN + j) * 64 + swizzle_b(c),
                              bq + static_cast<long long>(k0 + kl) * p.N + (n_blk0 / 64 + j) * 64 + c, policy);
          }
        }
      }
    }
    if constexpr (SCHEME != kSchemeChannel) {
      constexpr int kRowVecs = BN * ES / 16;
      int4* ss = reinterpret_cast<int4*>(base + Tl::A_BYTES + Tl::B_BYTES);
      for (int v = tid; v < SR * kRowVecs; v += Tl::kThreads) {
        const int r = v / kRowVecs, c = v % kRowVecs;
        const int g = k0 * kTileK / GROUP + r;
        const bool ok = g < p.G && n_blk0 + c * 16 / ES < p.N;
        cp_async16(ss + v, ok ? sc + (static_cast<long long>(g) * p.N + n_blk0) * ES + c * 16 : sc, ok);
      }
    }
  };

  float acc[MB][8][4];
#pragma unroll
  for (int mb = 0; mb < MB; ++mb)
#pragma unroll
    for (int jj = 0; jj < 8; ++jj)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mb][jj][e] = 0.f;

  auto compute_stage = [&](int slot, int k0) {
    const unsigned char* base = smem + slot * Tl::STAGE_BYTES;
    const int4* as = reinterpret_cast<const int4*>(base);
    const int4* bs = reinterpret_cast<const int4*>(base + Tl::A_BYTES);
    const unsigned char* ss = base + Tl::A_BYTES + Tl::B_BYTES;
    // Group-128 stages lie inside one group (SR == 1): read and pair up the 8 scales once per stage.
    uint32_t group_scale[8];
    if constexpr (SCHEME == kSchemeGroup128) {
      static_assert(SR == 1, "a stage spans one 128-group");
      const int4 sv = *reinterpret_cast<const int4*>(ss + (wn * 64 + 8 * c8) * ES);
      const uint32_t sw[4] = {(uint32_t)sv.x, (uint32_t)sv.y, (uint32_t)sv.z, (uint32_t)sv.w};
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) group_scale[jj] = __byte_perm(sw[jj / 2], 0, (jj % 2) ? 0x3232 : 0x1010);
    }
    uint32_t mx_scale[8];  // MX: one 32-group per two k16 steps (U is even, so pairs never straddle)
#pragma unroll
    for (int i = 0; i < U; ++i) {
      const int kl = wk * U + i;
      if constexpr (SCHEME == kSchemeMx32) {
        static_assert(U % 2 == 0 && GROUP == 2 * kTileK, "MX scale rows cover k16-step pairs");
        if (i % 2 == 0) {
          // 8 e8m0 bytes at 8*c8: word j/2, byte (j%2) + 2h scales sub-tile (j, h) (§2.7, §2.14).
          // e8m0 byte b -> bf16 bits b << 7 = 2^(b-127); b = 0 -> +0, b = 255 -> +inf (§3.1).
          const uint2 sv = *reinterpret_cast<const uint2*>(ss + (kl / 2) * BN + wn * 64 + 8 * c8);
#pragma unroll
          for (int jj = 0; jj < 8; ++jj) {
            const int j = jj / 2, h = jj % 2;
            const uint32_t e = ((j < 2 ? sv.x : sv.y) >> (8 * ((j % 2) + 2 * h))) & 0xFFu;
            mx_scale[jj] = (e << 7) | (e << 23);
          }
        }
      }
      if (n_ok && k0 + kl < ksteps) {
        // B fragment: the lane's own 32 bytes of tile (kl, wn); word jj = n8 sub-tile jj = 2j + h.
        const int4* bt = bs + (kl * WN + wn) * 64;
        int4 w0, w1;
        if constexpr (Tl::TMA) {
          // Verbatim tile: lanes 4-7 of each 8-lane phase read their odd chunk first, so the two
          // 16-byte loads of a phase hit 8 distinct bank groups.
          const int odd_first = (lane >> 2) & 1;
          const int4 r0 = bt[2 * lane + odd_first];
          const int4 r1 = bt[2 * lane + 1 - odd_first];
          w0 = odd_first ? r1 : r0;
          w1 = odd_first ? r0 : r1;
        } else {
          w0 = bt[swizzle_b(2 * lane)];
          w1 = bt[swizzle_b(2 * lane + 1)];
        }
        const uint32_t words[8] = {(uint32_t)w0.x, (uint32_t)w0.y, (uint32_t)w0.z, (uint32_t)w0.w,
                                   (uint32_t)w1.x, (uint32_t)w1.y, (uint32_t)w1.z, (uint32_t)w1.w};
        uint32_t bf[8][2];
#pragma unroll
        for (int jj = 0; jj < 8; ++jj) dequant_fp8x4<T>(words[jj], bf[jj][0], bf[jj][1]);
        if constexpr (SCHEME == kSchemeGroup128) {
          // fused scale jj (column 16j + 8h + c8) times sub-tile jj: RT(u * S_g) (§3.2 B).
#pragma unroll
          for (int jj = 0; jj < 8; ++jj) {
            const T2 s2 = Act<T>::from_bits(group_scale[jj]);
#pragma unroll
            for (int r = 0; r < 2; ++r) bf[jj][r] = bits_of(__hmul2(Act<T>::from_bits(bf[jj][r]), s2));
          }
        } else if constexpr (SCHEME == kSchemeMx32) {
          // RT(RT(u * 2^-120 * 2^120) * mu) (§3.2 C): the first multiply is exact.
          const T2 two_pow_120 = Act<T>::from_bits(0x7B807B80u);  // bf16 2^120: exponent 247
#pragma unroll
          for (int jj = 0; jj < 8; ++jj) {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
              const T2 unbiased = __hmul2(Act<T>::from_bits(bf[jj][r]), two_pow_120);
              bf[jj][r] = bits_of(__hmul2(unbiased, Act<T>::from_bits(mx_scale[jj])));
            }
          }
        }
#pragma unroll
        for (int mb = 0; mb < MB; ++mb) {
          uint32_t af[4];
          const int row = (wm * MB + mb) * 16 + (lane % 16);
          const int chunk = 2 * kl + lane / 16;
          ldmatrix_x4(af, as + row * Tl::A_CHUNKS + (chunk ^ (row & 7)));
#pragma unroll
          for (int jj = 0; jj < 8; ++jj) mma_16816<T>(acc[mb][jj], af, bf[jj][0], bf[jj][1]);
        }
      }
    }
  };

  // ---- main pipeline ----
#pragma unroll
  for (int s = 0; s < NS - 1; ++s) {
    if (s < nst) load_stage(s, s);
    cp_async_commit();
  }
  int slot = 0, next_slot = NS - 1;  // slot = s % NS, next_slot = (s + NS - 1) % NS, without divisions
  uint32_t parity = 0;               // (s / NS) & 1: completions seen by this slot's barrier
  for (int s = 0; s < nst; ++s) {
    cp_async_wait<NS - 2>();
    if constexpr (Tl::TMA) mbar_wait(&s_full[slot], parity);
    __syncthreads();
    if (s + NS - 1 < nst) load_stage(s + NS - 1, next_slot);
    cp_async_commit();
    compute_stage(slot, (st0 + s) * KC);
    next_slot = slot;
    if (++slot == NS) {
      slot = 0;
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
    __threadfence();
    __syncthreads();
    if (tid == 0) s_is_last = atomicAdd(&p.counters[tile], 1) == p.splits - 1;
    __syncthreads();
    if (!s_is_last) return;
    __threadfence();
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
      p.bias ? reinterpret_cast<const uint32_t*>(reinterpret_cast<const T*>(p.bias) + expert * p.bias_expert_stride +
                                                 n_warp0 + 8 * q)
             : nullptr;
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

// Launch helpers, instantiated per (activation dtype, scheme) in gemm_*.cu.
template <typename T, int SCHEME, int CONFIG>
inline auto gemm_kernel_ptr() {
  return &marlin_gemm_kernel<T, SCHEME, CONFIG>;
}

template <typename T, int SCHEME, int CONFIG>
int blocks_per_sm_impl() {
  using Tl = Tiling<CONFIG, SCHEME>;
  auto kernel = gemm_kernel_ptr<T, SCHEME, CONFIG>();
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tl::SMEM_BYTES);
  int blocks = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, Tl::kThreads, Tl::SMEM_BYTES) != cudaSuccess)
    return 0;
  return blocks;
}

template <typename T, int SCHEME, int CONFIG>
cudaError_t launch_impl(const GemmArgs& p, cudaStream_t stream) {
  using Tl = Tiling<CONFIG, SCHEME>;
  auto kernel = gemm_kernel_ptr<T, SCHEME, CONFIG>();
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tl::SMEM_BYTES);
  if (err != cudaSuccess) return err;
  const long long blocks = static_cast<long long>(p.m_blocks) * p.n_blocks * p.splits;
  if (blocks == 0) return cudaSuccess;
  kernel<<<static_cast<unsigned>(blocks), Tl::kThreads, Tl::SMEM_BYTES, stream>>>(p);
  return cudaGetLastError();
}

#define MARLIN_DEFINE_GEMM(NAME, T, SCHEME)                                         \
  int NAME##_blocks_per_sm(int config) {                                            \
    switch (config) {                                                               \
      case 0: return blocks_per_sm_impl<T, SCHEME, 0>();                            \
      case 1: return blocks_per_sm_impl<T, SCHEME, 1>();                            \
      case 2: return blocks_per_sm_impl<T, SCHEME, 2>();                            \
      case 3: return blocks_per_sm_impl<T, SCHEME, 3>();                            \
      case 4: return blocks_per_sm_impl<T, SCHEME, 4>();                            \
      case 5: return blocks_per_sm_impl<T, SCHEME, 5>();                            \
    }                                                                               \
    return 0;                                                                       \
  }                                                                                 \
  cudaError_t NAME##_launch(int config, const GemmArgs& p, cudaStream_t stream) {   \
    switch (config) {                                                               \
      case 0: return launch_impl<T, SCHEME, 0>(p, stream);                          \
      case 1: return launch_impl<T, SCHEME, 1>(p, stream);                          \
      case 2: return launch_impl<T, SCHEME, 2>(p, stream);                          \
      case 3: return launch_impl<T, SCHEME, 3>(p, stream);                          \
      case 4: return launch_impl<T, SCHEME, 4>(p, stream);                          \
      case 5: return launch_impl<T, SCHEME, 5>(p, stream);                          \
    }                                                                               \
    return cudaErrorInvalidValue;                                                   \
  }

}  // namespace marlin_fast
