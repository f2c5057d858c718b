"""Reorder grouped-permuted MX scales for the e8m0 dequant and encode them as e8m0 (spec §2.7).

    ms  : float[G, N], already grouped-permuted (§2.4), normally exact powers of two (0 from padding)
    out : float8_e8m0fnu[G, N]; each quadruple of the contiguous tensor reordered [0, 2, 1, 3]
          (positions 1 and 2 swapped, an involution), then cast with torch's fp32 -> e8m0fnu rule (§1)

Combined with the grouped permutation, column c of a 64-chunk lands at
8·(c % 8) + 4·(c // 32) + 2·((c // 8) % 2) + ((c // 16) % 2).
Why: the kernel turns bytes (0, 2) of each 32-bit word into one bf16 pair and bytes (1, 3) into the
next, and wants the pairs (c8, c8+8), (c8+16, c8+24); the same reason as the 8-bit weight interleave.

    >>> from marlin_fast.marlin_permute_scales import marlin_permute_scales
    >>> order = torch.arange(64).view(1, 64)   # column ids, to watch the positions
    >>> _reorder_quads(marlin_permute_scales(order, 64, 64, 32))[0, :8].tolist()
    [0, 16, 8, 24, 32, 48, 40, 56]
    >>> mxfp8_marlin_process_scales(torch.tensor([[1.0, 2.0, 0.5, 0.0]])).view(torch.uint8).tolist()
    [[127, 126, 128, 0]]
"""

from __future__ import annotations

import torch

from .errors import check_dtype, check_multiple, check_rank
from .formats import FLOAT_DTYPES, as_float_dtype, e8m0_codes

QUAD = 4  # one 32-bit word of four e8m0 bytes
QUAD_ORDER = (0, 2, 1, 3)  # bytes (0, 2) feed the first bf16 pair, (1, 3) the second (§3.1)


def _reorder_quads(t: torch.Tensor) -> torch.Tensor:
    """Apply [0, 2, 1, 3] to every group of 4 consecutive entries of the row-major tensor (new tensor)."""
    order = torch.tensor(QUAD_ORDER, device=t.device)
    return t.reshape(-1, QUAD).index_select(1, order).reshape(t.shape)  # [G·N/4, 4] -> [G, N]


def _check_quads(fn: str, name: str, t: torch.Tensor) -> None:
    check_rank(fn, name, t, 2)
    check_multiple(fn, f"{name}.shape[1]", t.shape[1], QUAD)  # a quadruple never straddles rows


def mxfp8_marlin_process_scales(ms: torch.Tensor) -> torch.Tensor:
    """float[G, N] (grouped-permuted) -> float8_e8m0fnu[G, N] with the [0, 2, 1, 3] quad reorder."""
    fn = "mxfp8_marlin_process_scales"
    check_dtype(fn, "ms", ms, FLOAT_DTYPES + (torch.float64,))
    _check_quads(fn, "ms", ms)
    return _reorder_quads(ms).to(torch.float8_e8m0fnu)


def mxfp8_marlin_unprocess_scales(e8m0: torch.Tensor, dtype="float32") -> torch.Tensor:
    """Undo the quad reorder and decode: float[G, N] in `dtype`, still grouped-permuted."""
    fn = "mxfp8_marlin_unprocess_scales"
    out_dtype = as_float_dtype(dtype, fn, "dtype")
    codes = e8m0_codes(e8m0, fn, "e8m0")
    _check_quads(fn, "e8m0", codes)
    return _reorder_quads(codes).view(torch.float8_e8m0fnu).to(out_dtype)
