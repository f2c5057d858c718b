"""MoE FP8 layer -> stacked per-expert Marlin tensors, as vLLM's newest prep does (spec §2.9, §5).

Layout card
-----------
    E experts, hidden size k, intermediate size n, pn = marlin_moe_padded_intermediate(n, group) (§2.9 step 1)
    w13  fp8 [E, 2n, k]  (rows 0..n-1 gate "w1", rows n..2n-1 up "w3")
         --view [E, 2, n, k], zero-pad each shard to pn rows--> [E, 2pn, k]
         --per expert: pack (N-major), ᵀ, repack(size_k=k, size_n=2pn)--> w13_qweight int32 [E, k/16, 8pn]
    w2   fp8 [E, k, n]   --zero-pad last dim--> [E, k, pn] --per expert repack(size_k=pn, size_n=k)-->
         w2_qweight int32 [E, pn/16, 4k]
    scales  convert_fp8_moe_scales (§2.9 step 3): w13 with size_n = 2n, size_k = k; w2 with size_n = k,
            size_k = n -> [E, G, size_n]; w13 viewed [E, G, 2, n], each shard zero-padded to pn -> [E, G, 2pn];
            w2 gets (pn - n)/group_size zero rows when grouped; per expert marlin_permute_scales
            (w13: size_k = k, size_n = 2pn; w2: size_k = pn, size_n = k), then ×2^β (§2.6)
    bias    w13_bias [E, 2n] padded per shard to [E, 2pn]; w2_bias [E, k]; each cast to orig_dtype and
            single-permuted per expert (§2.5; the older prep of §2.9 item 6 did the same)

    >>> w13 = np.full((2, 2 * 64, 128), 0x38, np.uint8); w2 = np.full((2, 128, 64), 0x38, np.uint8)
    >>> s = np.array([0.5, 0.25], np.float32)                  # per-expert tensor-wise
    >>> moe = prepare_fp8_moe_layer_for_marlin(w13, w2, s, s, orig_dtype="bf16")
    >>> moe.w13_qweight.shape, moe.w2_qweight.shape, moe.w13_scales.shape, moe.w2_scales.shape
    ((2, 8, 512), (2, 4, 512), (2, 1, 128), (2, 1, 128))

Decisions: only the gated layout (two shards) is modelled. hidden_size must be a multiple of 128 (vLLM's
check_moe_marlin_supports_config). Block FP8 needs n % block_k == 0 (the padded w2 scale rows must be
whole groups), n % block_n == 0 (otherwise the fused gate|up block grid does not line up with the 2n
columns, §6.1 item 11) and the FP8 kernel's group rule (block_k 128 whenever there are several groups,
§4.2, §6.1 item 18).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from marlin_ref.errors import check_array
from marlin_ref.formats import as_activation_dtype
from marlin_ref.fp8_fused_exponent_bias_into_scales import fp8_fused_exponent_bias_into_scales
from marlin_ref.marlin_permute_scales import marlin_permute_scales
from marlin_ref.padding import marlin_moe_padded_intermediate
from marlin_ref.prepare_fp8_layer_for_marlin import (check_fp8_kernel_group, check_fp8_weight, permutation_group,
                                                     prepare_bias, repack_fp8_weight)
from marlin_ref.scale_schemes import check_block_size, fp8_moe_scale_grid

MOE_HIDDEN_ALIGN = 128     # check_moe_marlin_supports_config: hidden_size % 128 == 0
GATED_SHARDS = 2           # w13 = [gate | up]


class MarlinMoeLayer(NamedTuple):
    w13_qweight: np.ndarray        # int32 [E, k/16, 8·pn]
    w2_qweight: np.ndarray         # int32 [E, pn/16, 4k]
    w13_scales: np.ndarray         # [E, G13, 2·pn]
    w2_scales: np.ndarray          # [E, G2, k]
    w13_bias: np.ndarray | None    # [E, 2·pn], single-permuted
    w2_bias: np.ndarray | None     # [E, k], single-permuted
    num_experts: int
    hidden_size: int               # k
    intermediate_size: int         # n (unpadded)
    padded_intermediate: int       # pn
    group_size: int                # -1, block_k, or 32 (MXFP8)


def check_moe_weights(fn: str, w13, w2, group_size: int) -> tuple[int, int, int]:
    """(E, k, n) from w13 [E, 2n, k] and w2 [E, k, n]; hidden size and group rules of the MoE kernel."""
    check_fp8_weight(fn, "w13", w13, 3)
    check_fp8_weight(fn, "w2", w2, 3)
    e, two_n, k = w13.shape
    if two_n % GATED_SHARDS != 0 or w2.shape != (e, k, two_n // GATED_SHARDS):
        raise ValueError(f"{fn}: w13 must be [E, 2n, k] and w2 [E, k, n] with the same E, n, k, got "
                         f"{w13.shape} and {w2.shape}")
    n = two_n // GATED_SHARDS
    if k % MOE_HIDDEN_ALIGN != 0:
        raise ValueError(f"{fn}: hidden_size={k} must be a multiple of {MOE_HIDDEN_ALIGN} "
                         f"(check_moe_marlin_supports_config, spec §5)")
    if group_size > 0 and n % group_size != 0:
        raise ValueError(f"{fn}: intermediate_size={n} must be a multiple of group_size={group_size} "
                         f"(padding adds whole groups, spec §2.9 step 4)")
    return e, k, n


def pad_shards(x: np.ndarray, shards: int, n: int, padded_n: int, axis: int) -> np.ndarray:
    """Zero-pad each of `shards` consecutive n-long pieces of `axis` to padded_n (per shard, §6.1 item 13)."""
    x = np.moveaxis(x, axis, -1)                                       # [..., shards·n]
    split = x.reshape(x.shape[:-1] + (shards, n))                      # [..., shards, n]
    out = np.zeros(split.shape[:-1] + (padded_n,), dtype=x.dtype)      # [..., shards, pn]
    out[..., :n] = split
    out = out.reshape(x.shape[:-1] + (shards * padded_n,))              # [..., shards·pn]
    return np.moveaxis(out, -1, axis)


def prepare_fp8_moe_layer_for_marlin(w13, w2, w13_scale, w2_scale, *, orig_dtype, weight_block_size=None,
                                     w13_bias=None, w2_bias=None) -> MarlinMoeLayer:
    """MoE FP8 prep (§2.9 steps 1-5 with padding); see the module card."""
    fn = "prepare_fp8_moe_layer_for_marlin"
    dtype = as_activation_dtype(orig_dtype, fn, "orig_dtype")
    group_size = -1
    if weight_block_size is not None:
        block_n, group_size = check_block_size(fn, weight_block_size)
    e, k, n = check_moe_weights(fn, w13, w2, group_size)
    if weight_block_size is not None and n % block_n != 0:
        raise ValueError(f"{fn}: intermediate_size={n} must be a multiple of block_n={block_n} so the "
                         f"fused gate|up block grid lines up with the 2n columns (spec §6.1 item 11)")
    biases = (("w13_bias", w13_bias, "[E, 2n]", (e, 2 * n)), ("w2_bias", w2_bias, "[E, k]", (e, k)))
    for name, b, layout, shape in biases:
        if b is not None and check_array(fn, name, b).shape != shape:
            raise ValueError(f"{fn}: {name} must have shape {layout} = {shape}, got {b.shape}")
    pn = marlin_moe_padded_intermediate(n, group_size)
    check_fp8_kernel_group(fn, group_size, k)
    check_fp8_kernel_group(fn, group_size, pn)

    w13_p = pad_shards(w13, GATED_SHARDS, n, pn, axis=1)                           # [E, 2pn, k]
    w2_p = pad_shards(w2, 1, n, pn, axis=2)                                        # [E, k, pn]
    w13_q = np.stack([repack_fp8_weight(fn, w13_p[x], 2 * pn, k) for x in range(e)])   # [E, k/16, 8pn]
    w2_q = np.stack([repack_fp8_weight(fn, w2_p[x], k, pn) for x in range(e)])         # [E, pn/16, 4k]

    s13 = fp8_moe_scale_grid(fn, "w13_scale", w13_scale, num_experts=e, size_n=2 * n, size_k=k, dtype=dtype,
                             weight_block_size=weight_block_size)                  # [E, G13, 2n]
    s2 = fp8_moe_scale_grid(fn, "w2_scale", w2_scale, num_experts=e, size_n=k, size_k=n, dtype=dtype,
                            weight_block_size=weight_block_size)                   # [E, G2, k]
    s13 = pad_shards(s13, GATED_SHARDS, n, pn, axis=2)                             # [E, G13, 2pn]
    if group_size > 0:
        extra = np.zeros((e, (pn - n) // group_size, k), dtype=s2.dtype)
        s2 = np.concatenate([s2, extra], axis=1)                                   # [E, pn/bk, k]
    g13, g2 = permutation_group(group_size, k), permutation_group(group_size, pn)
    s13 = np.stack([marlin_permute_scales(s13[x], k, 2 * pn, g13) for x in range(e)])
    s2 = np.stack([marlin_permute_scales(s2[x], pn, k, g2) for x in range(e)])

    b13 = b2 = None
    if w13_bias is not None:
        padded = pad_shards(w13_bias, GATED_SHARDS, n, pn, axis=1)                 # [E, 2pn]
        b13 = prepare_bias(fn, padded, 2 * pn, 2 * pn, dtype, "w13_bias")
    if w2_bias is not None:
        b2 = prepare_bias(fn, w2_bias, k, k, dtype, "w2_bias")
    return MarlinMoeLayer(w13_q, w2_q, fp8_fused_exponent_bias_into_scales(s13),
                          fp8_fused_exponent_bias_into_scales(s2), b13, b2, e, k, n, pn, group_size)
