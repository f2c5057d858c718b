"""MoE FP8 weight preparation for the Marlin MoE GEMM, newest vLLM with tile padding (spec §2.9, §5).

    w13 e4m3fn[E, 2n, k] (gate rows 0..n-1 | up rows n..2n-1; n rows for a non-gated single shard)
    w2  e4m3fn[E, k, n]
    ->  w13_qweight int32[E, k/16, 4·2·padded_n]     w2_qweight int32[E, padded_n/16, 4k]
        w13_scales  [E, G13, 2·padded_n]             w2_scales  [E, padded_n/group (or 1), k]
        w13_bias    [E, 2·padded_n] (optional)        w2_bias    [E, k] (optional), single-permuted

padded_n = marlin_moe_padded_intermediate(n, group_size). Padding is per shard: each of gate and up
grows from n to padded_n rows (§6.1 item 13), never at the end of the fused 2n. Each expert is the
dense format on its own (§5); the chunk-wise scale permutation of a stacked [E·G, N] tensor equals
permuting expert by expert, since chunks never straddle rows.

    >>> E, n, k = 2, 64, 128
    >>> w13 = torch.zeros(E, 2 * n, k, dtype=torch.uint8); w2 = torch.zeros(E, k, n, dtype=torch.uint8)
    >>> m = prepare_fp8_moe_layer_for_marlin(w13, w2, torch.ones(E), torch.ones(E), orig_dtype="bfloat16")
    >>> m.w13_qweight.shape, m.w2_qweight.shape, m.w13_scales.shape, m.w2_scales.shape
    (torch.Size([2, 8, 512]), torch.Size([2, 4, 512]), torch.Size([2, 1, 128]), torch.Size([2, 1, 128]))
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .errors import check_multiple, check_rank, check_shape, check_tensor
from .formats import as_activation_dtype, fp8_codes
from .fp8_fused_exponent_bias_into_scales import fp8_fused_exponent_bias_into_scales
from .marlin_permute_bias import marlin_permute_bias
from .marlin_permute_scales import GROUPED_CHUNK, marlin_permute_scales
from .padding import marlin_moe_padded_intermediate
from .prepare_fp8_layer_for_marlin import fp8_weight_to_marlin
from .scale_schemes import check_block_size, convert_fp8_moe_scales


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


def check_moe_weights(fn: str, w13, w2) -> tuple[torch.Tensor, torch.Tensor, int, int, int, int]:
    """(w13 codes, w2 codes, E, shards, n, k); shards = 2 (gate|up) or 1 (non-gated)."""
    codes13 = fp8_codes(check_rank(fn, "w13", w13, 3), fn, "w13")
    codes2 = fp8_codes(check_rank(fn, "w2", w2, 3), fn, "w2")
    experts, rows13, k = codes13.shape
    n = codes2.shape[2]
    check_shape(fn, "w2", codes2, (experts, k, n), "[E, k, n] with E and k of w13")
    if rows13 not in (n, 2 * n):
        raise ValueError(f"{fn}: w13.shape[1]={rows13} must be 2·n={2 * n} (gate|up) or n={n} (non-gated)")
    check_multiple(fn, "hidden_size", k, GROUPED_CHUNK)  # k is w2's size_n, never padded
    return codes13, codes2, experts, rows13 // n, n, k


def pad_shards(t: torch.Tensor, dim: int, shards: int, size: int, padded: int) -> torch.Tensor:
    """Zero-pad each of `shards` consecutive blocks of length `size` along `dim` to length `padded`."""
    shape = list(t.shape)
    split = t.reshape(shape[:dim] + [shards, size] + shape[dim + 1:])  # [..., shards, size, ...]
    after = t.dim() - dim - 1  # axes behind the padded one; F.pad lists pads from the last axis
    split = F.pad(split, (0, 0) * after + (0, padded - size))  # [..., shards, padded, ...]
    return split.reshape(shape[:dim] + [shards * padded] + shape[dim + 1:])  # [..., shards·padded, ...]


def repack_experts(fn: str, codes: torch.Tensor) -> torch.Tensor:
    """uint8[E, N, K] (N-major, already padded) -> int32[E, K/16, 4N], expert by expert."""
    _, size_n, size_k = codes.shape
    return torch.stack([fp8_weight_to_marlin(fn, codes[e], size_k_first=False, padded_n=size_n,
                                             padded_k=size_k) for e in range(codes.shape[0])])


def permute_expert_scales(s: torch.Tensor, size_k: int, group_size: int) -> torch.Tensor:
    """[E, G, N] -> [E, G, N], marlin_permute_scales applied to every expert (one call on [E·G, N])."""
    experts, groups, size_n = s.shape
    flat = marlin_permute_scales(s.reshape(experts * groups, size_n), size_k, size_n, group_size)  # [E·G, N]
    return flat.view(experts, groups, size_n)  # [E, G, N]


def prepare_fp8_moe_layer_for_marlin(w13, w2, w13_scale, w2_scale, *, orig_dtype, weight_block_size=None,
                                     w13_bias=None, w2_bias=None) -> MarlinMoeLayer:
    """FP8 MoE checkpoint tensors -> MarlinMoeLayer (spec §2.9 steps 1-5, biases as in step 6)."""
    fn = "prepare_fp8_moe_layer_for_marlin"
    dtype = as_activation_dtype(orig_dtype, fn, "orig_dtype")
    codes13, codes2, experts, shards, n, k = check_moe_weights(fn, w13, w2)
    blocks = check_block_size(fn, weight_block_size)
    group_size = -1 if blocks is None else blocks[1]
    if group_size > 0:
        check_multiple(fn, "intermediate_size", n, group_size)  # w2's K groups must not straddle the pad
    padded_n = marlin_moe_padded_intermediate(n, group_size)                              # step 1
    w13_q = repack_experts(fn, pad_shards(codes13, 1, shards, n, padded_n))               # step 2
    w2_q = repack_experts(fn, F.pad(codes2, (0, padded_n - n)))
    s13 = convert_fp8_moe_scales(w13_scale, num_experts=experts, size_n=shards * n,      # step 3
                                 size_k=k, orig_dtype=dtype, weight_block_size=weight_block_size)
    s2 = convert_fp8_moe_scales(w2_scale, num_experts=experts, size_n=k, size_k=n, orig_dtype=dtype,
                                weight_block_size=weight_block_size)
    s13 = pad_shards(s13, 2, shards, n, padded_n)                                         # step 4
    if group_size > 0:
        s2 = F.pad(s2, (0, 0, 0, (padded_n - n) // group_size))  # [E, padded_n/group, k]
    s13 = fp8_fused_exponent_bias_into_scales(permute_expert_scales(s13, k, group_size))  # step 5
    s2 = fp8_fused_exponent_bias_into_scales(permute_expert_scales(s2, padded_n, group_size))
    b13 = None
    if w13_bias is not None:
        check_shape(fn, "w13_bias", check_tensor(fn, "w13_bias", w13_bias), (experts, shards * n))
        b13 = marlin_permute_bias(pad_shards(w13_bias, 1, shards, n, padded_n))
    b2 = None
    if w2_bias is not None:
        check_shape(fn, "w2_bias", check_tensor(fn, "w2_bias", w2_bias), (experts, k))
        b2 = marlin_permute_bias(w2_bias)
    return MarlinMoeLayer(w13_q, w2_q, s13, s2, b13, b2, experts, k, n, padded_n, group_size)
