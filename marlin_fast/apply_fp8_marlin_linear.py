"""The linear layer on a prepared Marlin layer, device-generic: pad K, GEMM with the bias inside, slice N (§2.11, §2.13).

    input [..., K] -> x [M, K] -> zero-padded [M, padded_k] -> marlin_gemm(...) [M, padded_n] -> [..., N]

(padded_n, padded_k) come from the weight's shape (marlin_repacked_nk); the bias is the prepared one (kernel
order, added inside the GEMM). `apply_with(gemm)` builds the same layer on any GEMM of the contract's signature:
marlin_fast.cuda uses it with the CUDA kernel, the marlin-ops adapter with a library's kernel.
"""

from __future__ import annotations

from typing import Callable

import torch

from .errors import check_dtype, check_positive, check_rank, check_shape, check_tensor
from .formats import as_activation_dtype
from .marlin_gemm import marlin_gemm

FP8_NUM_BITS = 8
FP8_GROUP, MX_BLOCK, TILE_K, TILE_N = 128, 32, 16, 64     # §4.2, §2.10, §2.3
MX_SCALE_DTYPES = (torch.float8_e8m0fnu, torch.uint8)


def _check(fn: str, input, weight, weight_scale, size_n, size_k, bias, mx: bool) -> tuple[int, int]:
    """(padded_n, padded_k) once every argument is valid; each message names this function and the argument."""
    size_n, size_k = check_positive(fn, "size_n", size_n), check_positive(fn, "size_k", size_k)
    check_tensor(fn, "input", input)
    if mx and input.dtype != torch.bfloat16:
        raise TypeError(f"{fn}: input must be bfloat16 (the MXFP8 kernels are bf16 only, §4.2), got {input.dtype}")
    dtype = as_activation_dtype(input.dtype, fn, "input.dtype")
    if input.dim() < 1 or input.shape[-1] != size_k:
        raise ValueError(f"{fn}: input must be [..., size_k={size_k}], got shape {tuple(input.shape)}")
    check_rank(fn, "weight", check_dtype(fn, "weight", weight, [torch.int32]), 2)
    rows, cols = weight.shape                                        # [padded_k/16, 4·padded_n]
    if cols % 4 or (cols // 4) % TILE_N:
        raise ValueError(f"{fn}: weight must be [padded_k/16, 4·padded_n] with padded_n % 64 == 0, "
                         f"got {tuple(weight.shape)}")
    padded_k, padded_n = rows * TILE_K, cols // 4
    if size_k > padded_k or size_n > padded_n:
        raise ValueError(f"{fn}: size_k={size_k}, size_n={size_n} must not exceed the weight's padded "
                         f"(K, N) = ({padded_k}, {padded_n})")
    check_tensor(fn, "weight_scale", weight_scale)
    if mx:
        check_dtype(fn, "weight_scale", weight_scale, MX_SCALE_DTYPES)
        check_shape(fn, "weight_scale", weight_scale, (padded_k // MX_BLOCK, padded_n), "[padded_k/32, padded_n]")
    elif weight_scale.dtype in MX_SCALE_DTYPES:
        raise TypeError(f"{fn}: weight_scale must be fused 16-bit scales, got {weight_scale.dtype} "
                        f"(e8m0 scales: apply_mxfp8_marlin_linear)")
    else:
        check_dtype(fn, "weight_scale", weight_scale, [dtype])
        groups = (1, padded_k // FP8_GROUP) if padded_k % FP8_GROUP == 0 else (1,)
        if weight_scale.dim() != 2 or weight_scale.shape[0] not in groups or weight_scale.shape[1] != padded_n:
            raise ValueError(f"{fn}: weight_scale must be [G, padded_n={padded_n}] with G in {list(groups)} "
                             f"(channel-wise or group 128), got {tuple(weight_scale.shape)}")
    if bias is not None:
        check_shape(fn, "bias", check_dtype(fn, "bias", bias, [dtype]), (padded_n,), "[padded_n], kernel order")
    return padded_n, padded_k


def apply_with(gemm: Callable, *, mx: bool = False) -> Callable:
    """The linear layer on `gemm` (a function of marlin_gemm's signature): apply_fp8_marlin_linear, or with
    mx=True apply_mxfp8_marlin_linear."""
    fn = "apply_mxfp8_marlin_linear" if mx else "apply_fp8_marlin_linear"

    def apply(input: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, *, size_n: int, size_k: int,
              bias: torch.Tensor | None = None) -> torch.Tensor:
        padded_n, padded_k = _check(fn, input, weight, weight_scale, size_n, size_k, bias, mx)
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
