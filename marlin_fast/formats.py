"""Number formats of the Marlin FP8 path (spec §1) and the dtype arguments the API accepts.

    e4m3fn byte b : s·eeee·mmm, bias 7; E>=1: (-1)^s 2^(E-7) (1 + m/8); E=0: (-1)^s 2^-6 m/8; 0x7F/0xFF NaN
    e8m0 byte b   : 2^(b-127); b=255 NaN; no zero, no sign
    exponent bias : beta = 2^(E_t-1) - 2^(E_fp8-1), E_fp8 = 4  ->  fp16 (E_t=5): 8, bf16 (E_t=8): 120  (§2.6)

Codes are accepted as uint8 or as the float8 dtype. Dtype arguments are torch dtypes, names ("bfloat16",
"bf16", ...) or NumPy / ml_dtypes dtypes; an unsupported one is a ValueError (a tensor of the wrong
dtype is a TypeError). Rounding (round_to_dtype, encode_e4m3) is one round-to-nearest-even from the
input's exact value: torch casts float64 to fp16/bf16/e4m3 through float32, a double rounding, so the
grid rounding below is done in float64 first and the final cast is exact.

    >>> decode_e4m3(torch.tensor([0x38, 0x40, 0xB8, 0x7E], dtype=torch.uint8)).tolist()
    [1.0, 2.0, -1.0, 448.0]
    >>> exponent_bias_of("bfloat16"), exponent_bias_of(torch.float16)
    (120, 8)
    >>> encode_e4m3(torch.tensor([1.0, 464.0, 465.0, 1 + 2**-4 + 2**-40], dtype=torch.float64)).tolist()
    [56, 126, 127, 57]
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from .errors import check_bool, check_dtype, check_tensor

FP8_EXPONENT_BITS = 4  # float8_e4m3fn: 4 exponent bits (spec §1)
E4M3_MANT_BITS, E4M3_MIN_NORMAL_EXP = 3, -6
E4M3_MAX, E4M3_TIE_ABOVE_MAX = 448.0, 464.0  # 464 is the tie between 448 and 512: even 448 wins
E4M3_MAX_CODE, E4M3_NAN_CODE, E4M3_SIGN_BIT = 0x7E, 0x7F, 0x80
E8M0_NAN_CODE = 255
# exponent bits, explicit mantissa bits, unbiased exponent of the smallest normal, largest finite
_FORMAT = {torch.float16: (5, 10, -14, 65504.0), torch.bfloat16: (8, 7, -126, float.fromhex("0x1.fep127"))}

_DTYPE_NAMES = {
    "float16": torch.float16, "fp16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float32": torch.float32, "fp32": torch.float32,
    "float64": torch.float64, "fp64": torch.float64,
    # 8-bit names resolve too, so callers can say why they refuse them (W8A8 activations, §2.8)
    "int8": torch.int8, "uint8": torch.uint8, "float8_e4m3fn": torch.float8_e4m3fn,
}
ACTIVATION_DTYPES = (torch.float16, torch.bfloat16)
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
REAL_DTYPES = FLOAT_DTYPES + (torch.float64,)


def as_torch_dtype(dtype, fn: str, name: str) -> torch.dtype:
    """A torch dtype, a name ("bfloat16", "bf16", ...) or a NumPy / ml_dtypes dtype, as a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    key = dtype if isinstance(dtype, str) else None
    if key is None and dtype is not None:  # np.dtype(None) would be float64: None names no dtype
        try:  # np.float16, ml_dtypes.bfloat16, np.dtype("float32") ...: go by their name
            key = np.dtype(dtype).name
        except (TypeError, ValueError):  # not a dtype at all (a tensor has a .dtype numpy cannot read)
            key = None
    if key not in _DTYPE_NAMES:
        raise ValueError(f"{fn}: {name}={dtype!r} must be a torch dtype or one of {sorted(_DTYPE_NAMES)}")
    return _DTYPE_NAMES[key]


def _one_of(fn: str, name: str, dtype, allowed) -> torch.dtype:
    resolved = as_torch_dtype(dtype, fn, name)
    if resolved not in allowed:
        names = " or ".join(str(d).removeprefix("torch.") for d in allowed)
        raise ValueError(f"{fn}: {name}={dtype!r} must be {names}")
    return resolved


def as_activation_dtype(dtype, fn: str = "as_activation_dtype", name: str = "dtype") -> torch.dtype:
    """torch.float16 or torch.bfloat16 from a torch dtype or a name ("float16", "bf16", ...).

    >>> as_activation_dtype("bf16")
    torch.bfloat16
    """
    return _one_of(fn, name, dtype, ACTIVATION_DTYPES)


def as_float_dtype(dtype, fn: str = "as_float_dtype", name: str = "dtype", *, allowed=FLOAT_DTYPES) -> torch.dtype:
    """Like as_activation_dtype, for intermediate / decode dtypes (float32 too by default)."""
    return _one_of(fn, name, dtype, allowed)


def exponent_bias_of(dtype) -> int:
    """beta of spec §2.6: the power of two the skip-flop FP8 dequant leaves out (8 fp16, 120 bf16)."""
    target_bits = _FORMAT[as_activation_dtype(dtype, "exponent_bias_of")][0]
    return 2 ** (target_bits - 1) - 2 ** (FP8_EXPONENT_BITS - 1)


def real_values(fn: str, name: str, t) -> torch.Tensor:
    """A tensor of real numbers (an integer dtype, bool excluded, or float16/bfloat16/float32/float64) as float64."""
    check_tensor(fn, name, t)
    integer = not (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)
    if not (integer or t.dtype in REAL_DTYPES):
        raise TypeError(f"{fn}: {name} must be real numbers (an integer, float16, bfloat16, float32 or float64 "
                        f"tensor), got dtype {str(t.dtype).removeprefix('torch.')}")
    return t.to(torch.float64)


def fp8_codes(t: torch.Tensor, fn: str, name: str) -> torch.Tensor:
    """The uint8 bit patterns of an e4m3fn tensor given as float8_e4m3fn or uint8 (a view, no copy)."""
    return check_dtype(fn, name, t, (torch.float8_e4m3fn, torch.uint8)).view(torch.uint8)


def e8m0_codes(t: torch.Tensor, fn: str, name: str) -> torch.Tensor:
    """The uint8 bit patterns of an e8m0 tensor given as float8_e8m0fnu or uint8 (a view, no copy)."""
    return check_dtype(fn, name, t, (torch.float8_e8m0fnu, torch.uint8)).view(torch.uint8)


def _round_to_grid(x: torch.Tensor, mant_bits: int, min_normal_exp: int) -> torch.Tensor:
    """float64 x rounded once, to nearest even, onto the grid of a format with `mant_bits` explicit
    mantissa bits and smallest normal exponent `min_normal_exp` (no overflow handling; exact in float64)."""
    _, exp = torch.frexp(x)  # x = f · 2^exp, f in [0.5, 1)
    quantum = torch.clamp(exp - 1, min=min_normal_exp) - mant_bits  # spacing exponent at x
    return torch.ldexp(torch.round(torch.ldexp(x, -quantum)), quantum)  # torch.round: ties to even


def decode_e4m3(codes: torch.Tensor, *, nan_as: float | None = None) -> torch.Tensor:
    """dec(b) of spec §1 as float64; nan_as=v reads 0x7F / 0xFF as +v / -v (the kernel's ±480, §3.1)."""
    c = fp8_codes(codes, "decode_e4m3", "codes")
    if nan_as is not None and (isinstance(nan_as, (bool, np.bool_)) or not isinstance(nan_as, numbers.Real)):
        raise TypeError(f"decode_e4m3: nan_as must be None or a real number, got {nan_as!r} ({type(nan_as).__name__})")
    values = c.view(torch.float8_e4m3fn).to(torch.float64)
    sign = torch.where((c & E4M3_SIGN_BIT) != 0, -1.0, 1.0).to(torch.float64)
    nan_value = float("nan") if nan_as is None else float(nan_as)  # canonical quiet NaN, not torch's payload
    return torch.where((c & 0x7F) == E4M3_NAN_CODE, torch.copysign(torch.full_like(values, nan_value), sign), values)


def encode_e4m3(values: torch.Tensor, *, saturate: bool = False) -> torch.Tensor:
    """uint8 e4m3fn codes, one round-to-nearest-even; overflow (|x| > 464, ±inf) -> NaN with the sign,
    or ±448 with saturate=True; NaN -> 0x7F / 0xFF."""
    saturate = check_bool("encode_e4m3", "saturate", saturate)
    x = real_values("encode_e4m3", "values", values)
    r = _round_to_grid(torch.where(torch.isfinite(x), x, 0.0), E4M3_MANT_BITS, E4M3_MIN_NORMAL_EXP)
    codes = r.clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).view(torch.uint8)  # exact: r on the grid
    sign = torch.where(torch.signbit(x), E4M3_SIGN_BIT, 0).to(torch.uint8)
    overflow = (x.abs() > E4M3_TIE_ABOVE_MAX) & ~torch.isnan(x)  # ±inf included
    overflow_code = E4M3_MAX_CODE if saturate else E4M3_NAN_CODE
    special = torch.where(torch.isnan(x), E4M3_NAN_CODE, overflow_code).to(torch.uint8)
    return torch.where(overflow | torch.isnan(x), special | sign, codes)


def e8m0_to_float(codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """torch's e8m0 cast of uint8 codes, except that byte 255 gives the canonical quiet NaN: torch's
    float32 result for it is the signalling NaN 0x7F800001 (a payload §1 does not ask for)."""
    values = codes.view(torch.float8_e8m0fnu).to(dtype)
    return torch.where(codes == E8M0_NAN_CODE, torch.full_like(values, float("nan")), values)


def decode_e8m0(codes: torch.Tensor, *, kernel_faithful: bool = False) -> torch.Tensor:
    """2^(b-127) as float64 (255 -> NaN); kernel_faithful=True gives the MX dequant's 0 -> 0, 255 -> +inf."""
    b = e8m0_codes(codes, "decode_e8m0", "codes")
    kernel_faithful = check_bool("decode_e8m0", "kernel_faithful", kernel_faithful)
    values = e8m0_to_float(b, torch.float64)
    if not kernel_faithful:
        return values
    return torch.where(b == 0, 0.0, torch.where(b == E8M0_NAN_CODE, float("inf"), values))


def encode_e8m0(values: torch.Tensor) -> torch.Tensor:
    """uint8 e8m0 codes by torch's fp32 rule (§1: sign ignored, NaN/Inf -> 255, 0 -> 0); float64 first
    rounds to float32, exactly as torch does."""
    x = real_values("encode_e8m0", "values", values)
    return x.to(torch.float32).to(torch.float8_e8m0fnu).view(torch.uint8)


def round_to_dtype(x: torch.Tensor, dtype) -> torch.Tensor:
    """RT(x) of spec §0.2 as float64: one round-to-nearest-even to fp16/bf16, overflow -> ±inf."""
    _, mant_bits, min_normal_exp, max_finite = _FORMAT[as_activation_dtype(dtype, "round_to_dtype")]
    v = real_values("round_to_dtype", "x", x)
    r = _round_to_grid(torch.where(torch.isfinite(v), v, 0.0), mant_bits, min_normal_exp)
    r = torch.where(r.abs() > max_finite, torch.copysign(torch.full_like(r, float("inf")), v), r)
    return torch.where(torch.isfinite(v), r, v)
