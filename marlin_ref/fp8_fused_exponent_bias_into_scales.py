"""Fold the FP8 dequant's missing 2^beta into the (permuted) scales (spec §2.6, §3.1).

Layout card
-----------
    input   s[...]  float16 or bfloat16, any shape (already marlin_permute_scales'd)
    output  same shape and dtype: s * 2^beta, beta = 2^(E_t - 1) - 2^(E_fp8 - 1)
            = 8 for fp16 (E_t = 5), 120 for bf16 (E_t = 8); any other dtype -> TypeError
    exact (a power-of-two multiply) except overflow to +-inf: fp16 iff |s| >= 256 (RT16(x) >= 256
    iff x >= 255.9375), bf16 iff |s| >= 256 (RT_bf16(x) >= 256 iff x >= 255.5)
    why: the "skip-flop" FP8 dequant only moves bits and yields dec(b) * 2^-beta in dtype; the scale
         restores the 2^beta, so no per-weight multiply is needed. Apply exactly once, never to MXFP8.

    >>> fp8_fused_exponent_bias_into_scales(np.array([1.0, 0.5, 255.875, 256.0], np.float16)).tolist()
    [256.0, 128.0, 65504.0, inf]
"""

from __future__ import annotations

import numpy as np

from marlin_ref.errors import check_array
from marlin_ref.formats import BF16, FP16, exponent_bias_of, round_to_dtype


def _beta(fn: str, s) -> int:
    check_array(fn, "s", s)
    if s.dtype not in (FP16, BF16):
        raise TypeError(f"{fn}: s must be float16 or bfloat16 (no exponent bias is defined for "
                        f"other dtypes), got {s.dtype.name}")
    return exponent_bias_of(s.dtype)


def _scale_by_power_of_two(s: np.ndarray, exponent: int) -> np.ndarray:
    # float64 holds s * 2^exponent exactly; RT rounds only on overflow (-> inf) or, when unfusing,
    # on underflow into the dtype's subnormals (once, to nearest even); the final cast is exact
    with np.errstate(invalid="ignore"):      # signalling-NaN payloads warn; they stay NaN
        exact = np.ldexp(s.astype(np.float64), exponent)
    return round_to_dtype(exact, s.dtype).astype(s.dtype)


def fp8_fused_exponent_bias_into_scales(s) -> np.ndarray:
    """s * 2^8 (fp16) or s * 2^120 (bf16), same dtype; IEEE overflow to +-inf."""
    beta = _beta("fp8_fused_exponent_bias_into_scales", s)
    return _scale_by_power_of_two(s, beta)


def fp8_unfuse_exponent_bias_from_scales(s) -> np.ndarray:
    """s * 2^-beta, same dtype. Inverts the fusion for every finite fused scale (inf stays inf)."""
    beta = _beta("fp8_unfuse_exponent_bias_from_scales", s)
    return _scale_by_power_of_two(s, -beta)
