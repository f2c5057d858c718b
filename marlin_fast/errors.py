"""Input validation for the fast path: every failure names the function, the rule and the value.

Messages read ``"<fn>: <name>=<value> must be <rule>"`` for scalars (the design contract's example)
and ``"<fn>: <name> must be <rule>, got <what it was>"`` for tensors, so one ``pytest.raises(match=...)``
pattern fits both the oracle and this package.

    >>> check_multiple("gptq_marlin_repack", "size_n", 96, 64)
    Traceback (most recent call last):
    ...
    ValueError: gptq_marlin_repack: size_n=96 must be a multiple of 64
"""

from __future__ import annotations

import numbers

import numpy as np
import torch


def check_tensor(fn: str, name: str, t) -> torch.Tensor:
    """`t` must already be a torch.Tensor (we never guess a dtype or a device for a list)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def check_int(fn: str, name: str, value) -> int:
    """A Python integer (bool excluded; NumPy integers pass through numbers.Integral)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
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


def check_group_size(fn: str, name: str, value) -> int:
    """-1 (one group spanning all of K, i.e. channel-wise) or a positive group length."""
    value = check_int(fn, name, value)
    if value != -1 and value <= 0:
        raise ValueError(f"{fn}: {name}={value} must be -1 or positive")
    return value


def check_nonempty(fn: str, name: str, t: torch.Tensor) -> torch.Tensor:
    if t.numel() == 0:
        raise ValueError(f"{fn}: {name} must not be empty, got shape {tuple(t.shape)}")
    return t


def check_rank(fn: str, name: str, t, rank: int) -> torch.Tensor:
    check_tensor(fn, name, t)
    if t.dim() != rank:
        raise ValueError(f"{fn}: {name} must be {rank}-D, got shape {tuple(t.shape)}")
    return t


def check_shape(fn: str, name: str, t, shape: tuple, why: str = "") -> torch.Tensor:
    check_tensor(fn, name, t)
    if tuple(t.shape) != tuple(shape):
        because = f" ({why})" if why else ""
        raise ValueError(f"{fn}: {name} must have shape {tuple(shape)}{because}, got {tuple(t.shape)}")
    return t


def check_dtype(fn: str, name: str, t, allowed) -> torch.Tensor:
    """`allowed`: a sequence of torch dtypes."""
    check_tensor(fn, name, t)
    if t.dtype not in allowed:
        names = ", ".join(_dtype_name(d) for d in allowed)
        raise TypeError(f"{fn}: {name} must have dtype in [{names}], got {_dtype_name(t.dtype)}")
    return t


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
