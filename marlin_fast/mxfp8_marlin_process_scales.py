"""Reorder grouped-permuted MX scales for the e8m0 dequant and encode them as e8m0 (spec §2.7).

    ms  : float[G, N], already grouped-permuted (§2.4), N % 64 == 0; every entry 2^e with e in
          [-127, 127], or 0 (padding), +inf / NaN (the fp16 intermediate hazard); else ValueError
    out : float8_e8m0fnu[G, N]; each quadruple of the contiguous tensor reordered [0, 2, 1, 3]
          (positions 1 and 2 swapped, an involution), then cast with torch's fp32 -> e8m0fnu rule (§1)

Combined with the grouped permutation, column c of a 64-chunk lands at
8·(c % 8) + 4·(c // 32) + 2·((c // 8) % 2) + ((c // 16) % 2).
Why: the kernel turns bytes (0, 2) of each 32-bit word into one bf16 pair and bytes (1, 3) into the
next, and wants the pairs (c8, c8+8), (c8+16, c8+24); the same reason as the 8-bit weight interleave.

    >>> from marlin_fast.marlin_permute_scales import marlin_permute_scales
    >>> order = torch.arange(64).repeat(2, 1)   # column ids, to watch the positions (2 groups of 32)
    >>> _reorder_quads(marlin_permute_scales(order, 64, 64, 32))[0, :8].tolist()
    [0, 16, 8, 24, 32, 48, 40, 56]
    >>> ms = torch.zeros(1, 64); ms[0, :4] = torch.tensor([1.0, 2.0, 0.5, 2.0**-127])
    >>> mxfp8_marlin_process_scales(ms).view(torch.uint8)[0, :4].tolist()
    [127, 126, 128, 0]
"""

from __future__ import annotations

import torch

from .errors import check_dtype, check_multiple, check_nonempty, check_rank
from .formats import REAL_DTYPES, as_float_dtype, e8m0_codes, e8m0_to_float

QUAD = 4  # one 32-bit word of four e8m0 bytes
QUAD_ORDER = (0, 2, 1, 3)  # bytes (0, 2) feed the first bf16 pair, (1, 3) the second (§3.1)
GROUPED_CHUNK = 64  # the input is grouped-permuted: whole 64-column chunks per row (§2.4)
E8M0_MIN_EXP, E8M0_MAX_EXP = -127, 127  # 2^(b-127) for the finite bytes 0..254


def _reorder_quads(t: torch.Tensor) -> torch.Tensor:
    """Apply [0, 2, 1, 3] to every group of 4 consecutive entries of the row-major tensor (new tensor)."""
    order = torch.tensor(QUAD_ORDER, device=t.device)
    return t.reshape(-1, QUAD).index_select(1, order).reshape(t.shape)  # [G·N/4, 4] -> [G, N]


def _check_powers_of_two(fn: str, ms: torch.Tensor) -> None:
    """Every entry 2^e with e in [-127, 127], or 0 (padding), +inf or NaN (the fp16 hazard, byte 255):
    anything else would be rounded by the e8m0 cast, silently."""
    v = ms.to(torch.float64)
    mantissa, exponent = torch.frexp(v)  # v = mantissa · 2^exponent, |mantissa| in [0.5, 1)
    power = (mantissa == 0.5) & (exponent - 1 >= E8M0_MIN_EXP) & (exponent - 1 <= E8M0_MAX_EXP)
    ok = power | (v == 0) | torch.isnan(v) | (v == float("inf"))
    if not bool(ok.all()):
        where = tuple(int(i) for i in torch.nonzero(~ok)[0])
        raise ValueError(f"{fn}: ms must hold exact powers of two 2^e with e in [{E8M0_MIN_EXP}, "
                         f"{E8M0_MAX_EXP}] (or 0, +inf, NaN), got {float(v[where])!r} at index {where}")


def mxfp8_marlin_process_scales(ms: torch.Tensor) -> torch.Tensor:
    """float[G, N] (grouped-permuted) -> float8_e8m0fnu[G, N] with the [0, 2, 1, 3] quad reorder."""
    fn = "mxfp8_marlin_process_scales"
    check_nonempty(fn, "ms", check_rank(fn, "ms", check_dtype(fn, "ms", ms, REAL_DTYPES), 2))
    check_multiple(fn, "size_n", ms.shape[1], GROUPED_CHUNK, f"ms has shape {tuple(ms.shape)}")
    _check_powers_of_two(fn, ms)
    return _reorder_quads(ms).to(torch.float8_e8m0fnu)


def mxfp8_marlin_unprocess_scales(e8m0: torch.Tensor, dtype="float32") -> torch.Tensor:
    """Undo the quad reorder and decode: float[G, N] in `dtype` (float16/bfloat16/float32/float64),
    still grouped-permuted; float16 shows the §2.10 hazard (tiny -> 0, huge -> inf)."""
    fn = "mxfp8_marlin_unprocess_scales"
    codes = check_nonempty(fn, "e8m0", check_rank(fn, "e8m0", e8m0_codes(e8m0, fn, "e8m0"), 2))
    check_multiple(fn, "size_n", codes.shape[1], GROUPED_CHUNK, f"e8m0 has shape {tuple(codes.shape)}")
    out_dtype = as_float_dtype(dtype, fn, "dtype", allowed=REAL_DTYPES)
    return e8m0_to_float(_reorder_quads(codes), out_dtype)
