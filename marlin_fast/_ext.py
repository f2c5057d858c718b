"""Build and load the CUDA extension (marlin_fast/csrc) on first use; the one place that does so.

`pip install` stays pure Python: nothing here runs at import time, and CPU-only machines never need
nvcc. The first call of `load()` compiles the sources with torch.utils.cpp_extension.load for the
current GPU's architecture only (sm_80 or newer: cp.async, ldmatrix and bf16 mma.sync need it; on compute
capability 9.0 the "a" target, sm_90a, which the wgmma kernel needs) and caches the module; later
processes reuse the build directory (ninja rebuilds only what changed).

Environment:
    MARLIN_FAST_BUILD_DIR   build directory (default: torch's extension cache, per arch)
    MARLIN_FAST_VERBOSE=1   show the compiler output
    MAX_JOBS                parallel compile jobs (default: all CPUs)
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

CSRC = Path(__file__).resolve().parent / "csrc"
EXTENSION_NAME = "marlin_fast_cuda"
MIN_CAPABILITY = (8, 0)  # cp.async, ldmatrix and bf16 mma.sync


def arch_for(major: int, minor: int) -> str:
    """TORCH_CUDA_ARCH_LIST entry for a device: its own architecture, with the "a" target on 9.0 (H100/H200), where
    wgmma exists only in sm_90a code (csrc/gemm_wgmma.cuh); sm_90a code runs on no other device, and none is built.

    >>> arch_for(9, 0), arch_for(8, 0), arch_for(10, 0)
    ('9.0a', '8.0', '10.0')
    """
    return f"{major}.{minor}" + ("a" if (major, minor) == (9, 0) else "")

# No --use_fast_math: it implies -ftz=true, and flushing fp32 subnormals would change the bf16
# channel-wise path, whose accumulators carry a 2^-120 factor (spec §3.5).
CUDA_FLAGS = ["-O3", "-lineinfo", "-Xptxas=-warn-spills"]


@contextlib.contextmanager
def build_environment(arch: str):
    """TORCH_CUDA_ARCH_LIST = this GPU's architecture (one compile pass per file) and a default MAX_JOBS for the
    build, and the caller's values back afterwards: a process that uses our kernels keeps its own settings, and its
    later extension builds are not narrowed to one architecture."""
    saved = {name: os.environ.get(name) for name in ("TORCH_CUDA_ARCH_LIST", "MAX_JOBS")}
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 4))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def sources() -> list[str]:
    """The .cu/.cpp files of the extension, in a stable order."""
    return sorted(str(p) for p in CSRC.iterdir() if p.suffix in (".cu", ".cpp"))


@functools.lru_cache(maxsize=1)
def load():
    """Compile (once) and import the extension for the current CUDA device; returns the module."""
    import torch
    from torch.utils import cpp_extension

    if not torch.cuda.is_available():
        raise RuntimeError("marlin_fast._ext.load: needs a CUDA device (torch.cuda.is_available() is False)")
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < MIN_CAPABILITY:
        raise RuntimeError(
            f"marlin_fast._ext.load: compute capability {major}.{minor} is below the required "
            f"{MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]}"
        )
    build_dir = os.environ.get("MARLIN_FAST_BUILD_DIR")
    if build_dir is None:
        root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "torch_extensions"
        )
        build_dir = os.path.join(root, f"{EXTENSION_NAME}_sm{arch_for(major, minor).replace('.', '')}")
    os.makedirs(build_dir, exist_ok=True)
    with build_environment(arch_for(major, minor)):  # build for this GPU only
        return cpp_extension.load(
            name=EXTENSION_NAME,
            sources=sources(),
            extra_cflags=["-O3"],
            extra_cuda_cflags=CUDA_FLAGS,
            build_directory=build_dir,
            verbose=os.environ.get("MARLIN_FAST_VERBOSE") == "1",
        )
