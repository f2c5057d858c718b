"""The linear layer vLLM runs on a prepared Marlin layer: pad K, GEMM with the bias inside, slice N (spec §2.11, §2.13).

Layout card
-----------
    input       [..., K] fp16 / bf16 (MXFP8: bf16)               K = size_k, the layer's logical input features
    weight      int32 [padded_k/16, 4·padded_n]                   the prepared Marlin weight (prepare_*_for_marlin)
    weight_scale  [G, padded_n] fused 16-bit, or e8m0 (MXFP8)     the prepared scales
    bias        [padded_n] in the input's dtype, single-permuted  the prepared bias (kernel order), or None
    output      [..., N] in the input's dtype                     N = size_n

    x = input.reshape(-1, K)                                      # [M, K]
    x = pad(x, K -> padded_k) with zeros                          # padded weights and scales are 0 too (§2.11)
    y = marlin_gemm(x, weight, weight_scale, bias, size_n=padded_n, size_k=padded_k)   # the bias inside (§3.2)
    output = y[:, :N].reshape(*input.shape[:-1], N)

(padded_n, padded_k) come from the weight's shape (marlin_repacked_nk). `apply_mxfp8_marlin_linear` is the same
with e8m0 scales and bf16 activations (§2.10).

    >>> from marlin_ref.prepare_fp8_layer_for_marlin import prepare_fp8_layer_for_marlin
    >>> w = np.zeros((96, 100), np.uint8); w[5, 3] = 0x40              # checkpoint [N=96, K=100]: W[k=3, n=5] = 2
    >>> bias = np.arange(96).astype(np.float16)
    >>> layer = prepare_fp8_layer_for_marlin(w, np.float32(0.5), orig_dtype="fp16", size_k_first=False, bias=bias)
    >>> layer.padded_k, layer.padded_n                                 # (K, N) padded to a kernel shape (§2.11)
    (128, 128)
    >>> x = np.zeros((2, 1, 100), np.float16); x[..., 3] = 1           # [2, 1, K]: input feature 3 only
    >>> y = apply_fp8_marlin_linear(x, layer.qweight, layer.scales, size_n=96, size_k=100, bias=layer.bias)
    >>> y.shape, float(y[0, 0, 5]), float(y[1, 0, 7])                  # 2·0.5 + bias 5; bias 7
    ((2, 1, 96), 6.0, 7.0)
"""

from __future__ import annotations

import numpy as np

from marlin_ref.errors import check_array, check_dtype, check_positive, check_rank, check_shape
from marlin_ref.formats import BF16, E8M0, as_activation_dtype
from marlin_ref.layout import MX_BLOCK, TILE_K, TILE_N
from marlin_ref.marlin_gemm import marlin_gemm_reference

FP8_NUM_BITS = 8
FP8_GROUP = 128                     # the grouped FP8 kernel's group (§4.2)
MX_SCALE_DTYPES = (E8M0, np.dtype(np.uint8))


def _check(fn: str, input, weight, weight_scale, size_n, size_k, bias, mx: bool) -> tuple[int, int]:
    """(padded_n, padded_k) once every argument is valid; each message names this function and the argument."""
    size_n, size_k = check_positive(fn, "size_n", size_n), check_positive(fn, "size_k", size_k)
    check_array(fn, "input", input)
    if mx and input.dtype != BF16:
        raise TypeError(f"{fn}: input must be bfloat16 (the MXFP8 kernels are bf16 only, §4.2), got {input.dtype.name}")
    dtype = as_activation_dtype(input.dtype, fn, "input.dtype")
    if input.ndim < 1 or input.shape[-1] != size_k:
        raise ValueError(f"{fn}: input must be [..., size_k={size_k}], got shape {input.shape}")
    check_rank(fn, "weight", check_dtype(fn, "weight", weight, [np.int32]), 2)
    rows, cols = weight.shape                                        # [padded_k/16, 4·padded_n]
    if cols % 4 or (cols // 4) % TILE_N:
        raise ValueError(f"{fn}: weight must be [padded_k/16, 4·padded_n] with padded_n % 64 == 0, got {weight.shape}")
    padded_k, padded_n = rows * TILE_K, cols // 4
    if size_k > padded_k or size_n > padded_n:
        raise ValueError(f"{fn}: size_k={size_k}, size_n={size_n} must not exceed the weight's padded "
                         f"(K, N) = ({padded_k}, {padded_n})")
    check_array(fn, "weight_scale", weight_scale)
    if mx:
        check_dtype(fn, "weight_scale", weight_scale, MX_SCALE_DTYPES)
        check_shape(fn, "weight_scale", weight_scale, (padded_k // MX_BLOCK, padded_n), "[padded_k/32, padded_n]")
    elif weight_scale.dtype in MX_SCALE_DTYPES:
        raise TypeError(f"{fn}: weight_scale must be fused 16-bit scales, got {weight_scale.dtype.name} "
                        f"(e8m0 scales: apply_mxfp8_marlin_linear)")
    else:
        check_dtype(fn, "weight_scale", weight_scale, [dtype])
        groups = (1, padded_k // FP8_GROUP) if padded_k % FP8_GROUP == 0 else (1,)
        if weight_scale.ndim != 2 or weight_scale.shape[0] not in groups or weight_scale.shape[1] != padded_n:
            raise ValueError(f"{fn}: weight_scale must be [G, padded_n={padded_n}] with G in {list(groups)} "
                             f"(channel-wise or group 128), got {weight_scale.shape}")
    if bias is not None:
        check_shape(fn, "bias", check_dtype(fn, "bias", bias, [dtype]), (padded_n,), "[padded_n], kernel order")
    return padded_n, padded_k


def _apply(input, weight, weight_scale, bias, size_n, size_k, padded_n, padded_k) -> np.ndarray:
    x = input.reshape(-1, size_k)                                                   # [M, K]
    x = np.pad(x, ((0, 0), (0, padded_k - size_k)))                                # [M, padded_k], zeros
    y = marlin_gemm_reference(x, weight, weight_scale, bias, size_n=padded_n, size_k=padded_k)   # [M, padded_n]
    return np.ascontiguousarray(y[:, :size_n]).reshape(*input.shape[:-1], size_n)   # [..., N]


def apply_fp8_marlin_linear(input, weight, weight_scale, *, size_n, size_k, bias=None) -> np.ndarray:
    """output [..., size_n] = input [..., size_k] through a prepared FP8 Marlin layer (the layout card)."""
    padded = _check("apply_fp8_marlin_linear", input, weight, weight_scale, size_n, size_k, bias, mx=False)
    return _apply(input, weight, weight_scale, bias, size_n, size_k, *padded)


def apply_mxfp8_marlin_linear(input, weight, weight_scale, *, size_n, size_k, bias=None) -> np.ndarray:
    """output [..., size_n] = input [..., size_k] through a prepared MXFP8 Marlin layer: e8m0 scales (uint8 codes
    accepted), bf16 activations only (§4.2)."""
    padded = _check("apply_mxfp8_marlin_linear", input, weight, weight_scale, size_n, size_k, bias, mx=True)
    return _apply(input, weight, weight_scale.view(E8M0), bias, size_n, size_k, *padded)
