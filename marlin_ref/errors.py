"""Shared input validation for the oracle: every failure names the function, the rule and the value.

Messages read ``"<fn>: <name>=<value> must be <rule>"`` for scalars (the design contract's example,
``gptq_marlin_repack: size_n=96 must be a multiple of 64``) and
``"<fn>: <name> must be <rule>, got <what it was>"`` for arrays.

    >>> check_multiple("gptq_marlin_repack", "size_n", 96, 64)
    Traceback (most recent call last):
    ...
    ValueError: gptq_marlin_repack: size_n=96 must be a multiple of 64
"""

from __future__ import annotations

import numbers

import ml_dtypes
import numpy as np

# real-valued element types a float argument (values, activations, a bound's inputs) may have
FLOAT_DTYPES = tuple(np.dtype(d) for d in (np.float16, ml_dtypes.bfloat16, np.float32, np.float64))


def check_array(fn: str, name: str, a) -> np.ndarray:
    """`a` must already be a NumPy array (we never guess a dtype for a list)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray, got {type(a).__name__}")
    return a


def check_int(fn: str, name: str, value) -> int:
    """A Python or NumPy integer (bool excluded), returned as a Python int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be an integer, got {value!r} ({type(value).__name__})")
    return int(value)


def check_bool(fn: str, name: str, value) -> bool:
    """A Python bool or numpy.bool_ (a string such as "False" would otherwise count as true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be a bool, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_positive(fn: str, name: str, value) -> int:
    value = check_int(fn, name, value)
    if value <= 0:
        raise ValueError(f"{fn}: {name}={value} must be positive")
    return value


def check_multiple(fn: str, name: str, value, multiple: int, why: str = "") -> int:
    value = check_int(fn, name, value)
    if value % multiple != 0:
        because = f" ({why})" if why else ""
        raise ValueError(f"{fn}: {name}={value} must be a multiple of {multiple}{because}")
    return value


def check_one_of(fn: str, name: str, value, allowed) -> int:
    value = check_int(fn, name, value)
    if value not in allowed:
        raise ValueError(f"{fn}: {name}={value} must be one of {list(allowed)}")
    return value


def check_rank(fn: str, name: str, a: np.ndarray, rank: int) -> np.ndarray:
    check_array(fn, name, a)
    if a.ndim != rank:
        raise ValueError(f"{fn}: {name} must be {rank}-D, got shape {a.shape}")
    return a


def check_shape(fn: str, name: str, a: np.ndarray, shape: tuple, why: str = "") -> np.ndarray:
    check_array(fn, name, a)
    if tuple(a.shape) != tuple(shape):
        because = f" ({why})" if why else ""
        raise ValueError(f"{fn}: {name} must have shape {tuple(shape)}{because}, got {a.shape}")
    return a


def check_nonempty(fn: str, name: str, a: np.ndarray) -> np.ndarray:
    if a.size == 0:
        raise ValueError(f"{fn}: {name} must not be empty, got shape {a.shape}")
    return a


def check_dtype(fn: str, name: str, a: np.ndarray, allowed) -> np.ndarray:
    """`allowed`: a list of dtypes (anything np.dtype() accepts), in native byte order.

    >>> check_dtype("f", "q", np.zeros(2, ">i4"), [np.int32])
    Traceback (most recent call last):
    ...
    TypeError: f: q must have native byte order, got big-endian int32 (>i4); convert it with .astype('int32')
    """
    check_array(fn, name, a)
    allowed = [np.dtype(d) for d in allowed]
    if a.dtype not in allowed:
        native = a.dtype.newbyteorder("=")
        if native != a.dtype and native in allowed:   # same type, other byte order: the name alone would not say
            order = "big-endian" if a.dtype.byteorder == ">" else "little-endian"
            raise TypeError(f"{fn}: {name} must have native byte order, got {order} {a.dtype.name} "
                            f"({a.dtype.str}); convert it with .astype({native.name!r})")
        names = ", ".join(d.name for d in allowed)
        raise TypeError(f"{fn}: {name} must have dtype in [{names}], got {a.dtype.name}")
    return a


def check_float_array(fn: str, name: str, a, rank: int | None = None) -> np.ndarray:
    """A real float array (float16, bfloat16, float32 or float64), of the given rank if one is given."""
    check_dtype(fn, name, a, FLOAT_DTYPES)
    return a if rank is None else check_rank(fn, name, a, rank)
