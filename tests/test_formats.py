"""marlin_ref.formats: every e4m3 and e8m0 code against torch and ml_dtypes, plus hand-derived cases (spec §1).

Who is the authority: torch's casts (c10) are what vLLM runs, so every encode is compared with torch over all float32
classes. ml_dtypes is compared only where it agrees by design, and each known difference is listed below with the
ml_dtypes versions that show it: a new difference, or a listed one that stops showing, fails with its name.
"""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, strategies as st
from packaging.version import Version

from marlin_ref.formats import (as_activation_dtype, as_e8m0_codes, as_fp8_codes, decode_e4m3,
                                decode_e8m0, encode_e4m3, encode_e8m0, exponent_bias_of,
                                round_to_dtype)

torch = pytest.importorskip("torch")

ALL_CODES = np.arange(256, dtype=np.uint8)


def torch_from_codes(codes, dtype):
    return torch.tensor(codes, dtype=torch.uint8).view(dtype).double().numpy()


def torch_cast(values_f32, dtype):
    return torch.from_numpy(np.array(values_f32, np.float32)).to(dtype).view(torch.uint8).numpy()


def assert_same_floats(got, want):
    # same value, NaN where NaN, and the same sign bit (so -0.0 and -NaN count)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))


def float32_probe_values():
    """Every e4m3 value, the midpoints between neighbours (ties), one float32 ulp either side of
    each, the overflow region, specials, and random float32 bit patterns."""
    finite = np.unique(np.abs(ALL_CODES.view(ml_dtypes.float8_e4m3fn).astype(np.float64)))
    finite = finite[np.isfinite(finite)]
    points = np.concatenate([finite, (finite[:-1] + finite[1:]) / 2, [456.0, 464.0, 472.0, 480.0, 1e30]])
    p32 = points.astype(np.float32)
    near = np.concatenate([p32, np.nextafter(p32, np.float32(np.inf)), np.nextafter(p32, np.float32(0))])
    rng = np.random.default_rng(0)
    random = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    specials = np.array([np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0], np.float32)
    out = np.concatenate([near, -near, random, specials])
    return out[~np.isnan(out) | (np.arange(out.size) >= out.size - 6)]   # one NaN of each sign


# ---- float8_e4m3fn -------------------------------------------------------------------------------

def test_decode_e4m3_matches_ml_dtypes_for_all_256_codes():
    assert_same_floats(decode_e4m3(ALL_CODES), ALL_CODES.view(ml_dtypes.float8_e4m3fn).astype(np.float64))


def test_decode_e4m3_matches_torch_for_all_256_codes():
    assert_same_floats(decode_e4m3(ALL_CODES), torch_from_codes(ALL_CODES, torch.float8_e4m3fn))


@pytest.mark.parametrize("code, value", [
    (0x38, 1.0), (0x40, 2.0), (0xB8, -1.0),      # §2.2 example bytes
    (0x7E, 448.0), (0xFE, -448.0),                # max finite
    (0x01, 2.0**-9), (0x07, 7 * 2.0**-9),         # subnormals m * 2^-9
    (0x08, 2.0**-6),                              # min normal: E=1, m=0
    (0x39, 1.125), (0x3F, 1.875),                 # E=7: 1 + m/8
    (0x00, 0.0),
])
def test_decode_e4m3_hand_values(code, value):
    assert decode_e4m3(np.array([code], np.uint8))[0] == value


def test_decode_e4m3_negative_zero_and_nan_codes():
    got = decode_e4m3(np.array([0x80, 0x7F, 0xFF], np.uint8))
    assert got[0] == 0.0 and np.signbit(got[0])
    assert np.isnan(got[1]) and np.isnan(got[2])


def test_decode_e4m3_nan_as_kernel_value():
    got = decode_e4m3(np.array([0x7F, 0xFF, 0x38, 0xB8], np.uint8), nan_as=480.0)
    assert got.tolist() == [480.0, -480.0, 1.0, -1.0]


def test_decode_e4m3_accepts_float8_arrays_and_keeps_shape():
    codes = ALL_CODES.reshape(16, 16)
    assert_same_floats(decode_e4m3(codes.view(ml_dtypes.float8_e4m3fn)), decode_e4m3(codes))
    assert decode_e4m3(codes).shape == (16, 16)


def test_encode_e4m3_roundtrips_all_256_codes():
    assert np.array_equal(encode_e4m3(decode_e4m3(ALL_CODES)), ALL_CODES)


def test_encode_e4m3_matches_ml_dtypes_cast():
    x = float32_probe_values()
    assert np.array_equal(encode_e4m3(x), x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8))


def test_encode_e4m3_matches_torch_cast_in_its_overflow_mode():
    # torch 2.13 saturates finite overflow to ±448; older releases (2.11 on our GPU runner) give NaN like
    # ml_dtypes. Ask torch which rule it follows, then every probe value must match that mode exactly.
    saturates = torch_cast(np.array([1e6], np.float32), torch.float8_e4m3fn)[0] == 0x7E
    x = float32_probe_values()
    assert np.array_equal(encode_e4m3(x, saturate=bool(saturates)), torch_cast(x, torch.float8_e4m3fn))


@pytest.mark.parametrize("value, code", [
    (1.0625, 0x38),              # tie between 1.0 (m=0) and 1.125 (m=1): even m=0
    (1.1875, 0x3A),              # tie between 1.125 (m=1) and 1.25 (m=2): even m=2
    (1.0626, 0x39),              # just above the tie
    (2.0**-10, 0x00),            # half the smallest subnormal: tie to 0
    (3 * 2.0**-10, 0x02),        # tie between 2^-9 (m=1) and 2^-8 (m=2)
    (15 * 2.0**-10, 0x08),       # tie between 7*2^-9 and 2^-6: rounds into the first normal
    (-1.0, 0xB8),
    (448.0, 0x7E), (464.0, 0x7E),  # 464 = tie between 448 and (NaN) 480: even 448
    (464.0001, 0x7F), (1e6, 0x7F), (np.inf, 0x7F), (-np.inf, 0xFF), (-500.0, 0xFF),
    (np.nan, 0x7F),
])
def test_encode_e4m3_hand_values(value, code):
    assert encode_e4m3(np.array([value]))[0] == code


@pytest.mark.parametrize("value, code", [(464.0001, 0x7E), (1e6, 0x7E), (np.inf, 0x7E), (-np.inf, 0xFE),
                                         (np.nan, 0x7F),
                                         (300.0, 0x79)])   # in range: 288 = 2^8 * (1 + 1/8) is nearest
def test_encode_e4m3_saturate_hand_values(value, code):
    assert encode_e4m3(np.array([value]), saturate=True)[0] == code


def test_encode_e4m3_rejects_non_numbers():
    with pytest.raises(TypeError, match="encode_e4m3: values must be real numbers"):
        encode_e4m3(np.array(["a"]))


# ---- float8_e8m0fnu ------------------------------------------------------------------------------

def test_decode_e8m0_matches_ml_dtypes_and_torch_for_all_256_codes():
    got = decode_e8m0(ALL_CODES)
    assert_same_floats(got, ALL_CODES.view(ml_dtypes.float8_e8m0fnu).astype(np.float64))
    assert np.array_equal(got, torch_from_codes(ALL_CODES, torch.float8_e8m0fnu), equal_nan=True)


def test_decode_e8m0_hand_values():
    got = decode_e8m0(np.array([127, 128, 126, 0, 254, 255], np.uint8))
    assert got[:5].tolist() == [1.0, 2.0, 0.5, 2.0**-127, 2.0**127]
    assert np.isnan(got[5])


def test_decode_e8m0_kernel_faithful():
    got = decode_e8m0(ALL_CODES, kernel_faithful=True)
    assert got[0] == 0.0 and got[255] == np.inf
    assert np.array_equal(got[1:255], np.ldexp(1.0, np.arange(1, 255) - 127))


# float32 bit patterns at the edges of every class the e8m0 cast treats apart (§1): ±0, the subnormals on both
# sides of the rounding points 2^-127 (0x00400000) and 1.5·2^-127 (0x00600000), the smallest and largest normals,
# values that round past 2^127 into the NaN code, ±inf and NaNs.
E8M0_PROBE_BITS = np.array([
    0x00000000, 0x00000001, 0x003FFFFF, 0x00400000, 0x00400001, 0x004FFFFF, 0x005FFFFF, 0x00600000, 0x00600001,
    0x007FFFFF, 0x00800000, 0x00C00000, 0x00C00001, 0x3F400000, 0x3F800000, 0x3FC00000, 0x3FBFFFFF, 0x7F000000, 0x7F400000,
    0x7F3FFFFF, 0x7F7FFFFF, 0x7F800000, 0x7F800001, 0x7FC00000, 0x7FFFFFFF,
], np.uint32)


def e8m0_probe_values():
    bits = np.concatenate([E8M0_PROBE_BITS, E8M0_PROBE_BITS | np.uint32(0x80000000)])
    return np.concatenate([bits.view(np.float32), float32_probe_values()])


def float32_bit_patterns():
    """Arrays of float32 bit patterns, every exponent field (0 and 255 drawn often) and any mantissa and sign."""
    exponent = st.one_of(st.sampled_from([0, 1, 2, 126, 127, 128, 253, 254, 255]), st.integers(0, 255))
    pattern = st.builds(lambda sign, e, m: sign << 31 | e << 23 | m,
                        st.integers(0, 1), exponent, st.integers(0, (1 << 23) - 1))
    return st.lists(pattern, min_size=1, max_size=512).map(lambda b: np.array(b, np.uint32).view(np.float32))


def test_encode_e8m0_matches_torch_cast():
    assert np.array_equal(encode_e8m0(e8m0_probe_values()), torch_cast(e8m0_probe_values(), torch.float8_e8m0fnu))


@given(x=float32_bit_patterns())
def test_encode_e8m0_matches_torch_cast_on_any_float32(x):
    assert np.array_equal(encode_e8m0(x), torch_cast(x, torch.float8_e8m0fnu))


# ml_dtypes' float32 -> float8_e8m0fnu cast against c10's: (what differs, ml_dtypes versions [first, last] that
# show it (last None: every later one), float32 bits -> where it differs, float32 bits -> ml_dtypes' code there).
# Only this test meets ml_dtypes' cast: the oracle encodes with its own encode_e8m0 and uses ml_dtypes for storage.
_EXPONENT_FIELD = lambda bits: (bits >> 23) & 0xFF                                          # noqa: E731
ML_DTYPES_E8M0_DIFFERENCES = [
    ("zero and negatives: ml_dtypes gives NaN (255), c10 encodes |x|'s exponent field", "0.5.0", None,
     lambda bits: (bits & 0x7FFFFFFF == 0) | ((bits >> 31 == 1) & (bits & 0x7FFFFFFF <= 0x7F800000)),
     lambda bits: 255),
    ("ties (significand exactly 1.5): ml_dtypes rounds to the even code, c10 always up", "0.5.0", "0.5.0",
     lambda bits: (bits >> 31 == 0) & (bits & 0x7FFFFF == 0x400000) & (_EXPONENT_FIELD(bits) % 2 == 0)
     & (_EXPONENT_FIELD(bits) >= 2) & (_EXPONENT_FIELD(bits) <= 254),
     _EXPONENT_FIELD),
    ("float32 subnormals in (2^-127, 1.5·2^-127): ml_dtypes rounds to code 0, c10 to 1", "0.7.0", None,
     lambda bits: (bits >= 0x00400001) & (bits <= 0x005FFFFF),
     lambda bits: 0),
]


def ml_dtypes_differences(version: str):
    """The listed differences that this ml_dtypes version shows."""
    v = Version(version)
    return [(what, where, codes) for what, first, last, where, codes in ML_DTYPES_E8M0_DIFFERENCES
            if Version(first) <= v and (last is None or v <= Version(last))]


def assert_ml_dtypes_differs_only_as_listed(x):
    bits = x.view(np.uint32)
    ours, theirs = encode_e8m0(x), x.astype(ml_dtypes.float8_e8m0fnu).view(np.uint8)
    explained = np.zeros(x.shape, bool)
    for what, where, codes in ml_dtypes_differences(ml_dtypes.__version__):
        mask = where(bits)
        assert np.array_equal(theirs[mask], np.broadcast_to(codes(bits), bits.shape)[mask]), \
            f"ml_dtypes {ml_dtypes.__version__} no longer shows the listed difference: {what}"
        explained |= mask
    unexplained = np.flatnonzero((ours != theirs) & ~explained)
    assert unexplained.size == 0, (
        f"ml_dtypes {ml_dtypes.__version__} differs from c10 where no known difference says so: "
        + ", ".join(f"0x{bits[i]:08x}: c10 {ours[i]}, ml_dtypes {theirs[i]}" for i in unexplained[:8]))


def test_encode_e8m0_differs_from_ml_dtypes_only_as_listed():
    x = e8m0_probe_values()
    assert_ml_dtypes_differs_only_as_listed(x[~np.isnan(x)])   # NaN -> 255 in both; its sign is not a difference
    for what, where, _ in ml_dtypes_differences(ml_dtypes.__version__):   # each listed difference shows in the probes
        assert where(x.view(np.uint32)).any(), f"no probe value shows the listed difference: {what}"


@given(x=float32_bit_patterns())
def test_encode_e8m0_differs_from_ml_dtypes_only_as_listed_on_any_float32(x):
    assert_ml_dtypes_differs_only_as_listed(x[~np.isnan(x)])


def test_the_listed_ml_dtypes_difference_of_0_7_is_the_spec_one():
    # spec §9: ml_dtypes 0.7.0 gives byte 0 for bits 0x00400001-0x005fffff, where c10 (and 0.5, 0.6) give byte 1
    assert [what for what, *_ in ml_dtypes_differences("0.6.0")] == [ML_DTYPES_E8M0_DIFFERENCES[0][0]]
    assert [what for what, *_ in ml_dtypes_differences("0.7.0")] == [ML_DTYPES_E8M0_DIFFERENCES[0][0],
                                                                    ML_DTYPES_E8M0_DIFFERENCES[2][0]]
    x = np.array([0x00400001, 0x005FFFFF], np.uint32).view(np.float32)
    assert encode_e8m0(x).tolist() == [1, 1]


@pytest.mark.parametrize("value, code", [
    (1.0, 127), (2.0, 128), (0.5, 126),
    (1.5, 128),            # tie: g=1, r=s=0, implicit LSB 1 -> round up
    (1.4999, 127),         # g=0 -> down
    (0.0, 0), (-0.0, 0),   # exponent field 0, nothing to round
    (-4.0, 129),           # sign ignored
    (2.0**-127, 0),        # fp32 subnormal 0.5*2^-126: tie with LSB 0 -> stays byte 0
    (3 * 2.0**-128, 1),    # fp32 subnormal 0.75*2^-126: g=1, r=1 -> round up to 2^-126
    (1.5 * 2.0**127, 255), # rounds past 2^127 into the NaN code
    (np.inf, 255), (-np.inf, 255), (np.nan, 255),
])
def test_encode_e8m0_hand_values(value, code):
    assert encode_e8m0(np.array([value], np.float32))[0] == code


def test_encode_e8m0_roundtrips_all_256_codes_through_float32():
    assert np.array_equal(encode_e8m0(decode_e8m0(ALL_CODES).astype(np.float32)), ALL_CODES)


# ---- fp16 / bf16 rounding ------------------------------------------------------------------------

def random_float32(n=300_000, seed=1):
    bits = np.random.default_rng(seed).integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    return x[~np.isnan(x)]


def test_round_to_dtype_fp16_matches_numpy_and_torch():
    x = np.concatenate([random_float32(), np.array([65519.0, 65520.0, -65520.0, 2.0**-25, 3 * 2.0**-25], np.float32)])
    got = round_to_dtype(x, "float16")
    with np.errstate(over="ignore"):
        assert_same_floats(got, x.astype(np.float16).astype(np.float64))
    assert_same_floats(got, torch.from_numpy(x).half().double().numpy())


def test_round_to_dtype_bf16_matches_ml_dtypes_and_torch_on_float32_inputs():
    x = random_float32(seed=2)
    got = round_to_dtype(x, "bfloat16")
    assert_same_floats(got, x.astype(ml_dtypes.bfloat16).astype(np.float64))
    assert_same_floats(got, torch.from_numpy(x).bfloat16().double().numpy())


@pytest.mark.parametrize("dtype, value, want", [
    ("fp16", 1 + 2.0**-11, 1.0),                 # tie -> even
    ("fp16", 1 + 3 * 2.0**-11, 1 + 2.0**-9),     # tie -> even (m=2)
    ("fp16", 65519.99, 65504.0), ("fp16", 65520.0, np.inf), ("fp16", -65520.0, -np.inf),
    ("fp16", 2.0**-25, 0.0), ("fp16", 3 * 2.0**-25, 2.0**-23),   # subnormal quantum 2^-24
    ("bf16", 1 + 2.0**-8, 1.0), ("bf16", 255.5, 256.0), ("bf16", 255.49, 255.0),
    ("bf16", 1 + 2.0**-8 + 2.0**-30, 1 + 2.0**-7),   # one rounding from float64 (ml_dtypes gives 1.0)
    ("bf16", 2.0**-134, 0.0), ("bf16", 3 * 2.0**-134, 2.0**-132),   # subnormal quantum 2^-133
])
def test_round_to_dtype_hand_values(dtype, value, want):
    assert round_to_dtype(np.array([value]), dtype)[0] == want


def test_round_to_dtype_keeps_specials():
    got = round_to_dtype(np.array([np.nan, np.inf, -np.inf, -0.0, -1e-30]), "fp16")
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == -np.inf
    assert got[3] == 0 and np.signbit(got[3]) and got[4] == 0 and np.signbit(got[4])


# ---- dtype helpers -------------------------------------------------------------------------------

@pytest.mark.parametrize("d, want", [
    ("float16", np.float16), ("fp16", np.float16), (np.float16, np.float16), (np.dtype("float16"), np.float16),
    ("bfloat16", ml_dtypes.bfloat16), ("bf16", ml_dtypes.bfloat16), (ml_dtypes.bfloat16, ml_dtypes.bfloat16),
])
def test_as_activation_dtype_accepts(d, want):
    assert as_activation_dtype(d) == np.dtype(want)


@pytest.mark.parametrize("d", ["float32", np.float32, "half", "fp8", None, 3, torch.float16])
def test_as_activation_dtype_rejects(d):
    with pytest.raises(ValueError, match=r"as_activation_dtype: dtype must be float16 or bfloat16.*got"):
        as_activation_dtype(d)


def test_exponent_bias_of():
    assert exponent_bias_of("fp16") == 8 and exponent_bias_of(np.float16) == 8
    assert exponent_bias_of("bf16") == 120 and exponent_bias_of(ml_dtypes.bfloat16) == 120
    with pytest.raises(ValueError, match="got 'float32'"):
        exponent_bias_of("float32")


def test_as_fp8_codes_is_a_view_of_the_same_bytes():
    codes = ALL_CODES.copy()
    fp8 = codes.view(ml_dtypes.float8_e4m3fn)
    view = as_fp8_codes(fp8)
    assert view.dtype == np.uint8 and np.shares_memory(view, codes) and np.array_equal(view, codes)
    assert as_fp8_codes(codes) is not None and np.shares_memory(as_fp8_codes(codes), codes)


@pytest.mark.parametrize("bad, err, match", [
    (np.zeros(4, np.float32), TypeError, "as_fp8_codes: codes must have dtype float8_e4m3fn or uint8, got float32"),
    (np.zeros(4, ml_dtypes.float8_e8m0fnu), TypeError, "got float8_e8m0fnu"),
    ([1, 2], TypeError, "must be a numpy.ndarray, got list"),
])
def test_as_fp8_codes_rejects(bad, err, match):
    with pytest.raises(err, match=match):
        as_fp8_codes(bad)


def test_as_e8m0_codes():
    codes = ALL_CODES.copy()
    assert np.shares_memory(as_e8m0_codes(codes.view(ml_dtypes.float8_e8m0fnu)), codes)
    with pytest.raises(TypeError, match="as_e8m0_codes: codes must have dtype float8_e8m0fnu or uint8, got float8_e4m3fn"):
        as_e8m0_codes(codes.view(ml_dtypes.float8_e4m3fn))
