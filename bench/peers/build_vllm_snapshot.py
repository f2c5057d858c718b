"""Build the FP8 Marlin path of a vLLM kernel source checkout as a torch extension, to test it with the suite.

    python bench/peers/build_vllm_snapshot.py --source /path/to/kernels-community/vllm-quantization --out DIR

The source is kernels-community's `vllm-quantization` folder at commit 8836a017 (the 2025 snapshot of vLLM's
gptq_marlin, spec §0.1, §7). From it this script takes, into DIR/src (never into the repository):

* gptq_marlin/: the dispatcher gptq_marlin.cu, gptq_marlin_repack.cu, the kernel template and its headers, and the
  two kfe4m3fn instantiation files (fp16 and bf16); the dispatcher is trimmed to those (its other GET_IF lines,
  for u4 / u8 / fp4 / act-order / zero-point kernels, are removed, as their instantiations are not built);
* core/scalar_type.hpp;

and writes a binding that registers `gptq_marlin_gemm` and `gptq_marlin_repack` in the torch.ops namespace
NAMESPACE, with the snapshot's own schema strings and C++ prototypes read from torch-ext/torch_binding.cpp and
torch_binding.h. It builds them with torch.utils.cpp_extension for the GPU it runs on (sm_90 on an H200), passing
nvcc `-static-global-template-stub=false` (CUDA 13 gives template __global__ stubs internal linkage, which breaks
the split of dispatcher and instantiations at link time). The library is DIR/build/<name>.so; test it with

    python -m pytest --marlin-load DIR/build/_vllm_marlin_snapshot.so --marlin-backend marlin-ops:marlin_snapshot

Nothing built or copied here is committed: bench/results/ keeps the log and the compliance report only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

NAMESPACE = "marlin_snapshot"
NAME = "_vllm_marlin_snapshot"
OPS = ("gptq_marlin_gemm", "gptq_marlin_repack")
FILES = ("gptq_marlin/gptq_marlin.cu", "gptq_marlin/gptq_marlin_repack.cu", "gptq_marlin/kernel.h",
         "gptq_marlin/marlin.cuh", "gptq_marlin/marlin_dtypes.cuh", "gptq_marlin/marlin_template.h",
         "gptq_marlin/dequant.h", "gptq_marlin/kernel_fp16_kfe4m3fn.cu", "gptq_marlin/kernel_bf16_kfe4m3fn.cu",
         "core/scalar_type.hpp", "torch-ext/torch_binding.cpp", "torch-ext/torch_binding.h")
# the dispatcher's kernel families other than FP8 (kFE4M3fn): their instantiations are not built
OTHER_FAMILIES = re.compile(r"^\s*(COMMON|FP4|ACT|FZP)_GET_IF\(vllm::k(U4|U4B8|U8B128|FE2M1f)\)\s*$", re.MULTILINE)


def schema(binding_cpp: str, op: str) -> str:
    """The schema string of `op` in the snapshot's torch_binding.cpp (adjacent string literals joined)."""
    start = binding_cpp.index(f'"{op}(')
    literals, rest = [], binding_cpp[start:]
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"', rest):
        literals.append(match.group(1))
        if "->" in match.group(1):
            break
    return "".join(literals)


def prototype(binding_h: str, op: str) -> str:
    """The C++ declaration of `op` in the snapshot's torch_binding.h."""
    match = re.search(rf"torch::Tensor {op}\((.*?)\);", binding_h, re.DOTALL)
    if not match:
        raise SystemExit(f"build_vllm_snapshot: no declaration of {op} in torch_binding.h")
    return f"torch::Tensor {op}({match.group(1)});"


def write_sources(source: Path, src: Path) -> list[Path]:
    for name in FILES:
        if not (source / name).is_file():
            raise SystemExit(f"build_vllm_snapshot: --source {source} lacks {name} (a vllm-quantization checkout "
                             f"at kernels-community 8836a017 is expected)")
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, src / name)
    dispatcher = src / "gptq_marlin/gptq_marlin.cu"
    text, removed = OTHER_FAMILIES.subn("", dispatcher.read_text())
    if removed != 7:
        raise SystemExit(f"build_vllm_snapshot: expected to trim 7 dispatcher lines, trimmed {removed}")
    dispatcher.write_text(text)
    cpp, h = (src / "torch-ext/torch_binding.cpp").read_text(), (src / "torch-ext/torch_binding.h").read_text()
    binding = src / "binding.cpp"
    binding.write_text("\n".join([
        "// Written by bench/peers/build_vllm_snapshot.py: the snapshot's FP8 Marlin ops in one namespace.",
        "#include <torch/all.h>", "#include <torch/library.h>", '#include "core/scalar_type.hpp"', "",
        *(prototype(h, op) for op in OPS), "",
        f"TORCH_LIBRARY({NAMESPACE}, m) {{",
        *(f'  m.def("{schema(cpp, op)}");' for op in OPS), "}", "",
        f"TORCH_LIBRARY_IMPL({NAMESPACE}, CUDA, m) {{",
        *(f'  m.impl("{op}", &{op});' for op in OPS), "}", ""]))
    return [binding, dispatcher, src / "gptq_marlin/gptq_marlin_repack.cu",
            src / "gptq_marlin/kernel_fp16_kfe4m3fn.cu", src / "gptq_marlin/kernel_bf16_kfe4m3fn.cu"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/peers/build_vllm_snapshot.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, type=Path, help="the vllm-quantization folder of the checkout")
    parser.add_argument("--out", required=True, type=Path, help="where to copy, write and build (not the repo)")
    args = parser.parse_args(argv)
    import torch
    from torch.utils.cpp_extension import load

    src, build = args.out / "src", args.out / "build"
    src.mkdir(parents=True, exist_ok=True)
    build.mkdir(parents=True, exist_ok=True)
    sources = write_sources(args.source, src)
    major, minor = torch.cuda.get_device_capability()
    os.environ["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"      # this GPU only: one pass per file
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 4))
    start = time.time()
    load(name=NAME, sources=[str(s) for s in sources], build_directory=str(build), is_python_module=False,
         extra_include_paths=[str(src), str(src / "gptq_marlin")], verbose=False, extra_cflags=["-O3"],
         extra_cuda_cflags=["-O3", "-static-global-template-stub=false", "-U__CUDA_NO_HALF_OPERATORS__",
                            "-U__CUDA_NO_HALF_CONVERSIONS__", "-U__CUDA_NO_BFLOAT16_OPERATORS__",
                            "-U__CUDA_NO_BFLOAT16_CONVERSIONS__"])
    library = build / f"{NAME}.so"
    print(f"built {library} for sm_{major}{minor} in {time.time() - start:.0f} s; ops: "
          f"{[n for n in torch._C._dispatch_get_all_op_names() if n.startswith(NAMESPACE + '::')]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
