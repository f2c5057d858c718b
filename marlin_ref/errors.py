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

import numpy as np


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


def check_positive(fn: str, name: str, value) -> int:
    value = check_int(fn, name, value)
    if value <= 0:
        raise ValueError(f"{fn}: {name}={value} must be positive")
    return value


def check_multiple(fn: str, name: str, value, multiple: int) -> int:
    value = check_int(fn, name, value)
    if value % multiple != 0:
        raise ValueError(f"{fn}: {name}={value} must be a multiple of {multiple}")
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


def check_dtype(fn: str, name: str, a: np.ndarray, allowed) -> np.ndarray:
    """`allowed`: a list of dtypes (anything np.dtype() accepts)."""
    check_array(fn, name, a)
    allowed = [np.dtype(d) for d in allowed]
    if a.dtype not in allowed:
        names = ", ".join(d.name for d in allowed)
        raise TypeError(f"{fn}: {name} must have dtype in [{names}], got {a.dtype.name}")
    return a
