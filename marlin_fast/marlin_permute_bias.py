"""Permute a bias into the accumulator-fragment order of the kernel (spec §2.5).

    bias : any shape with numel % 32 == 0 ([N] dense, [E, N] MoE), any dtype (elements are only moved)
    out  : same shape; the row-major flattening gathered chunk-wise by the *single* 32-entry
           permutation of §2.4: out[32a + p] = bias[32a + 2·(p // 8) + (p % 2) + 8·((p % 8) // 2)]

Only right when the bias is passed into the kernel (b_bias); a bias added after the GEMM stays in
logical order (§2.5, §6.1 item 14).

    >>> marlin_permute_bias(torch.arange(64))[:12].tolist()
    [0, 1, 8, 9, 16, 17, 24, 25, 2, 3, 10, 11]
"""

from __future__ import annotations

import torch

from .errors import check_nonempty, check_tensor
from .marlin_permute_scales import SINGLE_CHUNK, inverse_perm, single_scale_perm


def _check_bias(fn: str, bias) -> torch.Tensor:
    check_tensor(fn, "bias", bias)
    check_nonempty(fn, "bias", bias)
    if bias.numel() % SINGLE_CHUNK != 0:
        raise ValueError(f"{fn}: bias.numel()={bias.numel()} must be a multiple of {SINGLE_CHUNK} "
                         f"(shape {tuple(bias.shape)})")
    return bias


def _gather_chunks(bias: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    chunks = bias.reshape(-1, SINGLE_CHUNK)  # [numel/32, 32]
    return chunks.index_select(1, perm).reshape(bias.shape)  # original shape, a new tensor


def marlin_permute_bias(bias: torch.Tensor) -> torch.Tensor:
    """Logical order -> kernel order (single permutation, chunk-wise over the flattened tensor)."""
    bias = _check_bias("marlin_permute_bias", bias)
    return _gather_chunks(bias, single_scale_perm(bias.device))


def marlin_unpermute_bias(bias: torch.Tensor) -> torch.Tensor:
    """Kernel order -> logical order, the inverse of marlin_permute_bias."""
    bias = _check_bias("marlin_unpermute_bias", bias)
    return _gather_chunks(bias, inverse_perm(single_scale_perm(bias.device)))
