"""Number formats of the Marlin FP8 path (spec §1) and the dtype arguments the API accepts.

    e4m3fn byte b : s·eeee·mmm, bias 7; E>=1: (-1)^s 2^(E-7) (1 + m/8); E=0: (-1)^s 2^-6 m/8; 0x7F/0xFF NaN
    e8m0 byte b   : 2^(b-127); b=255 NaN; no zero, no sign
    exponent bias : beta = 2^(E_t-1) - 2^(E_fp8-1), E_fp8 = 4  ->  fp16 (E_t=5): 8, bf16 (E_t=8): 120  (§2.6)

Torch's own casts implement §1 (fp32 -> e8m0fnu rounds the significand to a power of two, NaN/Inf -> 255),
so encode/decode here are casts; the point of the module is to accept codes as uint8 *or* the float8
dtype, and dtype arguments as strings or torch dtypes.

    >>> decode_e4m3(torch.tensor([0x38, 0x40, 0xB8, 0x7E], dtype=torch.uint8)).tolist()
    [1.0, 2.0, -1.0, 448.0]
    >>> exponent_bias_of("bfloat16"), exponent_bias_of(torch.float16)
    (120, 8)
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import check_dtype

FP8_EXPONENT_BITS = 4  # float8_e4m3fn: 4 exponent bits (spec §1)
EXPONENT_BITS = {torch.float16: 5, torch.bfloat16: 8}  # exponent field widths of the activation dtypes

_DTYPE_NAMES = {
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
}
ACTIVATION_DTYPES = (torch.float16, torch.bfloat16)
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def as_torch_dtype(dtype, fn: str, name: str) -> torch.dtype:
    """A torch dtype, a name ("bfloat16", "bf16", ...) or a NumPy / ml_dtypes dtype, as a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        key = dtype
    else:
        try:  # np.float16, ml_dtypes.bfloat16, np.dtype("float32") ...: go by their name
            key = np.dtype(dtype).name
        except TypeError:
            raise TypeError(f"{fn}: {name} must be a dtype or a dtype name, got {dtype!r}") from None
    if key not in _DTYPE_NAMES:
        raise TypeError(f"{fn}: {name}={dtype!r} must be one of {sorted(_DTYPE_NAMES)}")
    return _DTYPE_NAMES[key]


def as_activation_dtype(dtype, fn: str = "as_activation_dtype", name: str = "dtype") -> torch.dtype:
    """torch.float16 or torch.bfloat16 from a torch dtype or a name ("float16", "bf16", ...).

    >>> as_activation_dtype("bf16")
    torch.bfloat16
    """
    resolved = as_torch_dtype(dtype, fn, name)
    if resolved not in ACTIVATION_DTYPES:
        raise TypeError(f"{fn}: {name}={dtype!r} must be float16 or bfloat16")
    return resolved


def as_float_dtype(dtype, fn: str = "as_float_dtype", name: str = "dtype") -> torch.dtype:
    """Like as_activation_dtype, but float32 is allowed too (intermediate / decode dtypes)."""
    resolved = as_torch_dtype(dtype, fn, name)
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"{fn}: {name}={dtype!r} must be float16, bfloat16 or float32")
    return resolved


def exponent_bias_of(dtype) -> int:
    """beta of spec §2.6: the power of two the skip-flop FP8 dequant leaves out (8 fp16, 120 bf16)."""
    target_bits = EXPONENT_BITS[as_activation_dtype(dtype, "exponent_bias_of")]
    return 2 ** (target_bits - 1) - 2 ** (FP8_EXPONENT_BITS - 1)


def fp8_codes(t: torch.Tensor, fn: str, name: str) -> torch.Tensor:
    """The uint8 bit patterns of an e4m3fn tensor given as float8_e4m3fn or uint8 (a view, no copy)."""
    check_dtype(fn, name, t, (torch.float8_e4m3fn, torch.uint8))
    return t.view(torch.uint8)


def e8m0_codes(t: torch.Tensor, fn: str, name: str) -> torch.Tensor:
    """The uint8 bit patterns of an e8m0 tensor given as float8_e8m0fnu or uint8 (a view, no copy)."""
    check_dtype(fn, name, t, (torch.float8_e8m0fnu, torch.uint8))
    return t.view(torch.uint8)


def decode_e4m3(codes: torch.Tensor, dtype="float32") -> torch.Tensor:
    """dec(b) of spec §1, exact in float32 (and in fp16/bf16: 4 significant bits, exponents -9..8)."""
    out = as_float_dtype(dtype, "decode_e4m3")
    return fp8_codes(codes, "decode_e4m3", "codes").view(torch.float8_e4m3fn).to(out)


def encode_e4m3(x: torch.Tensor) -> torch.Tensor:
    """Round to float8_e4m3fn with torch's cast (round-to-nearest-even; see torch for out-of-range)."""
    check_dtype("encode_e4m3", "x", x, FLOAT_DTYPES)
    return x.to(torch.float8_e4m3fn)


def decode_e8m0(codes: torch.Tensor, dtype="float32") -> torch.Tensor:
    """2^(b-127) (byte 255 -> NaN); exact in float32 and bfloat16, not in float16 (§2.10 hazard)."""
    out = as_float_dtype(dtype, "decode_e8m0")
    return e8m0_codes(codes, "decode_e8m0", "codes").view(torch.float8_e8m0fnu).to(out)


def encode_e8m0(x: torch.Tensor) -> torch.Tensor:
    """torch's fp32 -> e8m0fnu cast of spec §1 (sign ignored, NaN/Inf -> 255, 0 -> byte 0)."""
    check_dtype("encode_e8m0", "x", x, FLOAT_DTYPES)
    return x.to(torch.float8_e8m0fnu)


def round_to_dtype(x: torch.Tensor, dtype) -> torch.Tensor:
    """RT(x): round-to-nearest-even to fp16/bf16 (the cast every 'scale.to(orig_dtype)' performs)."""
    check_dtype("round_to_dtype", "x", x, (torch.float16, torch.bfloat16, torch.float32, torch.float64))
    return x.to(as_activation_dtype(dtype, "round_to_dtype"))
