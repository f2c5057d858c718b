"""Fuse the FP8 dequant's missing power of two into the scales (spec §2.6).

    s   : float16 or bfloat16, any shape (float32 and everything else: TypeError, as in vLLM)
    out : s · 2^beta in s.dtype, beta = 2^(E_t-1) - 2^(E_fp8-1) = 8 (fp16) / 120 (bf16)

The skip-flop dequant (§3.1) turns byte b into dec(b)·2^-beta by moving bits only; the scales carry
the 2^beta. Multiplying by a power of two is exact except for overflow: fp16 saturates to inf iff
s >= 256 (max finite 255.875·2^8 = 65504), bf16 iff s >= 256 (max finite 255·2^120).

    >>> fp8_fused_exponent_bias_into_scales(torch.tensor([1.0, 0.5], dtype=torch.float16)).tolist()
    [256.0, 128.0]
    >>> fp8_fused_exponent_bias_into_scales(torch.tensor([1.0], dtype=torch.bfloat16)).item() == 2.0**120
    True
"""

from __future__ import annotations

import torch

from .errors import check_dtype
from .formats import ACTIVATION_DTYPES, exponent_bias_of


def _power_of_two_like(s: torch.Tensor, exponent: int) -> torch.Tensor:
    # A 0-d tensor of s's dtype: the product is then a dtype x dtype multiply (exact, one rounding).
    return torch.tensor(2.0**exponent, dtype=s.dtype, device=s.device)


def fp8_fused_exponent_bias_into_scales(s: torch.Tensor) -> torch.Tensor:
    """s · 2^8 (fp16) or s · 2^120 (bf16); any other dtype is a TypeError."""
    check_dtype("fp8_fused_exponent_bias_into_scales", "s", s, ACTIVATION_DTYPES)
    return s * _power_of_two_like(s, exponent_bias_of(s.dtype))


def fp8_unfuse_exponent_bias_from_scales(s: torch.Tensor) -> torch.Tensor:
    """s · 2^-8 (fp16) or s · 2^-120 (bf16): the inverse for every finite fused scale."""
    check_dtype("fp8_unfuse_exponent_bias_from_scales", "s", s, ACTIVATION_DTYPES)
    return s * _power_of_two_like(s, -exponent_bias_of(s.dtype))
