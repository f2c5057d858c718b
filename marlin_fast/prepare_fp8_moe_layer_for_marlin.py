"""MoE FP8 weight preparation for the Marlin MoE GEMM, newest vLLM with tile padding (spec §2.9, §5).

    w13 e4m3fn[E, 2n, k] (gate rows 0..n-1 | up rows n..2n-1; only the gated layout is modelled)
    w2  e4m3fn[E, k, n]
    ->  w13_qweight int32[E, k/16, 4·2·padded_n]     w2_qweight int32[E, padded_n/16, 4k]
        w13_scales  [E, G13, 2·padded_n]             w2_scales  [E, padded_n/group (or 1), k]
        w13_bias    [E, 2·padded_n] (optional)        w2_bias    [E, k] (optional), single-permuted

padded_n = marlin_moe_padded_intermediate(n, group_size). Padding is per shard: each of gate and up
grows from n to padded_n rows (§6.1 item 13), never at the end of the fused 2n. Each expert is the
dense format on its own (§5), so weights and scales are repacked and permuted expert by expert.
Shape rules beyond vLLM's prep (from its support check and §6.1 item 11): hidden_size % 128,
n % block_k and n % block_n for block FP8, and the FP8 kernel group rule (one group or group 128,
§4.2). Biases are cast to orig_dtype.

    >>> E, n, k = 2, 64, 128
    >>> w13 = torch.zeros(E, 2 * n, k, dtype=torch.uint8); w2 = torch.zeros(E, k, n, dtype=torch.uint8)
    >>> m = prepare_fp8_moe_layer_for_marlin(w13, w2, torch.ones(E), torch.ones(E), orig_dtype="bfloat16")
    >>> m.w13_qweight.shape, m.w2_qweight.shape, m.w13_scales.shape, m.w2_scales.shape
    (torch.Size([2, 8, 512]), torch.Size([2, 4, 512]), torch.Size([2, 1, 128]), torch.Size([2, 1, 128]))
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .errors import check_dtype, check_multiple, check_shape
from .formats import as_activation_dtype
from .fp8_fused_exponent_bias_into_scales import fp8_fused_exponent_bias_into_scales
from .marlin_permute_bias import marlin_permute_bias
from .marlin_permute_scales import marlin_permute_scales
from .padding import marlin_moe_padded_intermediate, zero_pad
from .prepare_fp8_layer_for_marlin import (BIAS_DTYPES, check_fp8_kernel_group, check_fp8_weight, fp8_weight_to_marlin,
                                           permutation_group)
from .scale_schemes import check_block_size, fp8_moe_scale_grid

GATED_SHARDS = 2        # w13 = [gate | up]
MOE_HIDDEN_ALIGN = 128  # check_moe_marlin_supports_config: hidden_size % 128 == 0 (§5)


class MarlinMoeLayer(NamedTuple):
    """MoE weights in kernel format, experts stacked on axis 0; sizes are per expert."""

    w13_qweight: torch.Tensor
    w2_qweight: torch.Tensor
    w13_scales: torch.Tensor
    w2_scales: torch.Tensor
    w13_bias: torch.Tensor | None
    w2_bias: torch.Tensor | None
    num_experts: int
    hidden_size: int          # k
    intermediate_size: int    # n, logical
    padded_intermediate: int  # padded_n
    group_size: int


def check_moe_weights(fn: str, w13, w2, group_size: int) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
    """(w13 codes, w2 codes, E, k, n) from w13 [E, 2n, k] and w2 [E, k, n], with the MoE kernel's rules:
    hidden_size % 128 == 0 (check_moe_marlin_supports_config, §5) and n % group_size == 0 (the padded w2
    scale rows must be whole groups, §2.9 step 4)."""
    codes13 = check_fp8_weight(fn, "w13", w13, 3)
    codes2 = check_fp8_weight(fn, "w2", w2, 3)
    experts, rows13, k = codes13.shape
    n = rows13 // GATED_SHARDS
    if rows13 % GATED_SHARDS != 0 or tuple(codes2.shape) != (experts, k, n):
        raise ValueError(f"{fn}: w13 must be [E, 2n, k] and w2 [E, k, n] with the same E, n, k, got "
                         f"{tuple(w13.shape)} and {tuple(w2.shape)}")
    check_multiple(fn, "hidden_size", k, MOE_HIDDEN_ALIGN)
    if group_size > 0:
        check_multiple(fn, "intermediate_size", n, group_size, f"group_size={group_size}: padding adds whole groups")
    return codes13, codes2, experts, k, n


def pad_shards(t: torch.Tensor, dim: int, shards: int, size: int, padded: int) -> torch.Tensor:
    """Zero-pad each of `shards` consecutive blocks of length `size` along `dim` to length `padded`."""
    shape = list(t.shape)
    split = t.reshape(shape[:dim] + [shards, size] + shape[dim + 1:])  # [..., shards, size, ...]
    after = t.dim() - dim - 1  # axes behind the padded one; pads are listed from the last axis
    split = zero_pad(split, (0, 0) * after + (0, padded - size))  # [..., shards, padded, ...]
    return split.reshape(shape[:dim] + [shards * padded] + shape[dim + 1:])  # [..., shards·padded, ...]


def repack_experts(fn: str, codes: torch.Tensor) -> torch.Tensor:
    """uint8[E, N, K] (N-major, already padded) -> int32[E, K/16, 4N], expert by expert."""
    _, size_n, size_k = codes.shape
    return torch.stack([fp8_weight_to_marlin(fn, codes[e], size_k_first=False, padded_n=size_n,
                                             padded_k=size_k) for e in range(codes.shape[0])])


def permute_expert_scales(s: torch.Tensor, size_k: int, group_size: int) -> torch.Tensor:
    """[E, G, N] -> [E, G, N]: marlin_permute_scales applied to every expert's [G, N] grid."""
    _, _, size_n = s.shape
    return torch.stack([marlin_permute_scales(grid, size_k, size_n, group_size) for grid in s])


def _check_bias(fn: str, name: str, bias, shape: tuple, layout: str, dtype: torch.dtype) -> torch.Tensor:
    """A per-expert bias of the given shape, cast to the output dtype (the kernel adds it in dtype)."""
    check_dtype(fn, name, bias, BIAS_DTYPES)
    return check_shape(fn, name, bias, shape, layout).to(dtype)


def prepare_fp8_moe_layer_for_marlin(w13, w2, w13_scale, w2_scale, *, orig_dtype, weight_block_size=None,
                                     w13_bias=None, w2_bias=None) -> MarlinMoeLayer:
    """FP8 MoE checkpoint tensors -> MarlinMoeLayer (spec §2.9 steps 1-5, biases as in step 6)."""
    fn = "prepare_fp8_moe_layer_for_marlin"
    dtype = as_activation_dtype(orig_dtype, fn, "orig_dtype")
    blocks = check_block_size(fn, weight_block_size)
    group_size = -1 if blocks is None else blocks[1]
    codes13, codes2, experts, k, n = check_moe_weights(fn, w13, w2, group_size)
    if blocks is not None:  # otherwise the fused gate|up block grid would not line up (§6.1 item 11)
        check_multiple(fn, "intermediate_size", n, blocks[0], f"block_n={blocks[0]} of weight_block_size")
    padded_n = marlin_moe_padded_intermediate(n, group_size)                              # step 1
    check_fp8_kernel_group(fn, group_size, k)
    check_fp8_kernel_group(fn, group_size, padded_n)
    w13_q = repack_experts(fn, pad_shards(codes13, 1, GATED_SHARDS, n, padded_n))        # step 2
    w2_q = repack_experts(fn, zero_pad(codes2, (0, padded_n - n)))
    s13 = fp8_moe_scale_grid(fn, "w13_scale", w13_scale, num_experts=experts,              # step 3
                             size_n=GATED_SHARDS * n, size_k=k, dtype=dtype, weight_block_size=weight_block_size)
    s2 = fp8_moe_scale_grid(fn, "w2_scale", w2_scale, num_experts=experts, size_n=k, size_k=n, dtype=dtype,
                            weight_block_size=weight_block_size)
    s13 = pad_shards(s13, 2, GATED_SHARDS, n, padded_n)                                  # step 4
    if group_size > 0:
        s2 = zero_pad(s2, (0, 0, 0, (padded_n - n) // group_size))  # [E, padded_n/group, k]
    s13 = permute_expert_scales(s13, k, permutation_group(group_size, k))                # step 5
    s2 = permute_expert_scales(s2, padded_n, permutation_group(group_size, padded_n))
    b13 = b2 = None
    if w13_bias is not None:
        b13 = _check_bias(fn, "w13_bias", w13_bias, (experts, GATED_SHARDS * n), "[E, 2n]", dtype)
        b13 = marlin_permute_bias(pad_shards(b13, 1, GATED_SHARDS, n, padded_n))  # [E, 2·padded_n]
    if w2_bias is not None:
        b2 = marlin_permute_bias(_check_bias(fn, "w2_bias", w2_bias, (experts, k), "[E, k]", dtype))  # [E, k]
    return MarlinMoeLayer(w13_q, w2_q, fp8_fused_exponent_bias_into_scales(s13),
                          fp8_fused_exponent_bias_into_scales(s2), b13, b2, experts, k, n, padded_n, group_size)
