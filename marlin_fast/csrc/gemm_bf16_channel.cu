// One (activation dtype, scale scheme) instantiation of the GEMM, in its own file so that builds
// compile the five variants in parallel.
#include "gemm_instances.cuh"

namespace marlin_fast {
MARLIN_DEFINE_GEMM(gemm_bf16_channel, __nv_bfloat16, kSchemeChannel)
}  // namespace marlin_fast
