"""Tile padding of the newest vLLM (spec §2.11): zero-pad N and K up to a shape the GEMM accepts.

The GEMM runs iff (N % 64 == 0 and K % 128 == 0) or (N % 128 == 0 and K % 64 == 0) (§4.2).
marlin_padded_nk picks the cheaper of the two candidates (smaller N·K, ties by smaller N + K),
keeping K a multiple of the group size. Padded weights are fp8 0x00, padded scales 0, padded
activations 0, so the padded region contributes exactly 0.

    >>> marlin_padded_nk(4096, 4096, 128)   # aligned: unchanged
    (4096, 4096)
    >>> marlin_padded_nk(100, 64, -1)       # (128, 128) vs (128, 64): the smaller product wins
    (128, 64)
    >>> marlin_padded_nk(192, 96, -1)       # (192, 128) vs (256, 96): equal products, smaller N + K wins
    (192, 128)
    >>> marlin_moe_padded_intermediate(96, 128)
    128
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import check_dtype, check_group_size, check_int, check_one_of, check_positive, check_rank, check_tensor

MIN_THREAD_N = 64   # GPTQ_MARLIN_MIN_THREAD_N: smallest thread-block n tile
MIN_THREAD_K = 128  # GPTQ_MARLIN_MIN_THREAD_K: k tile paired with n % 64 (the other family: 128 / 64)
TILE = 16           # GPTQ_MARLIN_TILE: rows of a repacked weight row


def _round_up(x: int, multiple: int) -> int:
    return (x + multiple - 1) // multiple * multiple


def marlin_padded_nk(size_n: int, size_k: int, group_size: int) -> tuple[int, int]:
    """(padded_n, padded_k): the cheaper of (ru(N, 64), ru(K, lcm(128, g))) and (ru(N, 128), ru(K, lcm(64, g)))."""
    fn = "marlin_padded_nk"
    size_n = check_positive(fn, "size_n", size_n)
    size_k = check_positive(fn, "size_k", size_k)
    group = max(check_group_size(fn, "group_size", group_size), 1)
    candidates = (
        (_round_up(size_n, MIN_THREAD_N), _round_up(size_k, math.lcm(MIN_THREAD_K, group))),
        (_round_up(size_n, MIN_THREAD_K), _round_up(size_k, math.lcm(MIN_THREAD_N, group))),
    )
    return min(candidates, key=lambda nk: (nk[0] * nk[1], nk[0] + nk[1]))


def marlin_moe_padded_intermediate(size_n: int, group_size: int) -> int:
    """The MoE intermediate size rounded up to lcm(64, group): gate-up needs 2n % 128, down n % 64."""
    fn = "marlin_moe_padded_intermediate"
    size_n = check_positive(fn, "size_n", size_n)
    group = max(check_group_size(fn, "group_size", group_size), 1)
    return _round_up(size_n, math.lcm(MIN_THREAD_N, group))


def _check_growth(fn: str, name: str, size: int, padded: int) -> tuple[int, int]:
    padded_name = "padded_" + name.removeprefix("size_") if name.startswith("size_") else "padded"
    size = check_positive(fn, name, size)
    padded = check_int(fn, padded_name, padded)
    if padded < size:
        raise ValueError(f"{fn}: {padded_name}={padded} must be >= {name}={size}")
    return size, padded


def zero_pad(t: torch.Tensor, pads: tuple) -> torch.Tensor:
    """F.pad with zero *bytes* (a new tensor): 1-byte float types go through a uint8 view, since
    float8_e8m0fnu has no zero (its zero byte is 2^-127, what vLLM pads raw MX scales with)."""
    if t.dtype.is_floating_point and t.element_size() == 1:
        return F.pad(t.view(torch.uint8), pads).view(t.dtype)
    return F.pad(t, pads)


def marlin_pad_qweight(qweight: torch.Tensor, size_n: int, size_k: int, padded_n: int, padded_k: int):
    """Zero-pad GPTQ-packed int32[K/pf, N] to [padded_k/pf, padded_n] (right and bottom)."""
    fn = "marlin_pad_qweight"
    check_rank(fn, "qweight", check_dtype(fn, "qweight", qweight, (torch.int32,)), 2)
    size_n, padded_n = _check_growth(fn, "size_n", size_n, padded_n)
    size_k, padded_k = _check_growth(fn, "size_k", size_k, padded_k)
    rows, cols = qweight.shape
    if cols != size_n or rows == 0 or size_k % rows != 0 or (padded_k - size_k) % (size_k // rows) != 0:
        raise ValueError(f"{fn}: qweight shape {tuple(qweight.shape)} must be [size_k/pf, size_n] with "
                         f"size_k={size_k}, size_n={size_n}, and padded_k={padded_k} a multiple of pf")
    pack = size_k // rows
    return zero_pad(qweight, (0, padded_n - size_n, 0, (padded_k - size_k) // pack))  # [padded_k/pf, padded_n]


def marlin_pad_scales(scales: torch.Tensor, size_n: int, size_k: int, padded_n: int, padded_k: int,
                      group_size: int) -> torch.Tensor:
    """Zero-pad [G, N] scales (any dtype, raw e8m0 bytes too) to [padded_k/group_size (or 1 when
    channel-wise), padded_n]; G must be ceil(size_k/group_size) (1 for channel-wise), so only padded K rows
    get the zero scale. Call before marlin_permute_scales and pass it the padded extents."""
    fn = "marlin_pad_scales"
    check_rank(fn, "scales", scales, 2)
    size_n, padded_n = _check_growth(fn, "size_n", size_n, padded_n)
    size_k, padded_k = _check_growth(fn, "size_k", size_k, padded_k)
    group_size = check_group_size(fn, "group_size", group_size)
    groups = scales.shape[0]
    if scales.shape[1] != size_n:
        raise ValueError(f"{fn}: scales must have shape [G, size_n={size_n}], got {tuple(scales.shape)}")
    if group_size > 0 and padded_k % group_size != 0:
        raise ValueError(f"{fn}: padded_k={padded_k} must be a multiple of group_size={group_size}")
    want = -(-size_k // group_size) if group_size > 0 else 1  # one row per group of real K rows
    if groups != want:
        which = "fewer" if groups < want else "more"
        raise ValueError(f"{fn}: scales must have one row per group, ceil(size_k/group_size) = {want} for "
                         f"size_k={size_k}, group_size={group_size}; got G={groups}, {which} than {want} groups")
    pad_rows = padded_k // group_size - groups if group_size > 0 else 0
    return zero_pad(scales, (0, padded_n - size_n, 0, pad_rows))  # [padded_k/group_size or 1, padded_n]


def marlin_pad_dim(x: torch.Tensor, size: int, padded: int) -> torch.Tensor:
    """Zero-pad the last dim from size to padded (activations along K, bias along N)."""
    fn = "marlin_pad_dim"
    check_tensor(fn, "x", x)
    size, padded = _check_growth(fn, "size", size, padded)
    if x.dim() == 0 or x.shape[-1] != size:
        raise ValueError(f"{fn}: x.shape[-1] must be size={size}, got shape {tuple(x.shape)}")
    return zero_pad(x, (0, padded - size))  # [..., padded]


def marlin_unpad_output(output: torch.Tensor, size_n: int, padded_n: int) -> torch.Tensor:
    """Keep the logical N columns of a padded GEMM output (a contiguous copy)."""
    fn = "marlin_unpad_output"
    check_tensor(fn, "output", output)
    size_n, padded_n = _check_growth(fn, "size_n", size_n, padded_n)
    if output.dim() == 0 or output.shape[-1] != padded_n:
        raise ValueError(f"{fn}: output.shape[-1] must be padded_n={padded_n}, got shape {tuple(output.shape)}")
    return output[..., :size_n].contiguous()  # [..., N]


def marlin_repacked_nk(qweight: torch.Tensor, num_bits: int) -> tuple[int, int]:
    """(N, K) a Marlin weight int32[..., K/16, 16N/pf] was repacked with: K = rows·16, N = cols·pf/16
    (the last two dims, so a stacked MoE weight works too)."""
    fn = "marlin_repacked_nk"
    check_dtype(fn, "qweight", qweight, (torch.int32,))
    num_bits = check_one_of(fn, "num_bits", num_bits, (4, 8))
    if qweight.dim() < 2:
        raise ValueError(f"{fn}: qweight must be at least 2-D [K/16, 16N/pf], got shape {tuple(qweight.shape)}")
    pack = 32 // num_bits
    rows, cols = qweight.shape[-2:]
    if cols * pack % TILE != 0:
        raise ValueError(f"{fn}: qweight columns={cols} times pack factor {pack} must be a multiple of {TILE}")
    return cols * pack // TILE, rows * TILE
