"""MoE MXFP8 layer -> stacked per-expert Marlin tensors (spec §2.10 "MoE", §5).

Layout card
-----------
    w13  fp8 [E, 2n, k], w2 fp8 [E, k, n]: padded and repacked exactly as the FP8 MoE weights (§2.9 steps 1-2),
         with pn = round_up(n, 64) (marlin_moe_padded_intermediate(n, 32))
    w13_scale uint8 [E, 2n, k/32] --zero bytes per shard--> [E, 2pn, k/32]
    w2_scale  uint8 [E, k, n/32]  --zero bytes on the last dim--> [E, k, pn/32]
         (a zero byte means 2^-127; it becomes e8m0 byte 0, which the kernel reads as 0)
    per expert: bytes -> float (intermediate_dtype) -> ᵀ -> marlin_permute_scales(group 32) ->
         mxfp8_marlin_process_scales; stacked:
         w13_scales float8_e8m0fnu [E, k/32, 2pn]  (size_k = k, size_n = 2pn)
         w2_scales  float8_e8m0fnu [E, pn/32, k]   (size_k = pn, size_n = k)

    >>> w13 = np.full((1, 128, 128), 0x38, np.uint8); w2 = np.full((1, 128, 64), 0x38, np.uint8)
    >>> moe = prepare_mxfp8_moe_layer_for_marlin(w13, w2, np.full((1, 128, 4), 127, np.uint8),
    ...                                          np.full((1, 128, 2), 127, np.uint8))
    >>> moe.w13_scales.shape, moe.w2_scales.shape, moe.group_size
    ((1, 4, 128), (1, 2, 128), 32)

Biases are not part of vLLM's MXFP8 MoE prep (None in the result). Scale shapes must be exact: §2.10 gives
them as [E, 2n, k/32] and [E, k, n/32] (only the dense prep slices an over-allocated [>= N, >= K/32] grid).
"""

from __future__ import annotations

import numpy as np

from marlin_ref.errors import check_shape
from marlin_ref.formats import as_e8m0_codes
from marlin_ref.layout import MX_BLOCK
from marlin_ref.padding import marlin_moe_padded_intermediate
from marlin_ref.prepare_fp8_layer_for_marlin import repack_fp8_weight
from marlin_ref.prepare_fp8_moe_layer_for_marlin import (GATED_SHARDS, MarlinMoeLayer, check_moe_weights,
                                                         pad_shards)
from marlin_ref.prepare_mxfp8_layer_for_marlin import check_mx_size_k, mx_scales_to_marlin
from marlin_ref.scale_schemes import intermediate_float_dtype


def _check_scale(fn: str, name: str, s, shape: tuple, layout: str) -> np.ndarray:
    """Exactly [E, rows, K/32] e8m0 bytes: the MoE prep takes each expert's slice whole (§2.10 "MoE")."""
    return check_shape(fn, name, as_e8m0_codes(s, fn, name), shape, layout)


def prepare_mxfp8_moe_layer_for_marlin(w13, w2, w13_scale, w2_scale, *,
                                       intermediate_dtype="bfloat16") -> MarlinMoeLayer:
    """MoE MXFP8 prep; see the module card."""
    fn = "prepare_mxfp8_moe_layer_for_marlin"
    e, k, n = check_moe_weights(fn, w13, w2, MX_BLOCK)
    check_mx_size_k(fn, "hidden_size", k)
    pn = marlin_moe_padded_intermediate(n, MX_BLOCK)
    s13 = _check_scale(fn, "w13_scale", w13_scale, (e, 2 * n, k // MX_BLOCK), "[E, 2n, k/32]")
    s2 = _check_scale(fn, "w2_scale", w2_scale, (e, k, n // MX_BLOCK), "[E, k, n/32]")
    dtype = intermediate_float_dtype(fn, intermediate_dtype)

    w13_p = pad_shards(w13, GATED_SHARDS, n, pn, axis=1)                             # [E, 2pn, k]
    w2_p = pad_shards(w2, 1, n, pn, axis=2)                                          # [E, k, pn]
    s13_p = pad_shards(s13, GATED_SHARDS, n, pn, axis=1)                             # [E, 2pn, k/32]
    s2_p = pad_shards(s2, 1, n // MX_BLOCK, pn // MX_BLOCK, axis=2)                  # [E, k, pn/32]

    w13_q = np.stack([repack_fp8_weight(fn, w13_p[x], 2 * pn, k) for x in range(e)])   # [E, k/16, 8pn]
    w2_q = np.stack([repack_fp8_weight(fn, w2_p[x], k, pn) for x in range(e)])         # [E, pn/16, 4k]
    w13_s = np.stack([mx_scales_to_marlin(s13_p[x], k, 2 * pn, k, dtype) for x in range(e)])   # [E, k/32, 2pn]
    w2_s = np.stack([mx_scales_to_marlin(s2_p[x], pn, k, pn, dtype) for x in range(e)])        # [E, pn/32, k]
    return MarlinMoeLayer(w13_q, w2_q, w13_s, w2_s, None, None, e, k, n, pn, MX_BLOCK)
