// Small device helpers shared by the repack and GEMM kernels: async copies, ldmatrix, mma.sync and the
// FP8 -> fp16/bf16 bit trick of spec §3.1. Plain CUDA (no torch headers), so the .cu files compile fast.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

namespace marlin_fast {

// One Marlin tile is 16 (k) x 64 (n) weights: 1024 bytes for 8-bit codes (spec §2.3.1).
constexpr int kTileK = 16;
constexpr int kTileN = 64;
constexpr int kWarp = 32;

// ---------------------------------------------------------------------------------------------------
// Activation dtype traits.  kDequantShift moves the 7 magnitude bits of an e4m3 byte sitting in the
// high byte of a 16-bit lane onto the low exponent bits + top mantissa bits of the wide type (§3.1):
// fp16 (5 exponent bits) needs >> 1, bf16 (8 exponent bits) needs >> 4.  The produced value is
// dec(b) * 2^-beta exactly, beta = 8 (fp16) / 120 (bf16) (§2.6).
template <typename T>
struct Act;

template <>
struct Act<half> {
  using T2 = half2;
  static constexpr int kDequantShift = 1;
  __device__ static inline T2 from_bits(uint32_t u) { return *reinterpret_cast<T2*>(&u); }
  __device__ static inline T2 from_float2(float a, float b) { return __floats2half2_rn(a, b); }
  __device__ static inline float to_float(half v) { return __half2float(v); }
};

template <>
struct Act<__nv_bfloat16> {
  using T2 = __nv_bfloat162;
  static constexpr int kDequantShift = 4;
  __device__ static inline T2 from_bits(uint32_t u) { return *reinterpret_cast<T2*>(&u); }
  __device__ static inline T2 from_float2(float a, float b) { return __floats2bfloat162_rn(a, b); }
  __device__ static inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
};

template <typename T2>
__device__ inline uint32_t bits_of(T2 v) {
  return *reinterpret_cast<uint32_t*>(&v);
}

// §3.1: one 32-bit word of four e4m3 bytes (B0, B1, B2, B3) -> two 16-bit pairs.  For each 16-bit half
// keep its high byte: sign stays at bit 15, the 7 magnitude bits shift right by kDequantShift.
// first = (B0, B2) (register 0 of the mma B fragment: rows 2q, 2q+1), second = (B1, B3) (register 1:
// rows 2q+8, 2q+9), because the repack stores rows (2q, 2q+8, 2q+1, 2q+9) in bytes 0..3 (§2.3.2).
template <typename T>
__device__ inline void dequant_fp8x4(uint32_t w, uint32_t& first, uint32_t& second) {
  constexpr uint32_t kSign = 0x80008000u;
  constexpr uint32_t kMag = 0x7F007F00u;
  constexpr int s = Act<T>::kDequantShift;
  second = (w & kSign) | ((w & kMag) >> s);
  const uint32_t lo = w << 8;  // bring B0, B2 into the high byte of each half
  first = (lo & kSign) | ((lo & kMag) >> s);
}

// §3.2 B: a dequantised pair times its column's fused group scale, paired (both halves the scale): RT(u * S_g).
template <typename T>
__device__ inline uint32_t scale_pair_group(uint32_t pair, uint32_t scale2) {
  return bits_of(__hmul2(Act<T>::from_bits(pair), Act<T>::from_bits(scale2)));
}

// §3.2 C: RT(RT(u * 2^-120 * 2^120) * mu) for a dequantised pair (bf16); the first multiply is exact.
template <typename T>
__device__ inline uint32_t scale_pair_mx(uint32_t pair, uint32_t mu2) {
  const typename Act<T>::T2 two_pow_120 = Act<T>::from_bits(0x7B807B80u);  // bf16 2^120: exponent 247
  return bits_of(__hmul2(__hmul2(Act<T>::from_bits(pair), two_pow_120), Act<T>::from_bits(mu2)));
}

// Group scales (§2.4): 16-bit scale `half` (0: low, 1: high) of a 32-bit word, in both halves of a pair.
__device__ inline uint32_t group_scale_pair(uint32_t word, int half) {
  return __byte_perm(word, 0, half ? 0x3232 : 0x1010);
}

// MX scales (§2.7): e8m0 byte `byte` of a 32-bit word as a bf16 pair: b -> bits b << 7 = 2^(b-127) (b = 0 -> +0,
// b = 255 -> +inf, §3.1), in both halves: b * 0x00800080 = (b << 7) | (b << 23).
__device__ inline uint32_t mx_scale_pair(uint32_t word, int byte) {
  return __byte_perm(word, 0, 0x4440 | byte) * 0x00800080u;
}

// The single permutation of an [N] vector (channel scales, bias; §2.4, §2.5) inside a 64-column tile: column n
// (0..63) sits at element single_perm_pos(n). Column 8jj + 2q + e of mma sub-tile jj, lane q, is element
// 8q + 2(jj % 4) + 32(jj >= 4) + e: e.g. columns 0, 1, 2, 8, 32 sit at 0, 1, 8, 2, 32.
__host__ __device__ constexpr int single_perm_pos(int n) {
  return 8 * ((n & 7) >> 1) + 2 * ((n >> 3) & 3) + (n & 32) + (n & 1);
}

// ---------------------------------------------------------------------------------------------------
// Async copies (sm_80+).  src_bytes = 0 zero-fills the 16 destination bytes without reading global memory.
// The destination is a shared-window address (smem_addr): kernels convert their shared base once, not per copy.
__device__ inline void cp_async16(uint32_t dst, const void* gmem_src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem_src), "r"(src_bytes));
}

// Streaming weights are read exactly once: tell L2 to evict them first so activations stay resident.
__device__ inline void cp_async16_stream(uint32_t dst, const void* gmem_src, uint64_t policy) {
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem_src),
               "l"(policy));
}

__device__ inline uint64_t evict_first_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// ---------------------------------------------------------------------------------------------------
// Bulk copies completing on an mbarrier (sm_90+; the copy engine moves a whole contiguous run of
// weight tiles per instruction).  Compiled to traps below sm_90, where no config uses them.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define MARLIN_HAS_BULK 1
#else
#define MARLIN_HAS_BULK 0
#endif
// Warpgroup MMAs (wgmma) exist only in sm_90a code (the "a" target: TORCH_CUDA_ARCH_LIST=9.0a, see _ext.py).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MARLIN_HAS_WGMMA 1
#else
#define MARLIN_HAS_WGMMA 0
#endif

__device__ inline uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ inline void mbar_init(uint64_t* bar, int count) {
#if MARLIN_HAS_BULK
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count));
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::);
#else
  __trap();
#endif
}

__device__ inline void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
#if MARLIN_HAS_BULK
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
#else
  __trap();
#endif
}

__device__ inline void mbar_wait(uint64_t* bar, uint32_t parity) {
#if MARLIN_HAS_BULK
  asm volatile(
      "{\n .reg .pred P1;\n LAB_WAIT:\n"
      " mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
      " @P1 bra DONE;\n bra LAB_WAIT;\n DONE:\n }\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
#else
  __trap();
#endif
}

// Order this thread's earlier generic-proxy accesses of shared memory before later bulk-copy writes.
__device__ inline void fence_proxy_async() {
#if MARLIN_HAS_BULK
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

__device__ inline void bulk_copy_g2s(void* smem_dst, const void* gmem_src, uint32_t bytes, uint64_t* bar,
                                     uint64_t policy) {
#if MARLIN_HAS_BULK
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;\n"
      ::"r"(smem_addr(smem_dst)), "l"(gmem_src), "r"(bytes), "r"(smem_addr(bar)), "l"(policy)
      : "memory");
#else
  __trap();
#endif
}

// 16 bytes from a shared-window address.  volatile: stays between the barriers around it, like the copies.
__device__ inline int4 lds128(uint32_t addr) {
  int4 v;
  asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
  return v;
}

__device__ inline uint32_t lds32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr));
  return v;
}

__device__ inline uint2 lds64(uint32_t addr) {
  uint2 v;
  asm volatile("ld.shared.v2.u32 {%0,%1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(addr));
  return v;
}

// ldmatrix x4: the four 8x8 b16 matrices of an m16k16 A fragment (a0..a3 in mma order); addr: the lane's row,
// a shared-window address.
__device__ inline void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// D = A * B + D, m16n8k16, fp32 accumulators (spec §3.3).
template <typename T>
__device__ inline void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

template <>
__device__ inline void mma_16816<half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ inline void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                 uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---------------------------------------------------------------------------------------------------
// Split-K: each block of an output tile has written its partial; is it the last of the tile's `splits` blocks to
// arrive (then it sums them, in split order)?  Block-wide: every thread calls it, after its partial stores.  The
// fences order this block's partial before its arrival, and the others' partials before the last block's reads;
// *flag is the block's shared word for thread 0's answer.  The last block re-zeroes *counter when done.
__device__ inline bool last_split_to_arrive(int* counter, int splits, int* flag) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) *flag = atomicAdd(counter, 1) == splits - 1;
  __syncthreads();
  if (!*flag) return false;
  __threadfence();
  return true;
}

}  // namespace marlin_fast
