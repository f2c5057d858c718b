// How many L2 sectors does a 16-byte cp.async ask for? Issue 12's decode profile: our GEMM asks L2 for twice the
// sectors of the bytes it copies, the peer's for as many. Each variant copies the same 64 MiB once, every warp 512
// contiguous bytes an instruction, into a 4-slot shared ring; ncu's lts__t_sectors_srcunit_tex_op_read.sum should
// read 2 Mi sectors for each. Build: nvcc -O3 -arch=sm_90a -o l2_sectors l2_sectors.cu
#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>

template <int FORM>
__global__ void __launch_bounds__(256) copy_kernel(const int4* src, long long vecs, int* sink) {
  __shared__ int4 ring[4 * 256];
  const uint32_t dst0 = static_cast<uint32_t>(__cvta_generic_to_shared(ring));
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  int slot = 0;
  for (long long v = blockIdx.x * 256LL + threadIdx.x; v < vecs; v += 256LL * gridDim.x) {
    const uint32_t dst = dst0 + (slot * 256 + threadIdx.x) * 16;
    const int4* p = src + v;
    if (FORM == 0) {  // the peer's form
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(p));
    } else if (FORM == 1) {  // ours for activations: a source-size operand
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(p), "r"(16));
    } else {  // ours for weights: an L2 cache policy
      asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(p), "l"(policy));
    }
    asm volatile("cp.async.commit_group;\n" ::);
    asm volatile("cp.async.wait_group 2;\n" ::);
    slot = (slot + 1) % 4;
  }
  asm volatile("cp.async.wait_group 0;\n" ::);
  __syncthreads();
  if (ring[threadIdx.x].x == 12345) sink[0] = 1;  // keeps the copies
}

int main() {
  const long long bytes = 64LL << 20, vecs = bytes / 16;
  int4* src;
  int* sink;
  cudaMalloc(&src, bytes);
  cudaMalloc(&sink, 4);
  cudaMemset(src, 0, bytes);
  for (int rep = 0; rep < 2; ++rep) {
    copy_kernel<0><<<132, 256>>>(src, vecs, sink);
    copy_kernel<1><<<132, 256>>>(src, vecs, sink);
    copy_kernel<2><<<132, 256>>>(src, vecs, sink);
  }
  const cudaError_t err = cudaDeviceSynchronize();
  std::printf("l2_sectors: %s\n", cudaGetErrorString(err));
  return err == cudaSuccess ? 0 : 1;
}
