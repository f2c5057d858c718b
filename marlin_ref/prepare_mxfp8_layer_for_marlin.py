"""Dense MXFP8 layer -> Marlin tensors, as vLLM's prepare_mxfp8_layer_for_marlin does (spec §2.10, §2.11).

Layout card
-----------
    weight  fp8 [N, K] (always N-major) -> exactly the FP8 weight pipeline (§2.8 step 3):
            qweight int32 [padded_k/16, 4·padded_n]
    scales  uint8 e8m0 [>= N, >= K/32], sliced to [:N, :K/32]
            --bytes -> float in intermediate_dtype (vLLM: torch.get_default_dtype(), §2.10 hazard)--> [N, K/32]
            --ᵀ--> [K/32, N] --zero-pad--> [padded_k/32, padded_n]
            --marlin_permute_scales(group 32; grouped since 32 < padded_k) (§2.4)--> --mxfp8_marlin_process_scales
            ([0,2,1,3] per quadruple, cast to e8m0) (§2.7)--> scales float8_e8m0fnu [padded_k/32, padded_n]
    bias    [N] -> bfloat16 (the only MXFP8 activation dtype, §4.2), zero-pad, marlin_permute_bias (§2.5)
    No exponent-bias fusion: the MXFP8 kernel multiplies by 2^120 itself (§3.1).

    >>> w = np.full((64, 128), 0x38, np.uint8)                      # [N, K]
    >>> s = np.full((64, 4), 127, np.uint8)                         # 2^0 everywhere
    >>> layer = prepare_mxfp8_layer_for_marlin(w, s)
    >>> layer.qweight.shape, layer.scales.shape, layer.scales.dtype.name, int(layer.scales.view(np.uint8)[0, 0])
    ((8, 256), (4, 64), 'float8_e8m0fnu', 127)

`intermediate_dtype="bfloat16"` is the explicit stand-in for torch.get_default_dtype(); "float32" is also
exact, "float16" reproduces the corruption of extreme exponents (bytes < 103 -> 0, bytes > 142 -> 255).
"""

from __future__ import annotations

import numpy as np

from marlin_ref.errors import check_multiple, check_shape
from marlin_ref.formats import BF16, as_e8m0_codes
from marlin_ref.layout import MX_BLOCK
from marlin_ref.marlin_permute_scales import marlin_permute_scales
from marlin_ref.mxfp8_marlin_process_scales import mxfp8_marlin_process_scales
from marlin_ref.padding import marlin_pad_scales, marlin_padded_nk
from marlin_ref.prepare_fp8_layer_for_marlin import (MarlinLayer, check_fp8_weight, prepare_bias,
                                                     repack_fp8_weight)
from marlin_ref.scale_schemes import e8m0_bytes_to_float, intermediate_float_dtype

MXFP8_ACTIVATION_DTYPE = BF16   # MXFP8 Marlin kernels exist for bf16 activations only (§4.2)


def check_mx_size_k(fn: str, name: str, size_k: int, why: str = "") -> None:
    check_multiple(fn, name, size_k, MX_BLOCK,
                   f"one e8m0 scale per {MX_BLOCK} weights along K" + (f"; {why}" if why else ""))


def mx_scales_to_marlin(scale_nk: np.ndarray, size_k: int, padded_n: int, padded_k: int,
                        intermediate_dtype: np.dtype) -> np.ndarray:
    """uint8 [N', K/32] (N' <= padded_n) -> e8m0 [padded_k/32, padded_n] (§2.10 step 2)."""
    size_n = scale_nk.shape[0]
    s = e8m0_bytes_to_float(scale_nk, intermediate_dtype).T                         # [K/32, N]
    s = marlin_pad_scales(s, size_n, size_k, padded_n, padded_k, MX_BLOCK)            # [pk/32, pn]
    s = marlin_permute_scales(s, padded_k, padded_n, MX_BLOCK)
    return mxfp8_marlin_process_scales(s)


def prepare_mxfp8_layer_for_marlin(weight, weight_scale, *, bias=None,
                                   intermediate_dtype="bfloat16") -> MarlinLayer:
    """Dense MXFP8 prep (§2.10 steps 1-3); see the module card."""
    fn = "prepare_mxfp8_layer_for_marlin"
    check_fp8_weight(fn, "weight", weight, 2)
    size_n, size_k = weight.shape                                                    # [N, K]
    check_mx_size_k(fn, "size_k", size_k, f"weight has shape {weight.shape}")
    codes = as_e8m0_codes(weight_scale, fn, "weight_scale")
    groups = size_k // MX_BLOCK
    if codes.ndim != 2 or codes.shape[0] < size_n or codes.shape[1] < groups:
        raise ValueError(f"{fn}: weight_scale must be 2-D with at least [N, K/32] = {(size_n, groups)}, "
                         f"got {weight_scale.shape}")
    dtype = intermediate_float_dtype(fn, intermediate_dtype)
    if bias is not None:
        check_shape(fn, "bias", bias, (size_n,), f"[size_n={size_n}]")
    padded_n, padded_k = marlin_padded_nk(size_n, size_k, MX_BLOCK)
    qweight = repack_fp8_weight(fn, weight, padded_n, padded_k)
    scales = mx_scales_to_marlin(codes[:size_n, :groups], size_k, padded_n, padded_k, dtype)   # sliced, §2.10
    out_bias = None if bias is None else prepare_bias(fn, bias, size_n, padded_n, MXFP8_ACTIVATION_DTYPE)
    return MarlinLayer(qweight, scales, out_bias, size_k, size_n, padded_k, padded_n, MX_BLOCK)
