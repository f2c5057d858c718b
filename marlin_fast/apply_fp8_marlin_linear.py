"""The linear layer on a prepared Marlin layer, device-generic: pad K, GEMM with the bias inside, slice N (§2.11, §2.13).

    input [..., K] -> x [M, K] -> zero-padded [M, padded_k] -> marlin_gemm(...) [M, padded_n] -> [..., N]

(padded_n, padded_k) come from the weight's shape (marlin_repacked_nk); the bias is the prepared one (kernel
order, added inside the GEMM). `apply_with(gemm)` builds the same layer on any GEMM of the contract's signature:
marlin_fast.cuda uses it with the CUDA kernel, the marlin-ops adapter with a library's kernel.
"""

from __future__ import annotations

from typing import Callable

import torch

from .errors import check_positive
from .formats import as_activation_dtype
from .marlin_gemm import marlin_gemm
from .padding import marlin_repacked_nk

FP8_NUM_BITS = 8
MX_SCALE_DTYPES = (torch.float8_e8m0fnu, torch.uint8)


def _check(fn: str, input, weight, weight_scale, size_n, size_k, mx: bool) -> tuple[int, int]:
    """(padded_n, padded_k) once the arguments are valid."""
    for name, t in (("input", input), ("weight", weight), ("weight_scale", weight_scale)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    size_n, size_k = check_positive(fn, "size_n", size_n), check_positive(fn, "size_k", size_k)
    as_activation_dtype(input.dtype, fn, "input.dtype")
    if input.dim() < 1 or input.shape[-1] != size_k:
        raise ValueError(f"{fn}: input must be [..., size_k={size_k}], got shape {tuple(input.shape)}")
    if mx and weight_scale.dtype not in MX_SCALE_DTYPES:
        raise TypeError(f"{fn}: weight_scale must have dtype float8_e8m0fnu or uint8, got {weight_scale.dtype}")
    if mx and input.dtype != torch.bfloat16:
        raise TypeError(f"{fn}: input must be bfloat16 (the MXFP8 kernels are bf16 only, §4.2), got {input.dtype}")
    if not mx and weight_scale.dtype in MX_SCALE_DTYPES:
        raise TypeError(f"{fn}: weight_scale must be fused 16-bit scales, got {weight_scale.dtype} "
                        f"(e8m0 scales: apply_mxfp8_marlin_linear)")
    padded_n, padded_k = marlin_repacked_nk(weight, FP8_NUM_BITS)
    if size_k > padded_k or size_n > padded_n:
        raise ValueError(f"{fn}: size_k={size_k}, size_n={size_n} must not exceed the weight's padded "
                         f"(K, N) = ({padded_k}, {padded_n})")
    return padded_n, padded_k


def apply_with(gemm: Callable, *, mx: bool = False) -> Callable:
    """The linear layer on `gemm` (a function of marlin_gemm's signature): apply_fp8_marlin_linear, or with
    mx=True apply_mxfp8_marlin_linear."""
    fn = "apply_mxfp8_marlin_linear" if mx else "apply_fp8_marlin_linear"

    def apply(input: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, *, size_n: int, size_k: int,
              bias: torch.Tensor | None = None) -> torch.Tensor:
        padded_n, padded_k = _check(fn, input, weight, weight_scale, size_n, size_k, mx)
        x = input.reshape(-1, size_k)                                                    # [M, K]
        x = torch.nn.functional.pad(x, (0, padded_k - size_k))                          # [M, padded_k], zeros
        y = gemm(x, weight, weight_scale, bias, size_n=padded_n, size_k=padded_k)       # [M, padded_n]
        return y[:, :size_n].contiguous().reshape(*input.shape[:-1], size_n)           # [..., N]

    apply.__name__ = apply.__qualname__ = fn
    apply.__doc__ = (f"output [..., size_n] = input [..., size_k] through a prepared {'MXFP8' if mx else 'FP8'} "
                     f"Marlin layer, on {getattr(gemm, '__module__', '')}.{getattr(gemm, '__name__', 'gemm')}.")
    return apply


apply_fp8_marlin_linear = apply_with(marlin_gemm)
apply_mxfp8_marlin_linear = apply_with(marlin_gemm, mx=True)
