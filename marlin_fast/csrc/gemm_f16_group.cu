// One (activation dtype, scale scheme) instantiation of the GEMM, in its own file so that builds
// compile the five variants in parallel.
#include "gemm_instances.cuh"

namespace marlin_fast {
MARLIN_DEFINE_GEMM(gemm_f16_group, half, kSchemeGroup128)
}  // namespace marlin_fast
