"""Checkpoint scale schemes -> the [G, N] grid the kernel takes (spec §2.8 step 4, §2.9 step 3, §2.10).

Dense (`convert_fp8_scales`), after the cast to orig_dtype (which rounds fp32 checkpoint scales):

    scheme                      detected by (no block size), in this order     result [G, N]
    tensor-wise                 numel == 1                                      G = 1, every column s
    per-shard, unequal widths   numel == len(logical_widths), sum == N          shard i repeated width_i times
    per-shard, equal widths     numel > 1 and numel != N, N % numel == 0        s_i repeated N/numel times
    channel-wise                numel == N                                      [1, N]
    block [block_n, block_k]    weight_block_size given                         [ceil(K/bk), N] (below)

    Block: checkpoint [ceil(N/bn), ceil(K/bk)] is transposed to [ceil(K/bk), ceil(N/bn)] only when
    size_k_first is False (a size_k_first checkpoint is already K-major); each column is repeated
    block_n times along N and the first N columns kept.

    >>> s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])     # [[a, b], [c, d]], rows = n-blocks
    >>> g = convert_fp8_scales(s, size_n=192, size_k=256, orig_dtype="float16",
    ...                        weight_block_size=[128, 128], size_k_first=False)
    >>> g.shape, g[0, 127].item(), g[0, 128].item(), g[1, 191].item()
    (torch.Size([2, 192]), 1.0, 3.0, 4.0)

MoE (`convert_fp8_moe_scales`) returns [E, G, size_n]: numel == E per-expert tensor-wise; numel > E
and != E·size_n per-expert per-shard; else channel-wise [E, 1, size_n]; block-wise [E, ceil(N/bn),
ceil(K/bk)] is always permuted to [E, ceil(K/bk), ceil(N/bn)], repeated and truncated as above.
"""

from __future__ import annotations

import math

import torch

from .errors import check_bool, check_dtype, check_positive, check_shape
from .formats import FLOAT_DTYPES, as_activation_dtype, as_float_dtype, e8m0_codes, e8m0_to_float

# float64 is refused: torch casts it to bf16 through float32 (a double rounding), which is not RT(s).
SCALE_DTYPES = FLOAT_DTYPES


def check_block_size(fn: str, weight_block_size) -> tuple[int, int] | None:
    """None or (block_n, block_k), both positive."""
    if weight_block_size is None:
        return None
    if isinstance(weight_block_size, (str, bytes)) or not hasattr(weight_block_size, "__len__") \
            or len(weight_block_size) != 2:
        raise ValueError(f"{fn}: weight_block_size must be [block_n, block_k], got {weight_block_size!r}")
    return check_positive(fn, "block_n", weight_block_size[0]), check_positive(fn, "block_k", weight_block_size[1])


def check_logical_widths(fn: str, logical_widths) -> list[int] | None:
    """None, or the shard widths of a fused layer as positive ints (their sum is checked where used)."""
    if logical_widths is None:
        return None
    if isinstance(logical_widths, (str, bytes, torch.Tensor)) or not hasattr(logical_widths, "__len__"):
        raise TypeError(f"{fn}: logical_widths must be a sequence of shard widths, got {logical_widths!r}")
    return [check_positive(fn, f"logical_widths[{i}]", w) for i, w in enumerate(logical_widths)]


def _cast_scale(fn: str, name: str, scale, dtype: torch.dtype) -> torch.Tensor:
    """The checkpoint scale rounded to dtype, the first step of every scheme (§2.8 step 4, §6.1 item 10)."""
    check_dtype(fn, name, scale, SCALE_DTYPES)
    if scale.numel() == 0:
        raise ValueError(f"{fn}: {name} must not be empty, got shape {tuple(scale.shape)}")
    return scale.to(dtype)


def _expand_blocks(s: torch.Tensor, block_n: int, size_n: int) -> torch.Tensor:
    """[..., G, ceil(N/bn)] -> [..., G, N]: every n-block's scale repeated block_n times, then truncated."""
    return s.repeat_interleave(block_n, dim=-1)[..., :size_n].contiguous()


def fp8_scale_grid(fn: str, name: str, scale, *, size_n: int, size_k: int, dtype: torch.dtype, weight_block_size,
                   logical_widths, size_k_first: bool) -> torch.Tensor:
    """convert_fp8_scales with the caller's name and argument name in every message (sizes already valid)."""
    s = _cast_scale(fn, name, scale, dtype)  # rounds first (§2.8 step 4)
    blocks = check_block_size(fn, weight_block_size)
    if blocks is not None:
        block_n, block_k = blocks
        grid = (math.ceil(size_k / block_k), math.ceil(size_n / block_n))
        if size_k_first:
            check_shape(fn, name, s, grid, "block scale [ceil(K/bk), ceil(N/bn)]")
        else:  # an N-major checkpoint: transposed to K-major here
            check_shape(fn, name, s, grid[::-1], "block scale [ceil(N/bn), ceil(K/bk)]")
        return _expand_blocks(s if size_k_first else s.T, block_n, size_n)  # [ceil(K/bk), N]
    numel = s.numel()
    flat = s.reshape(1, numel)  # [1, numel]
    if numel == 1:  # tensor-wise
        return flat.expand(1, size_n).contiguous()  # [1, N]
    if logical_widths is not None and numel == len(logical_widths):  # per-shard, unequal widths
        if sum(logical_widths) != size_n:
            raise ValueError(f"{fn}: sum(logical_widths)={sum(logical_widths)} must equal size_n={size_n}")
        repeats = torch.tensor(logical_widths, device=s.device)
        return flat.repeat_interleave(repeats, dim=1).contiguous()  # [1, N]
    if numel > 1 and numel != size_n:  # per-shard, equal widths
        if size_n % numel != 0:
            raise ValueError(f"{fn}: size_n={size_n} must be a multiple of {name}.numel()={numel} "
                             "(per-shard tensor-wise scales need equal shards)")
        return flat.repeat_interleave(size_n // numel, dim=1).contiguous()  # [1, N]
    return flat.contiguous()  # [1, N] channel-wise


def convert_fp8_scales(scale: torch.Tensor, *, size_n: int, size_k: int, orig_dtype, weight_block_size=None,
                       logical_widths=None, size_k_first: bool = True) -> torch.Tensor:
    """Checkpoint FP8 scales -> [G, N] in orig_dtype (G = 1, or ceil(K/block_k) for block FP8)."""
    fn = "convert_fp8_scales"
    size_n = check_positive(fn, "size_n", size_n)
    size_k = check_positive(fn, "size_k", size_k)
    return fp8_scale_grid(fn, "scale", scale, size_n=size_n, size_k=size_k,
                          dtype=as_activation_dtype(orig_dtype, fn, "orig_dtype"),
                          weight_block_size=weight_block_size,
                          logical_widths=check_logical_widths(fn, logical_widths),
                          size_k_first=check_bool(fn, "size_k_first", size_k_first))


def fp8_moe_scale_grid(fn: str, name: str, scale, *, num_experts: int, size_n: int, size_k: int, dtype: torch.dtype,
                       weight_block_size) -> torch.Tensor:
    """convert_fp8_moe_scales with the caller's name and argument name in every message (sizes already valid)."""
    experts = num_experts
    s = _cast_scale(fn, name, scale, dtype)
    blocks = check_block_size(fn, weight_block_size)
    if blocks is not None:
        block_n, block_k = blocks
        grid = (experts, math.ceil(size_n / block_n), math.ceil(size_k / block_k))
        check_shape(fn, name, s, grid, "[E, ceil(N/bn), ceil(K/bk)]")
        return _expand_blocks(s.permute(0, 2, 1), block_n, size_n)  # [E, ceil(K/bk), N]
    numel = s.numel()
    if numel == experts:  # per-expert tensor-wise
        return s.reshape(experts, 1, 1).expand(experts, 1, size_n).contiguous()  # [E, 1, N]
    if numel != experts * size_n:  # per-expert per-shard (gate/up)
        shards = numel // experts
        if numel % experts != 0 or size_n % shards != 0:
            raise ValueError(f"{fn}: per-shard {name}.numel()={numel} must be num_experts={experts} times a "
                             f"divisor of size_n={size_n} (channel-wise needs numel == {experts * size_n})")
        per_shard = s.reshape(experts, 1, shards)  # [E, 1, shards]
        return per_shard.repeat_interleave(size_n // shards, dim=2).contiguous()  # [E, 1, N]
    return s.reshape(experts, 1, size_n).contiguous()  # [E, 1, N] channel-wise


def convert_fp8_moe_scales(scale: torch.Tensor, *, num_experts: int, size_n: int, size_k: int, orig_dtype,
                           weight_block_size=None) -> torch.Tensor:
    """Checkpoint MoE FP8 scales -> [E, G, size_n] in orig_dtype."""
    fn = "convert_fp8_moe_scales"
    experts = check_positive(fn, "num_experts", num_experts)
    size_n = check_positive(fn, "size_n", size_n)
    size_k = check_positive(fn, "size_k", size_k)
    return fp8_moe_scale_grid(fn, "scale", scale, num_experts=experts, size_n=size_n, size_k=size_k,
                              dtype=as_activation_dtype(orig_dtype, fn, "orig_dtype"),
                              weight_block_size=weight_block_size)


def mxfp8_scales_to_float(scale_u8: torch.Tensor, *, intermediate_dtype) -> torch.Tensor:
    """e8m0 bytes (uint8 or float8_e8m0fnu) -> 2^(b-127) in intermediate_dtype, any shape (§2.10).

    vLLM uses torch.get_default_dtype() here; it is an explicit argument so the hazard can be tested:
    bf16/fp32 hold every byte exactly, fp16 maps bytes < 103 to 0 and bytes > 142 to inf.

    >>> b = torch.tensor([0, 102, 103, 127, 142, 143], dtype=torch.uint8)
    >>> mxfp8_scales_to_float(b, intermediate_dtype="float16").tolist()
    [0.0, 0.0, 5.960464477539063e-08, 1.0, 32768.0, inf]
    """
    fn = "mxfp8_scales_to_float"
    dtype = as_float_dtype(intermediate_dtype, fn, "intermediate_dtype")
    return e8m0_to_float(e8m0_codes(scale_u8, fn, "scale_u8"), dtype)
