"""Permute a bias into the kernel's accumulator-fragment order (spec §2.5).

Layout card
-----------
    input   bias[...]   any shape ([N] or [E, N]) whose total size is a multiple of 32; any dtype
    output  same shape and dtype: the row-major flattening, cut into chunks of 32, each gathered with
            the *single* scale permutation (§2.4): out[32a + 8*q + 2*jj + e] = in[32a + 8*jj + 2*q + e]
    why: the kernel adds the bias to the accumulator fragment, where thread-in-group q owns columns
         (2q, 2q+1) of each n8 sub-tile, like channel-wise scales. Only for a bias passed *into* the
         kernel (b_bias); a bias added after the GEMM stays in logical order.

    >>> marlin_permute_bias(np.arange(64))[:16]
    array([ 0,  1,  8,  9, 16, 17, 24, 25,  2,  3, 10, 11, 18, 19, 26, 27])
"""

from __future__ import annotations

import numpy as np

from marlin_ref.errors import check_array, check_nonempty
from marlin_ref.layout import SINGLE_PERM_CHUNK
from marlin_ref.marlin_permute_scales import single_scale_order


def _chunks(fn: str, bias) -> np.ndarray:
    check_array(fn, "bias", bias)
    if bias.ndim < 1:
        raise ValueError(f"{fn}: bias must have at least 1 dimension, got shape {bias.shape}")
    check_nonempty(fn, "bias", bias)
    if bias.size % SINGLE_PERM_CHUNK != 0:
        raise ValueError(f"{fn}: bias.size={bias.size} must be a multiple of {SINGLE_PERM_CHUNK} "
                         f"(shape {bias.shape})")
    return bias.reshape(-1, SINGLE_PERM_CHUNK)                 # [numel/32, 32]


def marlin_permute_bias(bias) -> np.ndarray:
    """Logical order -> kernel order (a new array, same shape and dtype)."""
    chunks = _chunks("marlin_permute_bias", bias)
    return np.ascontiguousarray(chunks[:, single_scale_order()].reshape(bias.shape))


def marlin_unpermute_bias(bias) -> np.ndarray:
    """Kernel order -> logical order; inverse of `marlin_permute_bias`."""
    chunks = _chunks("marlin_unpermute_bias", bias)
    return np.ascontiguousarray(chunks[:, np.argsort(single_scale_order())].reshape(bias.shape))
