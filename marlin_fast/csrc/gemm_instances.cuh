// The GEMM instantiations of one (activation dtype, scale scheme): every configuration of launch.h, the mma.sync
// kernel (gemm_kernel.cuh) for 0-5 and the wgmma kernel (gemm_wgmma.cuh) for 6.
#pragma once

#include "gemm_kernel.cuh"
#include "gemm_wgmma.cuh"

namespace marlin_fast {

static_assert(kNumConfigs == 8 && kWgmmaConfig == 6, "MARLIN_DEFINE_GEMM lists every configuration");

#define MARLIN_DEFINE_GEMM(NAME, T, SCHEME)                                         \
  int NAME##_blocks_per_sm(int config) {                                            \
    switch (config) {                                                               \
      case 0: return blocks_per_sm_impl<T, SCHEME, 0>();                            \
      case 1: return blocks_per_sm_impl<T, SCHEME, 1>();                            \
      case 2: return blocks_per_sm_impl<T, SCHEME, 2>();                            \
      case 3: return blocks_per_sm_impl<T, SCHEME, 3>();                            \
      case 4: return blocks_per_sm_impl<T, SCHEME, 4>();                            \
      case 5: return blocks_per_sm_impl<T, SCHEME, 5>();                            \
      case 6: return wgmma_blocks_per_sm_impl<T, SCHEME>();                         \
      case 7: return blocks_per_sm_impl<T, SCHEME, 7>();                            \
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
      case 6: return wgmma_launch_impl<T, SCHEME>(p, stream);                       \
      case 7: return launch_impl<T, SCHEME, 7>(p, stream);                          \
    }                                                                               \
    return cudaErrorInvalidValue;                                                   \
  }

}  // namespace marlin_fast
