"""Turn grouped-permuted MXFP8 scales into the e8m0 bytes the kernel loads (spec §2.7, §2.10, §3.1).

Layout card
-----------
    input   ms[G, N]    float (fp16, bf16, fp32, fp64), already `marlin_permute_scales`'d with the
                        grouped permutation (group 32), holding exact powers of two; N % 64 == 0
    output  e8m0[G, N]  ml_dtypes.float8_e8m0fnu: every run of 4 entries of the row-major flattening
                        reordered [0, 2, 1, 3] (an involution), then cast with c10's rule (§1, exact)
    with the grouped permutation, column c of a 64-chunk ends at
        8*(c mod 8) + 4*(c // 32) + 2*((c // 8) mod 2) + (c // 16) mod 2
    why: a lane loads 8 bytes = columns (c8, c8+8, c8+16, ..., c8+56); the e8m0 -> bf16 bit trick sends
         bytes (0, 2) of a word to the pair for block j = 0 (columns c8, c8+8) and bytes (1, 3) to
         block j = 1 (c8+16, c8+24), so (c8, c8+8, c8+16, c8+24) is stored (c8, c8+16, c8+8, c8+24).

    >>> from marlin_ref.marlin_permute_scales import marlin_permute_scales
    >>> logical = np.ldexp(1.0, np.arange(64) - 32) * np.ones((2, 1))   # [G=2, N=64]: column c = 2^(c-32)
    >>> e8m0 = mxfp8_marlin_process_scales(marlin_permute_scales(logical, 64, 64, 32))
    >>> (e8m0.view(np.uint8)[0, :8].astype(int) - 95).tolist()       # back to column ids
    [0, 16, 8, 24, 32, 48, 40, 56]

Values accepted, and why each may legitimately arrive (anything else is a ValueError):
    2^e, e in [-127, 127] -> byte e + 127 (exact)
    +-0.0 -> byte 0   the dense MXFP8 prep zero-pads the *float* scale grid (§2.10 step 2), and an fp16
                      intermediate flushes bytes < 103 to 0; c10's cast sends 0.0 to byte 0. Byte 0
                      means 2^-127 to torch but multiplier 0 to the kernel (§3.4), so a padded
                      column still contributes exactly 0 in the GEMM.
    +inf, NaN -> 255  byte 255 decodes to NaN; an fp16 intermediate turns bytes > 142 into +inf.
"""

from __future__ import annotations

import numpy as np

from marlin_ref.errors import check_dtype, check_multiple, check_nonempty, check_rank
from marlin_ref.formats import (BF16, E8M0, E8M0_BIAS, FP16, as_activation_dtype, as_e8m0_codes,
                                decode_e8m0, encode_e8m0, round_to_dtype)
from marlin_ref.layout import GROUPED_PERM_CHUNK

E8M0_WORD_ORDER = (0, 2, 1, 3)   # bytes (0,2) -> first bf16 pair, (1,3) -> second (§3.1)
_FLOAT_INPUTS = [FP16, BF16, np.float32, np.float64]


def _reorder_quadruples(a: np.ndarray) -> np.ndarray:
    quads = a.reshape(-1, len(E8M0_WORD_ORDER))                  # [G*N/4, 4]
    return np.ascontiguousarray(quads[:, list(E8M0_WORD_ORDER)].reshape(a.shape))   # [G, N]


def mxfp8_marlin_process_scales(ms) -> np.ndarray:
    """float [G, N] grouped-permuted powers of two -> float8_e8m0fnu [G, N] in kernel order."""
    fn = "mxfp8_marlin_process_scales"
    check_nonempty(fn, "ms", check_rank(fn, "ms", check_dtype(fn, "ms", ms, _FLOAT_INPUTS), 2))
    check_multiple(fn, "size_n", ms.shape[1], GROUPED_PERM_CHUNK, f"ms has shape {ms.shape}")
    v = ms.astype(np.float64)
    mantissa, exp = np.frexp(v)                                  # v = mantissa * 2^exp
    power_of_two = (np.abs(mantissa) == 0.5) & (v > 0) & (exp - 1 >= -E8M0_BIAS) & (exp - 1 <= E8M0_BIAS)
    ok = power_of_two | (v == 0) | np.isnan(v) | (v == np.inf)
    if not ok.all():
        where = tuple(int(i) for i in np.argwhere(~ok)[0])
        raise ValueError(f"{fn}: ms must hold exact powers of two 2^e with e in [-127, 127] "
                         f"(or 0, +inf, NaN), got {float(v[where])!r} at index {where}")
    return encode_e8m0(_reorder_quadruples(v)).view(E8M0)


def _float_dtype(fn: str, dtype) -> np.dtype:
    if isinstance(dtype, str) and dtype in ("float32", "fp32", "float64", "fp64"):
        return np.dtype(np.float32 if dtype in ("float32", "fp32") else np.float64)
    if dtype is not None and not isinstance(dtype, str):
        try:
            if np.dtype(dtype) in (np.float32, np.float64):
                return np.dtype(dtype)
        except (TypeError, ValueError):
            pass
    try:
        return as_activation_dtype(dtype)
    except ValueError:
        raise ValueError(f"{fn}: dtype must be float32, float64, float16 or bfloat16, got {dtype!r}") from None


def mxfp8_marlin_unprocess_scales(e8m0, dtype="float32") -> np.ndarray:
    """Inverse: e8m0 (or uint8) [G, N] -> float [G, N], still grouped-permuted.

    Undoes [0, 2, 1, 3] and decodes as torch does (byte 0 -> 2^-127, 255 -> NaN), then casts to
    dtype (exact for float32/float64/bfloat16; float16 flushes 2^-127..2^-25 to 0 and sends
    2^16.. to inf, the §2.10 hazard).
    """
    fn = "mxfp8_marlin_unprocess_scales"
    check_nonempty(fn, "e8m0", check_rank(fn, "e8m0", check_dtype(fn, "e8m0", e8m0, [E8M0, np.uint8]), 2))
    check_multiple(fn, "size_n", e8m0.shape[1], GROUPED_PERM_CHUNK, f"e8m0 has shape {e8m0.shape}")
    out_dtype = _float_dtype(fn, dtype)
    values = decode_e8m0(_reorder_quadruples(as_e8m0_codes(e8m0, fn, "e8m0")))
    if out_dtype in (FP16, BF16):
        values = round_to_dtype(values, out_dtype)
    return values.astype(out_dtype)
