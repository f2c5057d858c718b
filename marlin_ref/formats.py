"""Number formats of the Marlin FP8 path, decoded and encoded from their bit fields (spec §1).

Layout card
-----------
    float8_e4m3fn byte   s eeee mmm, bias 7
        E >= 1 : (-1)^s * 2^(E-7) * (1 + m/8)        E = 0 : (-1)^s * 2^-6 * m/8
        0x7F / 0xFF = NaN (E=15, m=7); no inf; max 448 = 0x7E; min subnormal 2^-9 = 0x01
    float8_e8m0fnu byte  b (8 exponent bits, no sign, no mantissa)
        2^(b-127); b = 255 is NaN; there is no zero (b = 0 is 2^-127)
    fp16 1/5/10, bf16 1/8/7   (activation = output dtypes; RT = round to nearest even)

    >>> decode_e4m3(np.array([0x38, 0x40, 0xB8, 0x7E, 0x01, 0x80, 0x7F], np.uint8))
    array([ 1.00000000e+00,  2.00000000e+00, -1.00000000e+00,  4.48000000e+02,
            1.95312500e-03, -0.00000000e+00,             nan])
    >>> [hex(c) for c in encode_e4m3(np.array([1.0, -1.0, 464.0, 465.0, 1e-3]))]
    ['0x38', '0xb8', '0x7e', '0x7f', '0x1']
    >>> decode_e8m0(np.array([127, 128, 0, 255], np.uint8))
    array([1.00000000e+00, 2.00000000e+00, 5.87747175e-39,            nan])
    >>> decode_e8m0(np.array([127, 0, 255], np.uint8), kernel_faithful=True)
    array([ 1.,  0., inf])

Encoder rules (measured with ml_dtypes 0.6 and torch 2.13 CPU, pinned by tests/test_formats.py):

* `encode_e4m3` rounds to nearest, ties to even, directly from the float64 value (one rounding).
  Overflow, default ``saturate=False``: a magnitude that *rounds* above 448 (i.e. > 464; 464 itself
  is a tie and goes to the even 448) becomes NaN with the input's sign, and +-inf becomes NaN: this
  is ml_dtypes' cast. ``saturate=True`` instead gives +-448 for every finite overflow and for +-inf
  (NaN stays NaN): this is torch 2.13's ``.to(torch.float8_e4m3fn)`` (c10 now saturates; older c10
  returned NaN for magnitudes >= 464). Both agree on every magnitude below 464.
* `encode_e8m0` is c10's ``fp8e8m0fnu_from_fp32_value`` (§1): take the fp32 exponent field, NaN/+-inf
  -> 255, ignore the sign, round the significand to a power of two, ties to even with the implicit
  bit as the LSB. So 0.0 -> 0 and 1.5 -> 2.0. ml_dtypes differs: it sends 0 and negatives to NaN.
* `round_to_dtype` rounds the float64 value once. ml_dtypes and torch convert float64 -> bf16 through
  float32 (a double rounding: 1 + 2^-8 + 2^-30 gives 1.0 there, 1 + 2^-7 here); for inputs that are
  already float32/fp16/bf16 all three agree.
"""

from __future__ import annotations

import numbers

import ml_dtypes
import numpy as np

from marlin_ref.errors import FLOAT_DTYPES, check_array, check_bool

# --- float8_e4m3fn (§1) ---
E4M3_EXP_BITS = 4
E4M3_MANT_BITS = 3
E4M3_EXP_BIAS = 7
E4M3_MIN_NORMAL_EXP = 1 - E4M3_EXP_BIAS        # -6: unbiased exponent of the smallest normal
E4M3_MAX = 448.0                               # largest finite float8_e4m3fn (code 0x7E)
E4M3_MAX_CODE = 0x7E
E4M3_NAN_CODE = 0x7F                           # E = 15, m = 7; with the sign bit: 0xFF
E4M3_SIGN_BIT = 0x80
KERNEL_E4M3_NAN_VALUE = 480.0                  # the dequant bit trick reads 0x7F as 2^8 * 1.875 (§3.1)

# --- float8_e8m0fnu (§1) ---
E8M0_BIAS = 127
E8M0_NAN_CODE = 255

# --- activation dtypes ---
FP16 = np.dtype(np.float16)
BF16 = np.dtype(ml_dtypes.bfloat16)
E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)

_DTYPE_NAMES = {"float16": FP16, "fp16": FP16, "bfloat16": BF16, "bf16": BF16}
# (exponent bits, explicit mantissa bits, unbiased exponent of the smallest normal, largest finite)
_FORMAT = {
    FP16: (5, 10, -14, 65504.0),
    BF16: (8, 7, -126, float.fromhex("0x1.fep127")),
}


def as_activation_dtype(dtype, fn: str = "as_activation_dtype", name: str = "dtype") -> np.dtype:
    """Normalise an activation dtype: "float16"/"fp16"/np.float16 or "bfloat16"/"bf16"/ml_dtypes.bfloat16.
    `fn` and `name` are the caller and its argument, for the message.

    >>> as_activation_dtype("bf16")
    dtype(bfloat16)
    """
    if isinstance(dtype, str):
        if dtype in _DTYPE_NAMES:
            return _DTYPE_NAMES[dtype]
    elif dtype is not None:
        try:
            dt = np.dtype(dtype)
        except (TypeError, ValueError):
            dt = None
        if dt in (FP16, BF16):
            return dt
    raise ValueError(
        f"{fn}: {name} must be float16 or bfloat16 "
        f"('float16', 'fp16', 'bfloat16', 'bf16', np.float16, ml_dtypes.bfloat16), got {dtype!r}")


def exponent_bias_of(dtype) -> int:
    """beta = 2^(E_t - 1) - 2^(E_fp8 - 1) (§2.6): 8 for fp16, 120 for bf16.

    >>> exponent_bias_of("float16"), exponent_bias_of("bfloat16")
    (8, 120)
    """
    exp_bits = _FORMAT[as_activation_dtype(dtype, "exponent_bias_of")][0]
    return 2 ** (exp_bits - 1) - 2 ** (E4M3_EXP_BITS - 1)


def _codes(fn: str, name: str, a, allowed: np.dtype) -> np.ndarray:
    check_array(fn, name, a)
    if a.dtype == allowed or a.dtype == np.uint8:
        return a.view(np.uint8)
    raise TypeError(f"{fn}: {name} must have dtype {allowed.name} or uint8, got {a.dtype.name}")


def as_fp8_codes(a, fn: str = "as_fp8_codes", name: str = "codes") -> np.ndarray:
    """float8_e4m3fn or uint8 array -> uint8 view of the same bytes (no copy, no value cast)."""
    return _codes(fn, name, a, E4M3)


def as_e8m0_codes(a, fn: str = "as_e8m0_codes", name: str = "codes") -> np.ndarray:
    """float8_e8m0fnu or uint8 array -> uint8 view of the same bytes (no copy, no value cast)."""
    return _codes(fn, name, a, E8M0)


def _as_float64(fn: str, name: str, values) -> np.ndarray:
    """An array (or NumPy scalar) of an integer or float16/bfloat16/float32/float64 dtype, as float64.
    Lists are refused: we never guess a dtype."""
    a = np.asarray(values) if isinstance(values, np.generic) else check_array(fn, name, values)
    if not (a.dtype in FLOAT_DTYPES or (a.dtype.kind in "iu" and a.dtype.isnative)):
        raise TypeError(f"{fn}: {name} must be real numbers (an integer, float16, bfloat16, float32 or "
                        f"float64 array in native byte order), got dtype {a.dtype.name} ({a.dtype.str})")
    with np.errstate(invalid="ignore"):   # signalling NaN payloads warn; they stay NaN
        return a.astype(np.float64)       # exact for every accepted dtype (int64 beyond 2^53 aside)


def decode_e4m3(codes, *, nan_as: float | None = None) -> np.ndarray:
    """float8_e4m3fn bytes -> float64 values, from the s/eeee/mmm fields.

    nan_as: None keeps NaN for 0x7F/0xFF (negative NaN for 0xFF, as ml_dtypes/torch); a number v gives +v for 0x7F and -v for 0xFF (the kernel
    reads NaN codes as +-480, §3.1/§3.4: pass ``nan_as=KERNEL_E4M3_NAN_VALUE``).
    """
    fn = "decode_e4m3"
    c = as_fp8_codes(codes, fn)
    if nan_as is not None and (isinstance(nan_as, (bool, np.bool_)) or not isinstance(nan_as, numbers.Real)):
        raise TypeError(f"{fn}: nan_as must be None or a real number, got {nan_as!r} ({type(nan_as).__name__})")
    sign = np.where(c & E4M3_SIGN_BIT, -1.0, 1.0)
    e = (c >> E4M3_MANT_BITS) & 0xF                                  # biased exponent E
    m = (c & 0x7).astype(np.float64)                                 # mantissa m
    normal = np.ldexp(1.0 + m / 8.0, e.astype(np.int64) - E4M3_EXP_BIAS)
    subnormal = np.ldexp(m / 8.0, E4M3_MIN_NORMAL_EXP)
    value = sign * np.where(e > 0, normal, subnormal)                # -0.0 for 0x80
    is_nan = (c & 0x7F) == E4M3_NAN_CODE
    return np.where(is_nan, np.copysign(np.nan if nan_as is None else float(nan_as), sign), value)


def encode_e4m3(values, *, saturate: bool = False) -> np.ndarray:
    """Real values -> float8_e4m3fn bytes (uint8), round to nearest even from the float64 bit fields.

    Overflow (magnitude rounding above 448, and +-inf): NaN with the input's sign (ml_dtypes), or
    +-448 with ``saturate=True`` (torch 2.13). NaN -> 0x7F / 0xFF (sign kept, as both libraries do).
    """
    saturate = check_bool("encode_e4m3", "saturate", saturate)
    x = np.ascontiguousarray(_as_float64("encode_e4m3", "values", values))
    bits = x.view(np.uint64)
    sign = (bits >> np.uint64(63)).astype(np.uint8)
    exp_field = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    frac = bits & np.uint64((1 << 52) - 1)
    # value = sig * 2^(e - 52) with a 53-bit significand (the implicit 1 only for normal float64)
    sig = np.where(exp_field > 0, frac | np.uint64(1 << 52), frac)
    e = np.maximum(exp_field, 1) - 1023
    # e4m3 quantum: 2^(e-3) for normals, 2^-9 below 2^-6; shift = bits of sig below the quantum
    quantum_exp = np.maximum(e, E4M3_MIN_NORMAL_EXP) - E4M3_MANT_BITS
    shift = np.minimum(quantum_exp - (e - 52), 60).astype(np.uint64)   # >= 49; 60 already rounds to 0
    q = sig >> shift
    rem = sig & ((np.uint64(1) << shift) - np.uint64(1))
    half = np.uint64(1) << (shift - np.uint64(1))
    q = q + ((rem > half) | ((rem == half) & ((q & np.uint64(1)) == 1))).astype(np.uint64)
    q = q.astype(np.int64)
    # normal: q = 8 + m in [8, 16] and code = E*8 + m (q = 16 carries into E); subnormal: code = q
    code = np.where(e >= E4M3_MIN_NORMAL_EXP, ((e + E4M3_EXP_BIAS) << E4M3_MANT_BITS) + q - 8, q)
    is_nan = (exp_field == 0x7FF) & (frac != 0)
    overflow = (code > E4M3_MAX_CODE) & ~is_nan                      # includes +-inf
    code = np.where(overflow, E4M3_MAX_CODE if saturate else E4M3_NAN_CODE, code)
    code = np.where(is_nan, E4M3_NAN_CODE, code)
    return (code.astype(np.uint8) | (sign << 7)).reshape(x.shape)


def decode_e8m0(codes, *, kernel_faithful: bool = False) -> np.ndarray:
    """float8_e8m0fnu bytes -> float64 2^(b-127); 255 -> NaN (torch/ml_dtypes, §1).

    kernel_faithful=True gives what the MXFP8 GEMM's bit trick produces (§3.1): 0 -> 0.0, 255 -> +inf.
    """
    b = as_e8m0_codes(codes, "decode_e8m0")
    kernel_faithful = check_bool("decode_e8m0", "kernel_faithful", kernel_faithful)
    value = np.ldexp(1.0, b.astype(np.int64) - E8M0_BIAS)
    if kernel_faithful:
        return np.where(b == 0, 0.0, np.where(b == E8M0_NAN_CODE, np.inf, value))
    return np.where(b == E8M0_NAN_CODE, np.nan, value)


def encode_e8m0(values) -> np.ndarray:
    """Real values -> float8_e8m0fnu bytes (uint8) by c10's fp32 rule (§1); float64 input is first
    rounded to float32, as torch does.

    >>> encode_e8m0(np.array([1.0, 1.5, 1.4999, 0.0, -4.0, np.inf]))
    array([127, 128, 127,   0, 129, 255], dtype=uint8)
    """
    with np.errstate(over="ignore"):                          # beyond float32's range -> inf -> code 255
        f32 = np.ascontiguousarray(_as_float64("encode_e8m0", "values", values).astype(np.float32))
    bits = f32.view(np.uint32)
    exponent = ((bits >> 23) & 0xFF).astype(np.int64)       # the sign bit is ignored
    guard = (bits >> 22) & 1                                  # first bit below the implicit 1
    round_bit = (bits >> 21) & 1
    sticky = (bits & 0x1FFFFF) != 0
    lsb = exponent > 0                                        # implicit bit: 0 for fp32 subnormals
    round_up = (guard == 1) & ((round_bit == 1) | sticky | lsb)
    code = np.where(exponent == 0xFF, E8M0_NAN_CODE, exponent + round_up)   # 254 + 1 -> 255 (NaN)
    return code.astype(np.uint8).reshape(f32.shape)


def round_to_dtype(x, dtype) -> np.ndarray:
    """RT(x): round to nearest even to fp16/bf16 (one rounding from float64), returned as float64.

    Overflow (|x| rounding above the dtype's max) -> +-inf; NaN stays NaN; signed zeros kept.

    >>> round_to_dtype(np.array([1 + 2**-11, 1 + 3 * 2**-11, 65520.0]), "fp16")
    array([1.       , 1.0019531,       inf])
    >>> round_to_dtype(np.array([1 + 2**-8 + 2**-30, 255.5]), "bf16")
    array([  1.0078125, 256.       ])
    """
    _, mant_bits, min_normal_exp, max_finite = _FORMAT[as_activation_dtype(dtype, "round_to_dtype")]
    v = _as_float64("round_to_dtype", "x", x)
    with np.errstate(invalid="ignore", over="ignore"):
        _, frexp_exp = np.frexp(v)                            # v = f * 2^frexp_exp, f in [0.5, 1)
        quantum_exp = np.maximum(frexp_exp - 1, min_normal_exp) - mant_bits
        r = np.ldexp(np.rint(np.ldexp(v, -quantum_exp)), quantum_exp)   # np.rint: ties to even
        r = np.where(np.abs(r) > max_finite, np.copysign(np.inf, v), r)
    return np.where(np.isfinite(v), r, v)
