"""Shared pieces of the GPU tier: Marlin layers built by the oracle, and the calls of the backend under test.

The contract checks go through the backend seam (the `device_backend` fixture of conftest.py): `gemm` with NumPy
in and out, `device_gemm` with torch tensors on the backend's device (poisoned output buffers, strided activations)
via Backend.device_op. Every expectation comes from marlin_ref (the NumPy oracle): layouts by bytes, one-hot
GEMMs by `one_hot_expected`, random GEMMs through `properties.laws.assert_within_gemm_bound` (the only home of the
§3.6 tolerance). Only tests/gpu/test_marlin_fast_cuda_internals.py calls our own kernels (marlin_fast.cuda)
directly: thread configurations, split counts and our argument checks are ours, not the contract's.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np
import pytest

import marlin_ref as mr
from marlin_ref.marlin_gemm import dequantize_marlin_weight
from properties.seam.backends import to_numpy, to_torch


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


CUDA_MARKS = [pytest.mark.cuda, pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")]

TILE_K, TILE_N = 16, 64        # one Marlin tile (§2.3.1)
FP8_GROUP, MX_GROUP = 128, 32  # the only grouped FP8 kernel and the OCP MX block (§4.2)
# (scheme, activation dtype): MXFP8 exists for bf16 only (§2.10)
SCHEMES = [("channel", "float16"), ("channel", "bfloat16"), ("group128", "float16"),
           ("group128", "bfloat16"), ("mx", "bfloat16")]
NUM_CONFIGS = 8                # thread-block configurations of the kernel (csrc/launch.h; 4 and 5 need sm_90)
WGMMA_CONFIG = 6               # the wgmma kernel (csrc/gemm_wgmma.cuh): compute capability 9.0 only (sm_90a)
WIDE_CONFIG = 7                # 64 x 256 blocks: M = 33-64 on a weight of >= 2^25 elements (csrc/bindings.cpp)


def kernels():
    """Our CUDA kernels module (compiled on first use): for the internal unit tests only."""
    from marlin_fast import cuda

    return cuda


def dev(a: np.ndarray):
    return to_torch(np.ascontiguousarray(a), "cuda")


def host(t) -> np.ndarray:
    return to_numpy(t)


@dataclass
class Layer:
    """One dense FP8 / MXFP8 layer: logical codes and scales, the Marlin tensors, and W_eff."""

    scheme: str
    dtype: str
    size_k: int
    size_n: int
    codes: np.ndarray            # uint8 [K, N] logical e4m3 codes
    qweight: np.ndarray          # int32 [K/16, 4N]
    scales: np.ndarray           # [G, N] fused 16-bit or e8m0, permuted as the kernel reads them
    bias: np.ndarray | None      # logical [N] in dtype
    bias_permuted: np.ndarray | None
    w_eff: np.ndarray            # float64 [K, N] (§3.6)
    channel_scales: np.ndarray | None  # logical S [N] for the bound's subnormal floor (path A)


def random_codes(rng, size_k: int, size_n: int) -> np.ndarray:
    """Uniform e4m3 bytes: every code appears, NaN (0x7F/0xFF), subnormals and -0 included."""
    return rng.integers(0, 256, (size_k, size_n), dtype=np.uint8)


def make_layer(scheme: str, dtype: str, size_k: int, size_n: int, rng, *, codes=None, bias: bool = False,
               scale_range=(2.0 ** -8, 1.0), mx_bytes=(110, 140), scales_logical=None) -> Layer:
    """Build the Marlin tensors with the oracle's transforms (§2.2-§2.7) from logical codes/scales."""
    codes = random_codes(rng, size_k, size_n) if codes is None else codes
    qweight = mr.gptq_marlin_repack(mr.pack_fp8_to_int32(codes), None, size_k, size_n, 8)
    np_dtype = mr.as_activation_dtype(dtype)
    channel = None
    if scheme == "mx":
        groups = size_k // MX_GROUP
        b = rng.integers(*mx_bytes, (groups, size_n), dtype=np.uint8) if scales_logical is None else scales_logical
        floats = mr.decode_e8m0(b).astype(np.float32)                                   # [G, N]
        scales = mr.mxfp8_marlin_process_scales(mr.marlin_permute_scales(floats, size_k, size_n, MX_GROUP))
    else:
        groups = 1 if scheme == "channel" else size_k // FP8_GROUP
        if scales_logical is None:
            s = rng.uniform(*scale_range, (groups, size_n))
        else:
            s = np.asarray(scales_logical, np.float64).reshape(groups, size_n)
        s = mr.round_to_dtype(s, np_dtype).astype(np_dtype)                            # S = RT(s) (§3.2)
        group_size = -1 if scheme == "channel" else FP8_GROUP
        permuted = mr.marlin_permute_scales(s, size_k, size_n, group_size)
        scales = mr.fp8_fused_exponent_bias_into_scales(permuted)
        channel = s.astype(np.float64).reshape(-1) if scheme == "channel" else None
    w_eff = dequantize_marlin_weight(qweight, scales, size_k, size_n, dtype=dtype)
    bias_logical = bias_permuted = None
    if bias:
        bias_logical = mr.round_to_dtype(rng.standard_normal(size_n), np_dtype).astype(np_dtype)
        bias_permuted = mr.marlin_permute_bias(bias_logical)
    return Layer(scheme, dtype, size_k, size_n, codes, qweight, scales, bias_logical, bias_permuted, w_eff,
                 channel)


def activations(rng, rows: int, size_k: int, dtype: str, scale: float = 1.0) -> np.ndarray:
    np_dtype = mr.as_activation_dtype(dtype)
    return mr.round_to_dtype(rng.standard_normal((rows, size_k)) * scale, np_dtype).astype(np_dtype)


def gemm(backend, layer: Layer, a: np.ndarray, *, with_bias: bool | None = None) -> np.ndarray:
    """The backend's marlin_gemm on a layer, NumPy in and out (the seam converts, on the backend's device)."""
    use_bias = layer.bias_permuted is not None if with_bias is None else with_bias
    return backend.marlin_gemm(a, layer.qweight, layer.scales, layer.bias_permuted if use_bias else None,
                               size_n=layer.size_n, size_k=layer.size_k)


def device_gemm(backend, layer: Layer, a_t, *, out=None):
    """The backend's torch-level marlin_gemm on its device; `a_t` a tensor there. `out`: an output buffer, for an
    implementation that takes one (else "not provided": the poisoned-output checks need it)."""
    import inspect

    from properties.seam.backends import NotProvided

    fn, device = backend.device_op("marlin_gemm")
    extra = {}
    if out is not None:
        if "out" not in inspect.signature(fn).parameters:
            raise NotProvided(backend.name, "marlin_gemm", "it takes no output buffer, which the poisoned-output "
                                                           "and guard-region checks write into")
        extra["out"] = out
    bias = None if layer.bias_permuted is None else to_torch(layer.bias_permuted, device)
    return fn(a_t, to_torch(layer.qweight, device), to_torch(layer.scales, device), bias, size_n=layer.size_n,
              size_k=layer.size_k, **extra)


def run_gemm(layer: Layer, a, *, config=None, splits=None, out=None, with_bias: bool | None = None):
    """Our CUDA GEMM on a layer (internal unit tests); `a` a NumPy array or a CUDA tensor. Returns the torch output."""
    import torch

    a_t = a if isinstance(a, torch.Tensor) else dev(a)
    use_bias = layer.bias_permuted is not None if with_bias is None else with_bias
    bias_t = dev(layer.bias_permuted) if use_bias else None
    return kernels().marlin_gemm(a_t, dev(layer.qweight), dev(layer.scales), bias_t, size_n=layer.size_n,
                                 size_k=layer.size_k, out=out, config=config, splits=splits)


def assert_same_values(got: np.ndarray, want: np.ndarray, *, where: str) -> None:
    """Bit-for-bit by value: equal floats, NaN where NaN, zeros compared by value (-0 == +0, §6.2)."""
    __tracebackhide__ = True
    g = np.asarray(got).astype(np.float64)
    w = np.asarray(want).astype(np.float64)
    same = (g == w) | (np.isnan(g) & np.isnan(w))
    if not same.all():
        idx = np.argwhere(~same)[:5]
        shown = "; ".join(f"[{i}, {j}] got {g[i, j]!r} want {w[i, j]!r}" for i, j in idx)
        raise AssertionError(f"{where}: {int((~same).sum())} of {same.size} outputs differ: {shown}")


def assert_same_bytes(got: np.ndarray, want: np.ndarray, *, where: str) -> None:
    __tracebackhide__ = True
    g = np.ascontiguousarray(got).view(np.uint8)
    w = np.ascontiguousarray(want).view(np.uint8)
    if g.shape != w.shape:
        raise AssertionError(f"{where}: shape {got.shape} != {want.shape}")
    diff = np.flatnonzero(g.reshape(-1) != w.reshape(-1))
    if diff.size:
        i = diff[0]
        raise AssertionError(f"{where}: {diff.size} of {g.size} bytes differ; first at byte {i}: "
                             f"got {g.reshape(-1)[i]:#04x}, want {w.reshape(-1)[i]:#04x}")


BF16 = np.dtype(ml_dtypes.bfloat16)
