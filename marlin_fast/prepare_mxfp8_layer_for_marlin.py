"""Dense MXFP8 weight preparation for the Marlin GEMM (spec §2.10; bf16 activations only in vLLM).

    weight       e4m3fn[N, K] (always N-major)        -> qweight int32[padded_k/16, 4·padded_n]
    weight_scale e8m0 bytes [>= N, >= K/32] (sliced)   -> scales  float8_e8m0fnu[padded_k/32, padded_n]
    bias [N] (optional)                                -> bias    bf16[padded_n], zero-padded, single-permuted

Scales: bytes -> float in `intermediate_dtype` (vLLM: torch.get_default_dtype(); explicit here, so
the fp16 hazard of §2.10 can be reproduced) -> transpose to [K/32, N] -> zero-pad -> grouped
permutation (group 32 < padded_k) -> [0, 2, 1, 3] quad reorder and cast to e8m0
(mxfp8_marlin_process_scales). No exponent-bias fusion: the MX dequant multiplies 2^120 itself.
Padded scale entries are 0.0 -> byte 0, which the kernel reads as 0.

    >>> w = torch.zeros(64, 128, dtype=torch.uint8)                   # [N, K]
    >>> s = torch.full((64, 4), 127, dtype=torch.uint8)               # every block scale 2^0
    >>> layer = prepare_mxfp8_layer_for_marlin(w, s)
    >>> layer.scales.dtype, tuple(layer.scales.shape), layer.scales.view(torch.uint8).unique().tolist()
    (torch.float8_e8m0fnu, (4, 64), [127])
"""

from __future__ import annotations

import torch

from .errors import check_multiple
from .formats import as_float_dtype, e8m0_codes
from .marlin_permute_scales import marlin_permute_scales
from .mxfp8_marlin_process_scales import mxfp8_marlin_process_scales
from .padding import marlin_pad_scales, marlin_padded_nk
from .prepare_fp8_layer_for_marlin import MarlinLayer, check_fp8_weight, fp8_weight_to_marlin, prepare_bias
from .scale_schemes import mxfp8_scales_to_float

MX_BLOCK = 32  # OCP MX: one e8m0 scale per 32 consecutive k
MXFP8_ACTIVATION_DTYPE = torch.bfloat16  # MXFP8 Marlin kernels exist for bf16 activations only (§4.2)


def slice_mx_scales(fn: str, name: str, scale, rows: int, blocks: int) -> torch.Tensor:
    """The leading [rows, blocks] corner of a 2-D e8m0 byte tensor (dense checkpoints may over-allocate, §2.10)."""
    codes = e8m0_codes(scale, fn, name)
    if codes.dim() != 2 or codes.shape[0] < rows or codes.shape[1] < blocks:
        raise ValueError(f"{fn}: {name} must be 2-D with at least [N, K/32] = {(rows, blocks)}, "
                         f"got shape {tuple(codes.shape)}")
    return codes[:rows, :blocks]


def prepare_mxfp8_layer_for_marlin(weight: torch.Tensor, weight_scale: torch.Tensor, *, bias=None,
                                   intermediate_dtype="bfloat16") -> MarlinLayer:
    """MXFP8 checkpoint tensors -> MarlinLayer with e8m0 scales (spec §2.10, dense)."""
    fn = "prepare_mxfp8_layer_for_marlin"
    size_n, size_k = check_fp8_weight(fn, "weight", weight, 2).shape
    check_multiple(fn, "size_k", size_k, MX_BLOCK, f"one e8m0 scale per {MX_BLOCK} weights along K; weight has "
                                                   f"shape {tuple(weight.shape)}")
    codes = slice_mx_scales(fn, "weight_scale", weight_scale, size_n, size_k // MX_BLOCK)  # [N, K/32]
    dtype = as_float_dtype(intermediate_dtype, fn, "intermediate_dtype")
    padded_n, padded_k = marlin_padded_nk(size_n, size_k, MX_BLOCK)
    qweight = fp8_weight_to_marlin(fn, weight, size_k_first=False, padded_n=padded_n, padded_k=padded_k)
    scales = mxfp8_scales_to_float(codes, intermediate_dtype=dtype).T  # [K/32, N]
    scales = marlin_pad_scales(scales, size_n, size_k, padded_n, padded_k, MX_BLOCK)  # [padded_k/32, padded_n]
    scales = marlin_permute_scales(scales, padded_k, padded_n, MX_BLOCK)
    scales = mxfp8_marlin_process_scales(scales)
    return MarlinLayer(qweight, scales, prepare_bias(fn, bias, size_n, padded_n, MXFP8_ACTIVATION_DTYPE),
                       size_k, size_n, padded_k, padded_n, MX_BLOCK)
