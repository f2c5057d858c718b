// Our decode GEMM's weight stream without its compute (issue 12): does the access pattern alone make L2 see twice
// the sectors? 128 blocks of 256 threads (8192^2 fp8 weight, 64 column blocks x 2 K splits); a stage is 8 k16 rows
// of 2 KiB (the block's two 1 KiB Marlin tiles), rows 128 KiB apart; 4 copies a thread a stage into a 5-slot ring,
// as configuration 0 does. ncu: lts__t_sectors_srcunit_tex_op_read.sum should be 2 Mi (64 MiB), and 2.5 Mi with
// the activations (ACT: 16 rows x 8192 bf16, 4 KiB a stage a block, XOR-swizzled by row as ours are). Variants: no
// barrier a stage, contiguous stages, the activations, and 3 or 2 slots (fewer bytes in flight: if the doubling
// is L1 replaying requests it cannot track, it shrinks there).
// Build: nvcc -O3 -arch=sm_90a -o l2_pattern l2_pattern.cu
#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>

constexpr int kWeightBytes = 16384, kStageBytes = kWeightBytes + 4096;

// SLOTS: the ring's depth; SLOTS - 1 stages are in flight (80 KiB a block with activations at 5, as ours at decode).
template <bool SYNC, bool SPREAD, bool ACT, int SLOTS = 5>
__global__ void __launch_bounds__(256) stream_kernel(const char* w, const char* x, int n, int stages, int* sink) {
  extern __shared__ int4 ring[];
  const uint32_t dst0 = static_cast<uint32_t>(__cvta_generic_to_shared(ring));
  const int nblk = blockIdx.x / 2, split = blockIdx.x % 2, tid = threadIdx.x;
  // SPREAD: rows n*16 bytes apart, as the Marlin layout puts them; else the block's stages are contiguous.
  const long long row_bytes = SPREAD ? 16LL * n : 2048;
  const char* base = SPREAD ? w + nblk * 2048LL : w + (long long)nblk * 2048 * 8 * stages * 2;
  for (int s = 0; s < stages + SLOTS - 1; ++s) {
    if (s < stages) {
      const int stage = split * stages + s, slot = s % SLOTS;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int v = tid + i * 256, kl = v / 128, c = v % 128;   // k16 row of the stage, 16-byte vector of it
        const char* src = base + ((long long)stage * 8 + kl) * row_bytes + c * 16;
        const uint32_t dst = dst0 + slot * kStageBytes + v * 16;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
      }
      if (ACT) {  // row r = tid / 16 of x, its 16-byte chunk c = tid % 16 of the stage's 128 k, stored at c ^ (r & 7)
        const int r = tid / 16, c = tid % 16;
        const char* src = x + (long long)r * n * 2 + (long long)stage * 256 + c * 16;  // rows of K = n bf16
        const uint32_t dst = dst0 + slot * kStageBytes + kWeightBytes + (r * 16 + (c ^ (r & 7))) * 16;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(16));
      }
    }
    asm volatile("cp.async.commit_group;\n" ::);
    asm volatile("cp.async.wait_group %0;\n" ::"n"(SLOTS - 2));
    if (SYNC) __syncthreads();
  }
  asm volatile("cp.async.wait_group 0;\n" ::);
  __syncthreads();
  if (ring[tid].x == 12345) sink[0] = 1;  // keeps the copies
}

int main() {
  const int n = 8192, k = 8192, stages = k / 16 / 8 / 2;  // 32 stages a split
  char *w, *x;
  int* sink;
  cudaMalloc(&w, (size_t)n * k);
  cudaMalloc(&x, (size_t)16 * k * 2);
  cudaMalloc(&sink, 4);
  cudaMemset(w, 0, (size_t)n * k);
  cudaMemset(x, 0, (size_t)16 * k * 2);
  const int smem = 5 * kStageBytes;
  cudaFuncSetAttribute(stream_kernel<true, true, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  cudaFuncSetAttribute(stream_kernel<false, true, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  cudaFuncSetAttribute(stream_kernel<true, false, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  cudaFuncSetAttribute(stream_kernel<true, true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  cudaFuncSetAttribute(stream_kernel<true, true, true, 3>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  cudaFuncSetAttribute(stream_kernel<true, true, true, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  for (int rep = 0; rep < 2; ++rep) {  // ncu --launch-skip 6 --launch-count 6: the second round
    stream_kernel<true, true, false><<<128, 256, smem>>>(w, x, n, stages, sink);
    stream_kernel<false, true, false><<<128, 256, smem>>>(w, x, n, stages, sink);
    stream_kernel<true, false, false><<<128, 256, smem>>>(w, x, n, stages, sink);
    stream_kernel<true, true, true><<<128, 256, smem>>>(w, x, n, stages, sink);
    stream_kernel<true, true, true, 3><<<128, 256, smem>>>(w, x, n, stages, sink);  // fewer bytes in flight
    stream_kernel<true, true, true, 2><<<128, 256, smem>>>(w, x, n, stages, sink);
  }
  const cudaError_t err = cudaDeviceSynchronize();
  std::printf("l2_pattern: %s\n", cudaGetErrorString(err));
  return err == cudaSuccess ? 0 : 1;
}
