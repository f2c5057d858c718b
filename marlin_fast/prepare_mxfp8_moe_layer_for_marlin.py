"""MoE MXFP8 weight preparation for the Marlin MoE GEMM (spec §2.10, MoE part; bf16 activations only).

    w13 e4m3fn[E, 2n, k], w13_scale e8m0 bytes [E, 2n, k/32]  -> w13_qweight int32[E, k/16, 8·padded_n],
                                                                 w13_scales e8m0[E, k/32, 2·padded_n]
    w2  e4m3fn[E, k, n],  w2_scale  e8m0 bytes [E, k, n/32]   -> w2_qweight  int32[E, padded_n/16, 4k],
                                                                 w2_scales  e8m0[E, padded_n/32, k]

n is padded to padded_n = marlin_moe_padded_intermediate(n, 32), a multiple of 64: weights and the raw
scale bytes, per shard for w13 (the zero byte means 2^-127; the kernel reads it as 0). Per expert:
bytes -> intermediate_dtype -> transpose -> grouped permutation (group 32) -> quad reorder -> e8m0.
Rules: hidden_size % 128 (§5), n % 32; the scales must be exactly [E, 2n, k/32] and [E, k, n/32] (§2.10;
unlike the dense prep, nothing is sliced off an over-allocated grid).

    >>> E, n, k = 1, 32, 128                                           # n = 32 pads to 64
    >>> w13, w2 = torch.zeros(E, 2 * n, k, dtype=torch.uint8), torch.zeros(E, k, n, dtype=torch.uint8)
    >>> s13 = torch.full((E, 2 * n, k // 32), 127, dtype=torch.uint8)    # every scale 2^0
    >>> s2 = torch.full((E, k, n // 32), 127, dtype=torch.uint8)
    >>> m = prepare_mxfp8_moe_layer_for_marlin(w13, w2, s13, s2)
    >>> m.padded_intermediate, tuple(m.w13_scales.shape), tuple(m.w2_scales.shape)
    (64, (1, 4, 128), (1, 2, 128))
"""

from __future__ import annotations

import torch

from .mxfp8_marlin_process_scales import mxfp8_marlin_process_scales
from .padding import marlin_moe_padded_intermediate, zero_pad
from .prepare_fp8_moe_layer_for_marlin import (GATED_SHARDS, MarlinMoeLayer, check_moe_weights, pad_shards,
                                               permute_expert_scales, repack_experts)
from .errors import check_shape
from .formats import as_float_dtype, e8m0_codes
from .prepare_mxfp8_layer_for_marlin import MX_BLOCK
from .scale_schemes import mxfp8_scales_to_float


def _experts_to_marlin_scales(codes: torch.Tensor, size_k: int, intermediate_dtype) -> torch.Tensor:
    """e8m0 bytes [E, N, K/32] -> e8m0 [E, K/32, N]: decode, transpose, permute (group 32), reorder."""
    experts, size_n, groups = codes.shape
    s = mxfp8_scales_to_float(codes, intermediate_dtype=intermediate_dtype).transpose(1, 2)  # [E, K/32, N]
    s = permute_expert_scales(s.contiguous(), size_k, MX_BLOCK)
    return mxfp8_marlin_process_scales(s.reshape(experts * groups, size_n)).view(experts, groups, size_n)


def _exact_mx_scales(fn: str, name: str, scale, shape: tuple, layout: str) -> torch.Tensor:
    """e8m0 bytes of exactly `shape`: §2.10 gives the MoE scales as [E, 2n, k/32] and [E, k, n/32], and the
    prep takes each expert's slice whole (only the dense prep trims an over-allocated grid)."""
    return check_shape(fn, name, e8m0_codes(scale, fn, name), shape, layout)


def prepare_mxfp8_moe_layer_for_marlin(w13, w2, w13_scale, w2_scale, *,
                                       intermediate_dtype="bfloat16") -> MarlinMoeLayer:
    """MXFP8 MoE checkpoint tensors -> MarlinMoeLayer with e8m0 scales (spec §2.10)."""
    fn = "prepare_mxfp8_moe_layer_for_marlin"
    codes13, codes2, experts, k, n = check_moe_weights(fn, w13, w2, MX_BLOCK)  # k % 128, n % 32
    padded_n = marlin_moe_padded_intermediate(n, MX_BLOCK)
    s13 = _exact_mx_scales(fn, "w13_scale", w13_scale, (experts, GATED_SHARDS * n, k // MX_BLOCK), "[E, 2n, k/32]")
    s2 = _exact_mx_scales(fn, "w2_scale", w2_scale, (experts, k, n // MX_BLOCK), "[E, k, n/32]")
    dtype = as_float_dtype(intermediate_dtype, fn, "intermediate_dtype")
    w13_q = repack_experts(fn, pad_shards(codes13, 1, GATED_SHARDS, n, padded_n))     # [E, k/16, 4·2·padded_n]
    w2_q = repack_experts(fn, zero_pad(codes2, (0, padded_n - n)))                    # [E, padded_n/16, 4k]
    s13 = pad_shards(s13, 1, GATED_SHARDS, n, padded_n)                               # [E, 2·padded_n, k/32]
    s2 = zero_pad(s2, (0, (padded_n - n) // MX_BLOCK))                                # [E, k, padded_n/32]
    return MarlinMoeLayer(w13_q, w2_q,
                          _experts_to_marlin_scales(s13, k, dtype),
                          _experts_to_marlin_scales(s2, padded_n, dtype),
                          None, None, experts, k, n, padded_n, MX_BLOCK)
