// gptq_marlin_repack (spec §2.3) and the fused checkpoint -> Marlin path, as bandwidth-bound kernels.
//
// Layout card (8-bit, spec §2.3.1): weight (k, n) with kt = k/16, nt = n/64, c8 = n%8, q = (k%8)/2,
// w = (n%64)/16, h = (n%16)/8, e = k%2, g = (k%16)/8 lives at byte
//     16N*kt + 1024*nt + 128*c8 + 32*q + 8*w + 4*h + 2*e + g
// so each 16x64 tile is one 1024-byte block and lane t = 4*c8 + q owns bytes [32t, 32t+32) of it:
// word j = 2w + h holds column 8j + c8 of the tile, rows (2q, 2q+8, 2q+1, 2q+9) in bytes 0..3.
//
// Fast path (8-bit, no perm): one warp per tile.  The tile's source is 4 packed rows x 64 columns of
// int32 words (GPTQ [K/4, N]) or 64 rows x 16 bytes (checkpoint [N, K]); either way word (r, n) holds
// rows 4r..4r+3 of column n.  The warp stages those 256 words in shared memory as [r][n]; word j of
// lane t is then word (q/2, 8j+c8) (rows 2q, 2q+1) and word (q/2+2, 8j+c8) (rows 2q+8, 2q+9) joined
// by one byte permute.  Each store instruction of the warp writes 512 contiguous bytes of the tile
// (lane L: words 4(L%2).. of lane 16s + L/2), not 16 bytes every 32.  A checkpoint source is walked
// k-tile fastest, so that a warp and its neighbours read consecutive pieces of the same [N, K] rows.
// Tiles per warp, blocks per SM, the walk order and the wide stores were chosen by a timed sweep of
// the variants (H100, 8192^2: 1.04x a device copy for GPTQ, 1.15x for the checkpoint;
// bench/results/gpu/sweep-2026-12-05).
//
// General path (4-bit, or act-order perm): the warp gathers the 16 x 64 codes of a tile into shared
// memory (one source row per k, row perm[k] when given) and assembles the words from the codes.
#include "common.cuh"
#include "launch.h"

namespace marlin_fast {
namespace {

constexpr int kRepackWarps = 8;
constexpr int kTilesPerWarp = 2;  // tiles a warp loads before it assembles any: bytes in flight
constexpr int kRepackBlocksPerSm = 16;
constexpr int kRowPad = 72;       // words per staged row: 64 + 8 keeps the two row reads of a lane
                                  // (rows r and r+1) in different banks

template <bool kCheckpoint>
__global__ void __launch_bounds__(kRepackWarps * kWarp)
    repack8_kernel(const uint32_t* __restrict__ src, uint32_t* __restrict__ dst, int size_k, int size_n) {
  __shared__ __align__(16) uint32_t stage[kRepackWarps][kTilesPerWarp][4][kRowPad];
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int n_tiles = size_n / kTileN;
  const long long total = static_cast<long long>(size_k / kTileK) * n_tiles;
  const long long warps_in_grid = static_cast<long long>(gridDim.x) * kRepackWarps;
  const int k_tiles = size_k / kTileK;
  constexpr bool kKFastest = kCheckpoint;  // tile = nt * k_tiles + kt (checkpoint), kt * n_tiles + nt (GPTQ)

  for (long long first = (blockIdx.x * static_cast<long long>(kRepackWarps) + warp) * kTilesPerWarp;
       first < total; first += warps_in_grid * kTilesPerWarp) {
    uint4 v[kTilesPerWarp][2];
#pragma unroll
    for (int p = 0; p < kTilesPerWarp; ++p) {
      const long long tile = first + p;
      if (tile < total) {
        const int kt = static_cast<int>(kKFastest ? tile % k_tiles : tile / n_tiles);
        const int nt = static_cast<int>(kKFastest ? tile / k_tiles : tile % n_tiles);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int vec = lane + kWarp * h;  // 0..63
          const uint32_t* from;
          if (kCheckpoint) {  // column n = vec: words 4kt..4kt+3 of row n of the [N, K/4] view
            from = src + static_cast<long long>(kTileN * nt + vec) * (size_k / 4) + 4 * kt;
          } else {  // packed row r = vec/16, words 4*(vec%16).. of the tile's 64 columns
            from = src + static_cast<long long>(4 * kt + vec / 16) * size_n + kTileN * nt + 4 * (vec % 16);
          }
          v[p][h] = __ldg(reinterpret_cast<const uint4*>(from));
        }
      }
    }
#pragma unroll
    for (int p = 0; p < kTilesPerWarp; ++p) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int vec = lane + kWarp * h;
        if (kCheckpoint) {
          stage[warp][p][0][vec] = v[p][h].x;
          stage[warp][p][1][vec] = v[p][h].y;
          stage[warp][p][2][vec] = v[p][h].z;
          stage[warp][p][3][vec] = v[p][h].w;
        } else {
          *reinterpret_cast<uint4*>(&stage[warp][p][vec / 16][4 * (vec % 16)]) = v[p][h];
        }
      }
    }
    __syncwarp();
#pragma unroll
    for (int p = 0; p < kTilesPerWarp; ++p) {
      const long long tile = first + p;
      if (tile < total) {
        const long long out_tile = kKFastest ? (tile % k_tiles) * n_tiles + tile / k_tiles : tile;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          // this lane's 16 bytes: words 4(lane%2)..+3 of the tile's lane t = 16 half + lane/2 (q = t%4, c8 = t/4)
          const int t = 16 * half + lane / 2, q = t % 4, c8 = t / 4, j0 = 4 * (lane % 2);
          // byte j of the result: j=0 <- A[s], 1 <- B[s], 2 <- A[s+1], 3 <- B[s+1] with s = 2*(q%2)
          const uint32_t select = (q % 2) ? 0x7362u : 0x5140u;
          uint32_t o[4];
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const uint32_t lo_rows = stage[warp][p][q / 2][8 * (j0 + i) + c8];      // rows 4(q/2)..: 2q, 2q+1
            const uint32_t hi_rows = stage[warp][p][q / 2 + 2][8 * (j0 + i) + c8];  // rows 2q+8, 2q+9
            o[i] = __byte_perm(lo_rows, hi_rows, select);
          }
          reinterpret_cast<uint4*>(dst + out_tile * 256)[32 * half + lane] = make_uint4(o[0], o[1], o[2], o[3]);
        }
      }
    }
    __syncwarp();
  }
}

// General path: any num_bits in {4, 8}, optional perm, GPTQ-packed source.
template <int kBits>
__global__ void __launch_bounds__(kRepackWarps * kWarp)
    repack_general_kernel(const uint32_t* __restrict__ src, const int32_t* __restrict__ perm,
                          uint32_t* __restrict__ dst, int size_k, int size_n) {
  constexpr int kPack = 32 / kBits;  // codes per int32 word
  constexpr uint32_t kMask = (1u << kBits) - 1u;
  __shared__ uint8_t codes[kRepackWarps][kTileK][kTileN];
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int n_tiles = size_n / kTileN;
  const long long total = static_cast<long long>(size_k / kTileK) * n_tiles;
  const int q = lane % 4, c8 = lane / 4;
  for (long long tile = blockIdx.x * static_cast<long long>(kRepackWarps) + warp; tile < total;
       tile += static_cast<long long>(gridDim.x) * kRepackWarps) {
    const int kt = static_cast<int>(tile / n_tiles), nt = static_cast<int>(tile % n_tiles);
#pragma unroll 4
    for (int kk = 0; kk < kTileK; ++kk) {
      const int k = kTileK * kt + kk;
      const int src_k = perm ? perm[k] : k;
      const uint32_t* row = src + static_cast<long long>(src_k / kPack) * size_n + kTileN * nt;
      const int shift = kBits * (src_k % kPack);
      codes[warp][kk][lane] = static_cast<uint8_t>((__ldg(row + lane) >> shift) & kMask);
      codes[warp][kk][lane + kWarp] = static_cast<uint8_t>((__ldg(row + lane + kWarp) >> shift) & kMask);
    }
    __syncwarp();
    auto code = [&](int k, int n) { return static_cast<uint32_t>(codes[warp][k][n]); };
    if (kBits == 8) {
      // word j: column 8j + c8, rows (2q, 2q+8, 2q+1, 2q+9) in bytes 0..3 (§2.3.1)
      uint32_t o[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int n = 8 * j + c8;
        o[j] = code(2 * q, n) | code(2 * q + 8, n) << 8 | code(2 * q + 1, n) << 16 | code(2 * q + 9, n) << 24;
      }
      uint4* out = reinterpret_cast<uint4*>(dst + tile * 256 + 8 * lane);
      out[0] = make_uint4(o[0], o[1], o[2], o[3]);
      out[1] = make_uint4(o[4], o[5], o[6], o[7]);
    } else {
      // word w: nibble 4e + 2h + g holds (k = 2q + e + 8g, n = 16w + 8h + c8) (§2.3.1, 4-bit)
      uint32_t o[4];
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        uint32_t word = 0;
#pragma unroll
        for (int nib = 0; nib < 8; ++nib) {
          const int e = nib / 4, h = (nib / 2) % 2, g = nib % 2;
          word |= code(2 * q + e + 8 * g, 16 * w + 8 * h + c8) << (4 * nib);
        }
        o[w] = word;
      }
      *reinterpret_cast<uint4*>(dst + tile * 128 + 4 * lane) = make_uint4(o[0], o[1], o[2], o[3]);
    }
    __syncwarp();
  }
}

}  // namespace

cudaError_t launch_repack(const uint32_t* src, const int32_t* perm, uint32_t* dst, int size_k, int size_n,
                          int num_bits, bool src_is_checkpoint, int num_sms, cudaStream_t stream) {
  const long long tiles = static_cast<long long>(size_k / kTileK) * (size_n / kTileN);
  if (tiles == 0) return cudaSuccess;
  const int threads = kRepackWarps * kWarp;
  if (num_bits == 8 && perm == nullptr) {
    // Enough warps to keep every SM busy (kRepackBlocksPerSm blocks of 8 warps per SM), no more than the work.
    const long long warp_items = (tiles + kTilesPerWarp - 1) / kTilesPerWarp;
    long long blocks = (warp_items + kRepackWarps - 1) / kRepackWarps;
    const long long most = static_cast<long long>(kRepackBlocksPerSm) * num_sms;
    blocks = blocks < most ? blocks : most;
    if (src_is_checkpoint) {
      repack8_kernel<true><<<static_cast<int>(blocks), threads, 0, stream>>>(src, dst, size_k, size_n);
    } else {
      repack8_kernel<false><<<static_cast<int>(blocks), threads, 0, stream>>>(src, dst, size_k, size_n);
    }
    return cudaGetLastError();
  }
  if (src_is_checkpoint) return cudaErrorInvalidValue;  // checked by the binding
  long long blocks = (tiles + kRepackWarps - 1) / kRepackWarps;
  blocks = blocks < 16LL * num_sms ? blocks : 16LL * num_sms;
  if (num_bits == 8) {
    repack_general_kernel<8><<<static_cast<int>(blocks), threads, 0, stream>>>(src, perm, dst, size_k, size_n);
  } else {
    repack_general_kernel<4><<<static_cast<int>(blocks), threads, 0, stream>>>(src, perm, dst, size_k, size_n);
  }
  return cudaGetLastError();
}

}  // namespace marlin_fast
