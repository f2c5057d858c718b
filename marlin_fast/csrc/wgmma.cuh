// Warpgroup MMA primitives (wgmma, sm_90a only; PTX ISA "Asynchronous Warpgroup Level Matrix Multiply-Accumulate").
// Plain CUDA, no torch headers.  Compiled to traps where MARLIN_HAS_WGMMA is 0 (sm_80, plain sm_90): no
// configuration that uses them runs there (bindings.cpp refuses it).
#pragma once

#include <cstdint>
#include <type_traits>

#include "common.cuh"

namespace marlin_fast {

// Shared-memory matrix descriptor, no swizzle (PTX "Matrix Descriptor Format"): bits 0-13 start address >> 4,
// bits 16-29 the leading byte offset >> 4 (K-major: the step between the two 8 x 16-byte core matrices along k),
// bits 32-45 the stride byte offset >> 4 (the step between core matrices of 8 rows along M/N), bits 62-63 the
// swizzle mode (0: none).  Adding (bytes >> 4) to it moves the start address (shared addresses are < 2^18).
__device__ inline uint64_t wgmma_desc_no_swizzle(uint32_t smem_address, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return static_cast<uint64_t>((smem_address & 0x3FFFF) >> 4) | (static_cast<uint64_t>(lbo_bytes >> 4) << 16) |
         (static_cast<uint64_t>(sbo_bytes >> 4) << 32);
}

// Orders this thread's register writes (A fragments, accumulators) before the MMAs that read them.
__device__ inline void wgmma_fence() {
#if MARLIN_HAS_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}

__device__ inline void wgmma_commit() {
#if MARLIN_HAS_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}

// Wait until at most N committed groups of this warpgroup's MMAs are still running.
template <int N>
__device__ inline void wgmma_wait() {
#if MARLIN_HAS_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#else
  __trap();
#endif
}

// A compiler-only fence on an accumulator: nvcc does not know that an MMA writes it asynchronously, so reads after
// wgmma_wait must not move above it (CUTLASS's warpgroup_fence_operand).
__device__ inline void wgmma_fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }

#define MARLIN_WGMMA_D_REGS \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
  "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"

#define MARLIN_WGMMA_D_OPERANDS(d) \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
  "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
  "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
  "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
  "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
  "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
  "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), \
  "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), \
  "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), \
  "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), \
  "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), \
  "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), \
  "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), \
  "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), \
  "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])

// D[64 x 256] += A[64 x 16] . B[16 x 256], f32 accumulators, A from registers (a[0..3]: the warp's mma.m16n8k16 A
// fragment, warp w of the warpgroup holding rows 16w..16w+15), B from shared memory, K-major (tnspB = 0).  D of
// thread (warp w, lane l): d[4i + 2v + e] = (row 16w + l/4 + 8v, column 8i + 2(l%4) + e) (CuTe CLayout_64xN).
template <typename T>
__device__ inline void wgmma_m64n256k16_rs(float (&d)[128], const uint32_t (&a)[4], uint64_t desc_b) {
#if MARLIN_HAS_WGMMA
  // operands: d %0-%127, a %128-%131, desc_b %132, scale-a %133, scale-b %134, tnspB %135, scale-d %136 (1: D += )
  if constexpr (std::is_same_v<T, half>) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %136, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {" MARLIN_WGMMA_D_REGS
        "}, {%128, %129, %130, %131}, %132, p, %133, %134, %135;\n}\n"
        : MARLIN_WGMMA_D_OPERANDS(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(1), "n"(1), "n"(0), "n"(1));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %136, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {" MARLIN_WGMMA_D_REGS
        "}, {%128, %129, %130, %131}, %132, p, %133, %134, %135;\n}\n"
        : MARLIN_WGMMA_D_OPERANDS(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(1), "n"(1), "n"(0), "n"(1));
  }
#else
  __trap();
#endif
}

#undef MARLIN_WGMMA_D_REGS
#undef MARLIN_WGMMA_D_OPERANDS

}  // namespace marlin_fast
