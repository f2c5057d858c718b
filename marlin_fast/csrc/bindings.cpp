// Python bindings: every precondition is checked here, with the function, the rule and the value in the
// message, before any raw pointer reaches a kernel (spec §2.3 and §4.1 preconditions; design.md "Errors").
//
// Failing checks crashed the interpreter on the GPU image this was first built on (TORCH_CHECK with
// numbers in the message; a plain throw was fine, bench/probe_gpu.py exceptions), so the checks neither
// throw nor format through iostreams: each binding returns (tensor, kind, message) and
// marlin_fast/cuda.py raises ValueError (kind 1), TypeError (kind 2) or RuntimeError (kind 3).
// CHECK_VALUE / CHECK_TYPE read like TORCH_CHECK_VALUE / TORCH_CHECK_TYPE and return the failure.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>

#include "launch.h"

namespace mf = marlin_fast;

namespace {

enum FailureKind : int64_t { kOk = 0, kValueError = 1, kTypeError = 2, kRuntimeError = 3 };

struct Failure {
  int64_t kind = kOk;
  std::string message;
  explicit operator bool() const { return kind != kOk; }
};

using Result = std::tuple<torch::Tensor, int64_t, std::string>;

// Messages are assembled from std::string pieces only (no iostreams; see the note at the top).
inline void append(std::string& s, const char* v) { s += v; }
inline void append(std::string& s, const std::string& v) { s += v; }
inline void append(std::string& s, c10::ScalarType v) { s += c10::toString(v); }
inline void append(std::string& s, const c10::Device& v) { s += v.str(); }
inline void append(std::string& s, c10::IntArrayRef v) {
  s += "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  s += "]";
}
template <typename I, std::enable_if_t<std::is_integral_v<I>, int> = 0>
inline void append(std::string& s, I v) {
  s += std::to_string(v);
}
template <typename... Args>
std::string msg(const Args&... args) {
  std::string s;
  (append(s, args), ...);
  return s;
}

Result ok(torch::Tensor t) { return {std::move(t), kOk, std::string()}; }
Result failed(const Failure& f) { return {torch::Tensor(), f.kind, f.message}; }

#define MF_CHECK(kind, cond, ...)                                 \
  do {                                                            \
    if (!(cond)) return Failure{kind, msg(__VA_ARGS__)};   \
  } while (0)
#define CHECK_VALUE(cond, ...) MF_CHECK(kValueError, cond, __VA_ARGS__)
#define CHECK_TYPE(cond, ...) MF_CHECK(kTypeError, cond, __VA_ARGS__)
#define RETURN_IF_FAILED(expr)      \
  do {                              \
    if (Failure f_ = (expr)) return f_; \
  } while (0)

constexpr int64_t kTileK = 16;
constexpr int64_t kTileN = 64;
constexpr int64_t kGroupFp8 = 128;  // the only FP8 group size with a Marlin kernel (spec §4.2)
constexpr int64_t kGroupMx = 32;    // OCP MX: one e8m0 scale per 32 weights (spec §2.10)

Failure check_cuda(const char* fn, const char* name, const torch::Tensor& t, const torch::Device& device) {
  CHECK_VALUE(t.is_cuda(), fn, ": ", name, ".device=", t.device(), " must be a CUDA device");
  CHECK_VALUE(t.device() == device, fn, ": ", name, ".device=", t.device(), " must equal ", device);
  return {};
}

Failure check_contiguous(const char* fn, const char* name, const torch::Tensor& t) {
  CHECK_VALUE(t.is_contiguous(), fn, ": ", name, " must be contiguous (strides=", t.strides(), ")");
  return {};
}

Failure check_aligned16(const char* fn, const char* name, const torch::Tensor& t) {
  const auto addr = reinterpret_cast<uintptr_t>(t.data_ptr());
  CHECK_VALUE(addr % 16 == 0, fn, ": ", name, ".data_ptr()=", addr, " must be 16-byte aligned");
  return {};
}

// A value of a device computed once per process (its attributes; what this build holds for it).  Each Compute is its
// own lambda type, so each gets its own cache.
template <typename Compute>
int once_per_device(int device, Compute compute) {
  static std::mutex mu;
  static std::map<int, int> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(device);
  if (it != cache.end()) return it->second;
  return cache[device] = compute(device);
}

int device_attribute(int device, cudaDeviceAttr attribute) {
  int value = 0;
  return cudaDeviceGetAttribute(&value, attribute, device) == cudaSuccess ? value : 0;
}

int num_sms(int device) {
  return once_per_device(device, [](int d) {
    return std::max(1, device_attribute(d, cudaDevAttrMultiProcessorCount));
  });
}

int compute_major(int device) {
  return once_per_device(device, [](int d) { return device_attribute(d, cudaDevAttrComputeCapabilityMajor); });
}

// The wgmma configuration runs where the device is compute capability 9.0 exactly (wgmma is sm_90a only: neither
// sm_80 nor sm_100 has it) and this build holds its sm_90a code (marlin_fast/_ext.py builds 9.0a on such a device).
// Called with `device` current (gemm_wgmma_built reads the current device's copy of the build's flag).
bool wgmma_ready(int device) {
  return once_per_device(device, [](int d) {
    return device_attribute(d, cudaDevAttrComputeCapabilityMajor) == 9 &&
           device_attribute(d, cudaDevAttrComputeCapabilityMinor) == 0 && mf::gemm_wgmma_built();
  }) != 0;
}

int blocks_per_sm(int act, int scheme, int config, int device) {
  static std::mutex mu;
  static std::map<std::tuple<int, int, int, int>, int> cache;
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_tuple(act, scheme, config, device);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  const int b = mf::gemm_blocks_per_sm(act, scheme, config);
  if (b > 0) cache[key] = b;
  return b;
}

// Split-K scratch, one per (device, stream): concurrent streams never share one; the counters are
// zeroed once here and re-zeroed by the kernel after each use.
struct Workspace {
  torch::Tensor partials;
  torch::Tensor counters;
};

Workspace& workspace_for(const torch::Device& device, cudaStream_t stream, int64_t floats, int64_t counters) {
  static std::mutex mu;
  static std::map<std::pair<int, uintptr_t>, Workspace> cache;
  std::lock_guard<std::mutex> lock(mu);
  Workspace& ws = cache[{device.index(), reinterpret_cast<uintptr_t>(stream)}];
  if (!ws.partials.defined() || ws.partials.numel() < floats) {
    ws.partials = torch::empty({floats}, torch::dtype(torch::kFloat32).device(device));
  }
  if (!ws.counters.defined() || ws.counters.numel() < counters) {
    ws.counters = torch::zeros({counters}, torch::dtype(torch::kInt32).device(device));
  }
  return ws;
}

int pack_factor(int64_t num_bits) { return static_cast<int>(32 / num_bits); }

cudaStream_t current_stream(const torch::Device& device) {
  return c10::cuda::getCurrentCUDAStream(device.index()).stream();
}

Failure launch_failure(const char* fn, cudaError_t err) {
  if (err == cudaSuccess) return {};
  return Failure{kRuntimeError, msg(fn, ": kernel launch failed: ", cudaGetErrorString(err))};
}

// ------------------------------------------------------------------------------------- repack checks
Failure check_repack(const torch::Tensor& b_q_weight, const torch::Tensor& perm, int64_t size_k, int64_t size_n,
                     int64_t num_bits) {
  const char* fn = "gptq_marlin_repack";
  CHECK_VALUE(num_bits == 4 || num_bits == 8, fn, ": num_bits=", num_bits, " must be 4 or 8");
  CHECK_VALUE(size_k >= 0 && size_k % kTileK == 0, fn, ": size_k=", size_k, " must be a non-negative multiple of 16");
  CHECK_VALUE(size_n >= 0 && size_n % kTileN == 0, fn, ": size_n=", size_n, " must be a non-negative multiple of 64");
  CHECK_TYPE(b_q_weight.scalar_type() == torch::kInt32, fn, ": b_q_weight.dtype=", b_q_weight.scalar_type(),
             " must be torch.int32");
  CHECK_VALUE(b_q_weight.is_cuda(), fn, ": b_q_weight.device=", b_q_weight.device(), " must be a CUDA device");
  const int pf = pack_factor(num_bits);
  CHECK_VALUE(b_q_weight.dim() == 2, fn, ": b_q_weight must be 2-D [size_k/", pf, ", size_n], got shape ",
              b_q_weight.sizes());
  CHECK_VALUE(b_q_weight.size(0) == size_k / pf && b_q_weight.size(1) == size_n, fn, ": b_q_weight.shape=",
              b_q_weight.sizes(), " must be [size_k/", pf, ", size_n] = [", size_k / pf, ", ", size_n, "]");
  RETURN_IF_FAILED(check_contiguous(fn, "b_q_weight", b_q_weight));
  RETURN_IF_FAILED(check_aligned16(fn, "b_q_weight", b_q_weight));
  if (perm.numel() > 0) {
    CHECK_TYPE(perm.scalar_type() == torch::kInt32, fn, ": perm.dtype=", perm.scalar_type(), " must be torch.int32");
    RETURN_IF_FAILED(check_cuda(fn, "perm", perm, b_q_weight.device()));
    RETURN_IF_FAILED(check_contiguous(fn, "perm", perm));
    CHECK_VALUE(perm.dim() == 1 && perm.numel() == size_k, fn, ": perm.shape=", perm.sizes(),
                " must be [size_k] = [", size_k, "] (or empty for no act-order)");
    const int64_t lo = perm.min().item<int64_t>(), hi = perm.max().item<int64_t>();
    CHECK_VALUE(lo >= 0 && hi < size_k, fn, ": perm values must lie in [0, size_k=", size_k, "), got min ", lo,
                ", max ", hi);
  }
  return {};
}

Failure check_checkpoint(const torch::Tensor& weight, int64_t size_k, int64_t size_n) {
  const char* fn = "fp8_marlin_repack_from_checkpoint";
  CHECK_TYPE(weight.scalar_type() == torch::kFloat8_e4m3fn || weight.scalar_type() == torch::kUInt8, fn,
             ": weight.dtype=", weight.scalar_type(), " must be torch.float8_e4m3fn or torch.uint8");
  CHECK_VALUE(weight.is_cuda(), fn, ": weight.device=", weight.device(), " must be a CUDA device");
  CHECK_VALUE(size_k >= 0 && size_k % kTileK == 0, fn, ": size_k=", size_k, " must be a non-negative multiple of 16");
  CHECK_VALUE(size_n >= 0 && size_n % kTileN == 0, fn, ": size_n=", size_n, " must be a non-negative multiple of 64");
  CHECK_VALUE(weight.dim() == 2 && weight.size(0) == size_n && weight.size(1) == size_k, fn, ": weight.shape=",
              weight.sizes(), " must be the checkpoint's [size_n, size_k] = [", size_n, ", ", size_k, "]");
  RETURN_IF_FAILED(check_contiguous(fn, "weight", weight));
  RETURN_IF_FAILED(check_aligned16(fn, "weight", weight));
  return {};
}

// --------------------------------------------------------------------------------------- GEMM checks
struct GemmCommon {
  int act = 0;
  int scheme = 0;
  int64_t groups = 0;
};

// Shared checks of the dense and MoE GEMMs.  b_q_weight / b_scales / bias carry `lead` leading
// expert dimensions (0 dense, 1 MoE).
Failure check_gemm(const char* fn, const torch::Tensor& a, const torch::Tensor& b_q_weight,
                   const torch::Tensor& b_scales, const std::optional<torch::Tensor>& b_bias, int64_t size_n,
                   int64_t size_k, int lead, GemmCommon& g) {
  const auto adt = a.scalar_type();
  CHECK_TYPE(adt == torch::kFloat16 || adt == torch::kBFloat16, fn, ": a.dtype=", adt,
             " must be torch.float16 or torch.bfloat16");
  g.act = adt == torch::kFloat16 ? mf::kActFp16 : mf::kActBf16;
  CHECK_VALUE(a.is_cuda(), fn, ": a.device=", a.device(), " must be a CUDA device");
  const torch::Device device = a.device();
  CHECK_VALUE(size_k > 0 && size_k % kTileK == 0, fn, ": size_k=", size_k, " must be a positive multiple of 16");
  CHECK_VALUE(size_n > 0 && size_n % kTileN == 0, fn, ": size_n=", size_n, " must be a positive multiple of 64");
  CHECK_VALUE(a.dim() == 2 && a.size(1) == size_k, fn, ": a.shape=", a.sizes(), " must be [M, size_k=", size_k, "]");
  // an empty batch has no elements to lay out: torch may give it any strides (a copy to the GPU can give 0)
  CHECK_VALUE(a.size(0) == 0 || a.stride(1) == 1, fn, ": a.stride(1)=", a.stride(1), " must be 1");
  CHECK_VALUE(a.size(0) <= 1 || (a.stride(0) % 8 == 0 && a.stride(0) >= size_k), fn, ": a.stride(0)=", a.stride(0),
              " must be a multiple of 8 and >= size_k=", size_k);
  RETURN_IF_FAILED(check_aligned16(fn, "a", a));
  // The kernel addresses A and one expert's weight with 32-bit offsets in 16-byte vectors (gemm_kernel.cuh).
  CHECK_VALUE(a.size(0) <= 1 || a.size(0) * a.stride(0) / 8 < (int64_t{1} << 32), fn, ": a spans ",
              a.size(0) * a.stride(0), " elements (M * a.stride(0)); must be < 2^35 (the kernel's 32-bit offsets)");
  CHECK_VALUE(size_k / kTileK * size_n < (int64_t{1} << 32), fn, ": size_k * size_n = ", size_k * size_n,
              " must be < 2^36 (the kernel's 32-bit offsets)");

  CHECK_TYPE(b_q_weight.scalar_type() == torch::kInt32, fn, ": b_q_weight.dtype=", b_q_weight.scalar_type(),
             " must be torch.int32");
  RETURN_IF_FAILED(check_cuda(fn, "b_q_weight", b_q_weight, device));
  CHECK_VALUE(b_q_weight.dim() == 2 + lead && b_q_weight.size(lead) == size_k / kTileK &&
                  b_q_weight.size(lead + 1) == size_n * 4,
              fn, ": b_q_weight.shape=", b_q_weight.sizes(), " must be ", lead ? "[E, " : "[", "size_k/16=",
              size_k / kTileK, ", 4*size_n=", size_n * 4, "]");
  RETURN_IF_FAILED(check_contiguous(fn, "b_q_weight", b_q_weight));
  RETURN_IF_FAILED(check_aligned16(fn, "b_q_weight", b_q_weight));

  RETURN_IF_FAILED(check_cuda(fn, "b_scales", b_scales, device));
  CHECK_VALUE(b_scales.dim() == 2 + lead && b_scales.size(lead + 1) == size_n, fn, ": b_scales.shape=",
              b_scales.sizes(), " must be ", lead ? "[E, G, " : "[G, ", "size_n=", size_n, "]");
  if (lead) {
    CHECK_VALUE(b_scales.size(0) == b_q_weight.size(0), fn, ": b_scales has ", b_scales.size(0),
                " experts but b_q_weight has ", b_q_weight.size(0));
  }
  RETURN_IF_FAILED(check_contiguous(fn, "b_scales", b_scales));
  RETURN_IF_FAILED(check_aligned16(fn, "b_scales", b_scales));
  g.groups = b_scales.size(lead);
  const auto sdt = b_scales.scalar_type();
  if (sdt == torch::kFloat8_e8m0fnu || sdt == torch::kUInt8) {
    CHECK_VALUE(g.act == mf::kActBf16, fn, ": MXFP8 (e8m0 scales) needs bfloat16 activations, got a.dtype=", adt,
                " (no fp16 MXFP8 kernel, spec §2.10)");
    CHECK_VALUE(size_k % kGroupMx == 0 && g.groups == size_k / kGroupMx, fn, ": e8m0 b_scales has G=", g.groups,
                " rows; MXFP8 needs size_k/32 = ", size_k / kGroupMx, " (size_k=", size_k,
                " must be a multiple of 32)");
    // One group (K = 32) would take the single scale permutation in vLLM's prep (group_size < size_k
    // fails, §2.4) while the kernel reads grouped scales; vLLM's shapes never get there (K % 64, §4.2).
    CHECK_VALUE(g.groups >= 2, fn, ": MXFP8 needs size_k >= 64 (at least two e8m0 groups), got size_k=", size_k,
                ": with one group the scale permutation is ambiguous (spec §2.4)");
    g.scheme = mf::kSchemeMx32;
  } else {
    CHECK_TYPE(sdt == adt, fn, ": b_scales.dtype=", sdt, " must equal a.dtype=", adt,
               " (fused FP8 scales, spec §2.6) or be torch.float8_e8m0fnu/uint8 (MXFP8)");
    CHECK_VALUE(g.groups >= 1, fn, ": b_scales must have at least one row, got shape ", b_scales.sizes());
    if (g.groups == 1) {
      g.scheme = mf::kSchemeChannel;
    } else {
      CHECK_VALUE(size_k % g.groups == 0 && size_k / g.groups == kGroupFp8, fn, ": b_scales has G=", g.groups,
                  " rows, so group_size = size_k/G = ", size_k, "/", g.groups,
                  "; FP8 Marlin supports only channel-wise (G=1) or group_size 128 (spec §4.2)");
      g.scheme = mf::kSchemeGroup128;
    }
  }
  if (b_bias.has_value() && b_bias->defined()) {
    const auto& b = *b_bias;
    CHECK_TYPE(b.scalar_type() == adt, fn, ": b_bias.dtype=", b.scalar_type(), " must equal a.dtype=", adt);
    RETURN_IF_FAILED(check_cuda(fn, "b_bias", b, device));
    CHECK_VALUE(b.dim() == 1 + lead && b.size(lead) == size_n && (!lead || b.size(0) == b_q_weight.size(0)), fn,
                ": b_bias.shape=", b.sizes(), " must be ", lead ? "[E, " : "[", "size_n=", size_n, "]");
    RETURN_IF_FAILED(check_contiguous(fn, "b_bias", b));
    RETURN_IF_FAILED(check_aligned16(fn, "b_bias", b));
  }
  return {};
}

Failure check_out(const char* fn, const std::optional<torch::Tensor>& out, int64_t rows, int64_t size_n,
                  const torch::Tensor& a) {
  if (!(out.has_value() && out->defined())) return {};
  const auto& c = *out;
  CHECK_TYPE(c.scalar_type() == a.scalar_type(), fn, ": out.dtype=", c.scalar_type(), " must equal a.dtype=",
             a.scalar_type());
  RETURN_IF_FAILED(check_cuda(fn, "out", c, a.device()));
  CHECK_VALUE(c.dim() == 2 && c.size(0) == rows && c.size(1) == size_n, fn, ": out.shape=", c.sizes(), " must be [",
              rows, ", ", size_n, "]");
  RETURN_IF_FAILED(check_contiguous(fn, "out", c));
  CHECK_VALUE(reinterpret_cast<uintptr_t>(c.data_ptr()) % 4 == 0, fn, ": out.data_ptr() must be 4-byte aligned");
  return {};
}

Failure check_config(const char* fn, int64_t config, bool allow_auto) {
  CHECK_VALUE((allow_auto && config == -1) || (config >= 0 && config < mf::kNumConfigs), fn, ": config=", config,
              " must be ", allow_auto ? "-1 (auto) or " : "", "in [0, ", mf::kNumConfigs, ")");
  return {};
}

torch::Tensor output_for(const std::optional<torch::Tensor>& out, int64_t rows, int64_t size_n,
                         const torch::Tensor& a) {
  return (out.has_value() && out->defined()) ? *out : torch::empty({rows, size_n}, a.options());
}

Failure run_gemm(const char* fn, mf::GemmArgs& args, const GemmCommon& g, int config, int64_t splits,
                 const torch::Device& device) {
  const int dev = device.index();
  if (mf::kConfigs[config].tma && compute_major(dev) < 9) {
    return Failure{kValueError, msg(fn, ": config=", config, " uses bulk copies, which need compute capability 9.0+")};
  }
  if (mf::kConfigs[config].wgmma && !wgmma_ready(dev)) {
    return Failure{kValueError, msg(fn, ": config=", config, " uses wgmma, which needs compute capability 9.0 "
                                    "(H100/H200) and the extension built for sm_90a")};
  }
  const int bps = blocks_per_sm(g.act, g.scheme, config, dev);
  if (bps <= 0) return Failure{kRuntimeError, msg(fn, ": kernel config ", config, " does not fit on device ", dev)};
  mf::plan_gemm(args, config, num_sms(dev), bps, static_cast<int>(splits));
  cudaStream_t stream = current_stream(device);
  if (args.splits > 1) {
    const int64_t tiles = static_cast<int64_t>(args.m_blocks) * args.n_blocks;
    Workspace& ws = workspace_for(device, stream, tiles * args.splits * mf::kConfigs[config].partial_floats(), tiles);
    args.partials = ws.partials.data_ptr<float>();
    args.counters = ws.counters.data_ptr<int32_t>();
  }
  return launch_failure(fn, mf::launch_gemm(g.act, g.scheme, config, args, stream));
}

int config_for_rows(int64_t rows) {
  if (rows <= 16) return 0;
  if (rows <= 32) return 1;
  if (rows <= 64) return 2;
  return 3;
}

// A dense GEMM of at least this many rows takes the wgmma kernel where it runs (MoE keeps config_for_rows: its
// experts see few rows each); 0: never by itself, only as config=6. Off until a timed run puts the wgmma kernel
// ahead of configuration 3: its first profile (H100, ncu, M = 1024, 8192 x 8192) took 1.37x the peer's time,
// waiting on its copies (bench/results/gpu/fault-2026-12-05). bench/pick_configs.py names the value from a sweep.
constexpr int64_t kWgmmaMinRows = 0;

// A dense GEMM of configuration 2's rows (33-64) on a weight of at least this many elements (N * K) takes
// configuration 7, its block twice as wide (64 x 256): x's tile is read once for 256 columns, not 128, and a large
// weight still gives every SM a block. H100 sweep (bench/results/gpu/sweep-2026-12-05b, M = 64, best split count
// each): 28672 x 4096 62.5 us against 83.7, 8192^2 42.1 against 47.7, 4096 x 14336 41.6 against 44.9 (channel;
// group-128 alike), but 4096^2 24.6 against 22.1. The threshold lies between those shapes (16.8M and 58.7M
// elements); no shape between them was timed.
constexpr int64_t kWideMinWeight = int64_t{1} << 25;

int dense_config(int64_t rows, int64_t n, int64_t k, int device) {
  const bool wgmma = kWgmmaMinRows > 0 && rows >= kWgmmaMinRows && wgmma_ready(device);
  if (wgmma) return mf::kWgmmaConfig;
  const int by_rows = config_for_rows(rows);
  return by_rows == 2 && n * k >= kWideMinWeight ? mf::kWideConfig : by_rows;
}

}  // namespace

// ----------------------------------------------------------------------------------------- bindings
Result gptq_marlin_repack(const torch::Tensor& b_q_weight, const torch::Tensor& perm, int64_t size_k, int64_t size_n,
                          int64_t num_bits) {
  if (Failure f = check_repack(b_q_weight, perm, size_k, size_n, num_bits)) return failed(f);
  const torch::Device device = b_q_weight.device();
  const c10::cuda::CUDAGuard guard(device);
  auto out = torch::empty({size_k / kTileK, size_n * kTileK / pack_factor(num_bits)},
                          torch::dtype(torch::kInt32).device(device));
  if (out.numel() == 0) return ok(out);
  const cudaError_t err = mf::launch_repack(
      reinterpret_cast<const uint32_t*>(b_q_weight.data_ptr()),
      perm.numel() > 0 ? perm.data_ptr<int32_t>() : nullptr, reinterpret_cast<uint32_t*>(out.data_ptr()),
      static_cast<int>(size_k), static_cast<int>(size_n), static_cast<int>(num_bits), false, num_sms(device.index()),
      current_stream(device));
  if (Failure f = launch_failure("gptq_marlin_repack", err)) return failed(f);
  return ok(out);
}

Result fp8_marlin_repack_from_checkpoint(const torch::Tensor& weight, int64_t size_k, int64_t size_n) {
  if (Failure f = check_checkpoint(weight, size_k, size_n)) return failed(f);
  const torch::Device device = weight.device();
  const c10::cuda::CUDAGuard guard(device);
  auto out = torch::empty({size_k / kTileK, size_n * 4}, torch::dtype(torch::kInt32).device(device));
  if (out.numel() == 0) return ok(out);
  const cudaError_t err = mf::launch_repack(reinterpret_cast<const uint32_t*>(weight.data_ptr()), nullptr,
                                            reinterpret_cast<uint32_t*>(out.data_ptr()), static_cast<int>(size_k),
                                            static_cast<int>(size_n), 8, true, num_sms(device.index()),
                                            current_stream(device));
  if (Failure f = launch_failure("fp8_marlin_repack_from_checkpoint", err)) return failed(f);
  return ok(out);
}

int64_t gemm_config_for_rows(int64_t rows) { return config_for_rows(rows); }
int64_t gemm_dense_config(int64_t rows, int64_t n, int64_t k) {  // marlin_gemm's automatic choice on this device
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return -1;
  return dense_config(rows, n, k, device);
}
int64_t gemm_wgmma_min_rows() { return kWgmmaMinRows; }
int64_t gemm_config_block_m(int64_t config) {
  return config >= 0 && config < mf::kNumConfigs ? mf::kConfigs[config].block_m() : -1;
}

Result marlin_gemm(const torch::Tensor& a, const torch::Tensor& b_q_weight, const torch::Tensor& b_scales,
                   const std::optional<torch::Tensor>& b_bias, const std::optional<torch::Tensor>& out, int64_t size_n,
                   int64_t size_k, int64_t config, int64_t splits) {
  const char* fn = "marlin_gemm";
  GemmCommon g;
  if (Failure f = check_gemm(fn, a, b_q_weight, b_scales, b_bias, size_n, size_k, 0, g)) return failed(f);
  const int64_t m = a.size(0);
  if (Failure f = check_out(fn, out, m, size_n, a)) return failed(f);
  if (Failure f = check_config(fn, config, true)) return failed(f);
  if (m >= (int64_t{1} << 30)) return failed(Failure{kValueError, msg(fn, ": M=", m, " must be < 2^30")});
  const torch::Device device = a.device();
  const c10::cuda::CUDAGuard guard(device);
  torch::Tensor c = output_for(out, m, size_n, a);
  if (m == 0) return ok(c);
  const int cfg = config >= 0 ? static_cast<int>(config) : dense_config(m, size_n, size_k, device.index());
  mf::GemmArgs args{};
  args.a = a.data_ptr();
  args.lda = m > 1 ? a.stride(0) : size_k;
  args.b = b_q_weight.data_ptr();
  args.scales = b_scales.data_ptr();
  args.bias = (b_bias.has_value() && b_bias->defined()) ? b_bias->data_ptr() : nullptr;
  args.c = c.data_ptr();
  args.M = static_cast<int>(m);
  args.N = static_cast<int>(size_n);
  args.K = static_cast<int>(size_k);
  args.G = static_cast<int>(g.groups);
  args.m_blocks = static_cast<int>((m + mf::kConfigs[cfg].block_m() - 1) / mf::kConfigs[cfg].block_m());
  args.top_k = 1;
  if (Failure f = run_gemm(fn, args, g, cfg, splits, device)) return failed(f);
  return ok(c);
}

Result marlin_moe_gemm(const torch::Tensor& a, const torch::Tensor& b_q_weight, const torch::Tensor& b_scales,
                       const std::optional<torch::Tensor>& b_bias, const std::optional<torch::Tensor>& out,
                       const torch::Tensor& sorted_ids, const torch::Tensor& expert_ids,
                       const std::optional<torch::Tensor>& topk_weights, int64_t top_k, int64_t rows, int64_t size_n,
                       int64_t size_k, int64_t config, int64_t splits) {
  const char* fn = "marlin_moe_gemm";
  GemmCommon g;
  if (Failure f = check_gemm(fn, a, b_q_weight, b_scales, b_bias, size_n, size_k, 1, g)) return failed(f);
  if (Failure f = check_config(fn, config, false)) return failed(f);
  auto check_routing = [&]() -> Failure {
    CHECK_VALUE(top_k >= 1, fn, ": top_k=", top_k, " must be >= 1");
    CHECK_VALUE(rows == a.size(0) * top_k, fn, ": rows=", rows, " must equal a.size(0) * top_k = ", a.size(0) * top_k);
    const int bm = mf::kConfigs[config].block_m();
    for (const auto* t : {&sorted_ids, &expert_ids}) {
      CHECK_TYPE(t->scalar_type() == torch::kInt32, fn, ": sorted_ids/expert_ids must be torch.int32, got ",
                 t->scalar_type());
      RETURN_IF_FAILED(check_cuda(fn, "sorted_ids/expert_ids", *t, a.device()));
      RETURN_IF_FAILED(check_contiguous(fn, "sorted_ids/expert_ids", *t));
    }
    CHECK_VALUE(sorted_ids.dim() == 1 && expert_ids.dim() == 1 && sorted_ids.numel() == expert_ids.numel() * bm, fn,
                ": sorted_ids.numel()=", sorted_ids.numel(), " must be expert_ids.numel() * block_m = ",
                expert_ids.numel(), " * ", bm);
    if (topk_weights.has_value() && topk_weights->defined()) {
      const auto& w = *topk_weights;
      CHECK_TYPE(w.scalar_type() == torch::kFloat32, fn, ": topk_weights.dtype=", w.scalar_type(),
                 " must be torch.float32");
      RETURN_IF_FAILED(check_cuda(fn, "topk_weights", w, a.device()));
      RETURN_IF_FAILED(check_contiguous(fn, "topk_weights", w));
      CHECK_VALUE(w.numel() == rows, fn, ": topk_weights.numel()=", w.numel(), " must equal rows=", rows);
    }
    return check_out(fn, out, rows, size_n, a);
  };
  if (Failure f = check_routing()) return failed(f);
  const torch::Device device = a.device();
  const c10::cuda::CUDAGuard guard(device);
  torch::Tensor c = output_for(out, rows, size_n, a);
  if (rows == 0 || expert_ids.numel() == 0) return ok(c);
  mf::GemmArgs args{};
  args.a = a.data_ptr();
  args.lda = a.size(0) > 1 ? a.stride(0) : size_k;
  args.b = b_q_weight.data_ptr();
  args.scales = b_scales.data_ptr();
  args.bias = (b_bias.has_value() && b_bias->defined()) ? b_bias->data_ptr() : nullptr;
  args.c = c.data_ptr();
  args.M = static_cast<int>(rows);
  args.N = static_cast<int>(size_n);
  args.K = static_cast<int>(size_k);
  args.G = static_cast<int>(g.groups);
  args.m_blocks = static_cast<int>(expert_ids.numel());
  args.sorted_ids = sorted_ids.data_ptr<int32_t>();
  args.expert_ids = expert_ids.data_ptr<int32_t>();
  args.top_k = static_cast<int>(top_k);
  args.topk_weights =
      (topk_weights.has_value() && topk_weights->defined()) ? topk_weights->data_ptr<float>() : nullptr;
  args.b_expert_stride = b_q_weight.stride(0);
  args.s_expert_stride = b_scales.stride(0);
  args.bias_expert_stride = args.bias ? b_bias->stride(0) : 0;
  if (Failure f = run_gemm(fn, args, g, static_cast<int>(config), splits, device)) return failed(f);
  return ok(c);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "marlin_fast CUDA kernels: Marlin repack and FP8/MXFP8 W8A16 GEMM (spec §2.3, §3, §5). Each op returns "
            "(tensor, error kind, message); marlin_fast/cuda.py raises.";
  m.def("gptq_marlin_repack", &gptq_marlin_repack, "GPTQ-packed int32 [K/pf, N] -> Marlin int32 [K/16, 16N/pf]");
  m.def("fp8_marlin_repack_from_checkpoint", &fp8_marlin_repack_from_checkpoint,
        "fp8 checkpoint [N, K] -> Marlin int32 [K/16, 4N]");
  m.def("marlin_gemm", &marlin_gemm, "Marlin FP8/MXFP8 W8A16 GEMM");
  m.def("marlin_moe_gemm", &marlin_moe_gemm, "Marlin FP8/MXFP8 W8A16 GEMM over stacked experts");
  m.def("gemm_config_for_rows", &gemm_config_for_rows, "thread-block config chosen for a number of rows");
  m.def("gemm_wgmma_min_rows", &gemm_wgmma_min_rows, "rows from which marlin_gemm takes the wgmma config (0: never)");
  m.def("gemm_dense_config", &gemm_dense_config, "marlin_gemm's automatic config for (rows, N, K) on this device");
  m.def("gemm_config_block_m", &gemm_config_block_m, "rows per block of a config (-1 if no such config)");
}
