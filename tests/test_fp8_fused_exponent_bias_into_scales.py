"""marlin_ref.fp8_fused_exponent_bias_into_scales (spec §2.6): beta, exactness, overflow thresholds."""

import ml_dtypes
import numpy as np
import pytest

from marlin_ref.fp8_fused_exponent_bias_into_scales import (fp8_fused_exponent_bias_into_scales,
                                                            fp8_unfuse_exponent_bias_from_scales)

BF16 = ml_dtypes.bfloat16
BETA = {np.dtype(np.float16): 8, np.dtype(BF16): 120}


def every_16bit_value(dtype):
    """All 2^16 bit patterns except the signalling NaNs (their float64 casts raise FP warnings)."""
    bits = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    values = bits.view(dtype)
    with np.errstate(invalid="ignore"):
        quiet = ~np.isnan(values.astype(np.float64)) | np.isin(bits, [0x7E00, 0xFE00, 0x7FC0, 0xFFC0])
    return values[quiet]


def test_beta_by_hand():
    assert fp8_fused_exponent_bias_into_scales(np.array([1.0], np.float16))[0] == 256.0
    assert float(fp8_fused_exponent_bias_into_scales(np.array([1.0], BF16))[0]) == 2.0**120
    assert float(fp8_fused_exponent_bias_into_scales(np.array([0.375], BF16))[0]) == 0.375 * 2.0**120


@pytest.mark.parametrize("dtype", [np.float16, BF16])
def test_exact_power_of_two_multiply_on_every_value(dtype):
    s = every_16bit_value(dtype)
    out = fp8_fused_exponent_bias_into_scales(s)
    assert out.dtype == np.dtype(dtype) and out.shape == s.shape
    s64, out64 = s.astype(np.float64), out.astype(np.float64)
    finite = np.isfinite(s64) & (np.abs(s64) < 256)
    assert np.array_equal(out64[finite], np.ldexp(s64[finite], BETA[np.dtype(dtype)]))   # exact, sign kept
    big = np.isfinite(s64) & (np.abs(s64) >= 256)
    assert np.array_equal(out64[big], np.copysign(np.inf, s64[big]))                      # IEEE overflow
    assert np.array_equal(np.isnan(out64), np.isnan(s64))
    assert np.array_equal(np.signbit(out64[~np.isnan(out64)]), np.signbit(s64[~np.isnan(s64)]))


@pytest.mark.parametrize("dtype, threshold, max_finite", [
    (np.float16, 255.9375, 65504.0),                 # RT16(x) >= 256 iff x >= 255.9375; 255.875*256
    (BF16, 255.5, 255.0 * 2.0**120),                 # RT_bf16(x) >= 256 iff x >= 255.5; = bf16 max
])
def test_overflow_threshold_of_float32_scales(dtype, threshold, max_finite):
    at = np.array([threshold], np.float32)
    below = np.nextafter(at, np.float32(0))
    assert fp8_fused_exponent_bias_into_scales(at.astype(dtype)).astype(np.float64)[0] == np.inf
    assert fp8_fused_exponent_bias_into_scales(below.astype(dtype)).astype(np.float64)[0] == max_finite
    assert fp8_fused_exponent_bias_into_scales((-at).astype(dtype)).astype(np.float64)[0] == -np.inf


@pytest.mark.parametrize("dtype", [np.float16, BF16])
def test_unfuse_inverts_fuse_for_every_scale_below_256(dtype):
    s = every_16bit_value(dtype)
    s64 = s.astype(np.float64)
    keep = np.isfinite(s64) & (np.abs(s64) < 256)
    back = fp8_unfuse_exponent_bias_from_scales(fp8_fused_exponent_bias_into_scales(s))
    assert np.array_equal(back.view(np.uint16)[keep], s.view(np.uint16)[keep])   # bit-exact, -0 too


def test_unfuse_by_hand():
    assert fp8_unfuse_exponent_bias_from_scales(np.array([256.0, np.inf], np.float16)).tolist() == [1.0, np.inf]


def test_does_not_mutate_and_keeps_shape():
    s = np.full((2, 3, 64), 0.25, np.float16)
    out = fp8_fused_exponent_bias_into_scales(s)
    assert out.shape == (2, 3, 64) and (s == 0.25).all() and (out == 64.0).all()


@pytest.mark.parametrize("fn", [fp8_fused_exponent_bias_into_scales, fp8_unfuse_exponent_bias_from_scales])
@pytest.mark.parametrize("bad, err, match", [
    (np.ones(4, np.float32), TypeError, "s must be float16 or bfloat16 .*got float32"),
    (np.ones(4, np.float64), TypeError, "s must be float16 or bfloat16 .*got float64"),
    (np.ones(4, np.uint8), TypeError, "s must be float16 or bfloat16 .*got uint8"),
    ([1.0], TypeError, "s must be a numpy.ndarray, got list"),
])
def test_rejects(fn, bad, err, match):
    with pytest.raises(err, match=f"{fn.__name__}: {match}"):
        fn(bad)
