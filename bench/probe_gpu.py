"""Diagnostics for the CUDA fast path (not a benchmark of record).

    PYTHONPATH=. python3 bench/probe_gpu.py exceptions      # which C++ throws survive a pybind call
    PYTHONPATH=. python3 bench/probe_gpu.py sweep           # GEMM time over configs x split-K counts
    PYTHONPATH=. python3 bench/probe_gpu.py one M N K [scheme [config [splits]]]   # five identical calls, for ncu
"""

from __future__ import annotations

import os
import subprocess
import sys

PROBE_SRC = r"""
#include <torch/extension.h>
#include <sstream>
#include <stdexcept>
void throw_std() { throw std::runtime_error("std runtime_error"); }
void throw_pybind() { throw pybind11::value_error("pybind value_error"); }
void torch_check() { TORCH_CHECK(false, "plain TORCH_CHECK"); }
void torch_check_value() { TORCH_CHECK_VALUE(false, "TORCH_CHECK_VALUE"); }
void catch_inside() { try { TORCH_CHECK_VALUE(false, "x"); } catch (const c10::Error&) {} }
void torch_check_number() { TORCH_CHECK_VALUE(false, "n=", 5); }
std::string c10_str_number() { return c10::str("n=", 5); }
std::string ostringstream_number() { std::ostringstream os; os << 5; return os.str(); }
std::string to_string_number() { return "n=" + std::to_string(5); }
std::tuple<torch::Tensor, int64_t> undefined_tensor() { return {torch::Tensor(), 1}; }
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("torch_check_number", &torch_check_number); m.def("c10_str_number", &c10_str_number);
  m.def("ostringstream_number", &ostringstream_number); m.def("to_string_number", &to_string_number);
  m.def("undefined_tensor", &undefined_tensor);
  m.def("throw_std", &throw_std); m.def("throw_pybind", &throw_pybind);
  m.def("torch_check", &torch_check); m.def("torch_check_value", &torch_check_value);
  m.def("catch_inside", &catch_inside);
}
"""


def exceptions() -> None:
    from torch.utils.cpp_extension import load_inline

    build = "/tmp/throw_probe"
    os.makedirs(build, exist_ok=True)
    load_inline("throw_probe", cpp_sources=[PROBE_SRC], build_directory=build, extra_cflags=["-O2"])
    for fn in ("catch_inside", "throw_std", "throw_pybind", "torch_check", "torch_check_value", "to_string_number",
               "undefined_tensor", "ostringstream_number", "c10_str_number", "torch_check_number"):
        code = (f"import sys; sys.path.insert(0, {build!r}); import torch, throw_probe\n"
                f"try:\n    print('returned', throw_probe.{fn}())\n"
                f"except Exception as e:\n    print(type(e).__name__, str(e).splitlines()[0])")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        print(f"{fn:18s} rc={r.returncode:4d} {r.stdout.strip()} {r.stderr.strip().splitlines()[-1:] if r.returncode else ''}")


def sweep() -> None:
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_gpu import Timer
    from gpu_setup import make_gemm_inputs

    from marlin_fast import cuda as kernels

    timer = Timer()
    gen = torch.Generator(device="cuda").manual_seed(3)
    for size_n, size_k in [(8192, 8192), (28672, 4096), (4096, 14336)]:
        q, s, _, _ = make_gemm_inputs(kernels, size_n, size_k, "channel", torch.bfloat16, gen)
        # 6: the wgmma kernel (sm_90a), against 3, the mma.sync configuration it would replace (kWgmmaMinRows)
        for rows, configs in [(1, [0, 5]), (64, [2]), (256, [3, 6]), (1024, [3, 6])]:
            x = torch.randn((rows, size_k), device="cuda", generator=gen).to(torch.bfloat16)
            line = []
            for config in configs:
                for splits in (None, 1, 2, 4, 8):
                    us = timer(lambda: kernels.marlin_gemm(x, q, s, size_n=size_n, size_k=size_k, config=config,
                                                           splits=splits), reps=30)
                    line.append(f"c{config}/s{splits or 'auto'} {us:6.1f}")
            print(f"N={size_n} K={size_k} M={rows}: " + "  ".join(line), flush=True)


def one() -> None:
    """A few identical GEMM calls (for ncu): probe_gpu.py one ROWS N K [scheme [config [splits]]]; with PEER_LOAD=path
    set, the peer library's GEMM (bench_gpu.PEER_BACKEND) instead of ours."""
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gpu_setup import make_gemm_inputs

    from marlin_fast import cuda as kernels

    rows, size_n, size_k = (int(v) for v in sys.argv[2:5])
    scheme = sys.argv[5] if len(sys.argv) > 5 else "channel"
    config = int(sys.argv[6]) if len(sys.argv) > 6 else None
    splits = int(sys.argv[7]) if len(sys.argv) > 7 else None
    gen = torch.Generator(device="cuda").manual_seed(4)
    q, s, _, _ = make_gemm_inputs(kernels, size_n, size_k, scheme, torch.bfloat16, gen)
    x = torch.randn((rows, size_k), device="cuda", generator=gen).to(torch.bfloat16)
    if os.environ.get("PEER_LOAD"):   # the peer library's GEMM on the same tensors (it picks its own tiles)
        from bench_gpu import PEER_BACKEND, load_peer

        peer_gemm = load_peer(os.environ["PEER_LOAD"], PEER_BACKEND)[1]
        def call():
            return peer_gemm(x, q, s, size_n=size_n, size_k=size_k)
    else:
        def call():
            return kernels.marlin_gemm(x, q, s, size_n=size_n, size_k=size_k, config=config, splits=splits)
    for _ in range(5):
        call()
    torch.cuda.synchronize()


def times() -> None:
    """Median us (L2 flushed, bench_gpu's Timer) of our automatic GEMM on the bench's four shapes, both 16-bit scale
    schemes: probe_gpu.py times ROWS... One line per case, `N K M scheme config us`, for an A/B of two source trees
    run alternately in separate processes (bench/pending/ab_call.sh)."""
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_gpu import Timer
    from gpu_setup import make_gemm_inputs

    from marlin_fast import _ext
    from marlin_fast import cuda as kernels

    timer = Timer()
    gen = torch.Generator(device="cuda").manual_seed(5)
    for size_n, size_k in [(4096, 4096), (8192, 8192), (28672, 4096), (4096, 14336)]:
        for scheme in ("channel", "group128"):
            q, s, _, _ = make_gemm_inputs(kernels, size_n, size_k, scheme, torch.bfloat16, gen)
            for rows in (int(v) for v in sys.argv[2:]):
                x = torch.randn((rows, size_k), device="cuda", generator=gen).to(torch.bfloat16)
                us = timer(lambda: kernels.marlin_gemm(x, q, s, size_n=size_n, size_k=size_k), reps=50)
                config = _ext.load().gemm_dense_config(rows, size_n, size_k)
                print(f"{size_n} {size_k} {rows} {scheme} {config} {us:.2f}", flush=True)


if __name__ == "__main__":
    {"exceptions": exceptions, "sweep": sweep, "one": one, "times": times}[sys.argv[1]]()
