"""Permute a [G, N] scale grid into the order the Marlin kernel loads it (spec §2.4).

Layout card
-----------
    input   s[G, N]   any element dtype; G = size_k/group_size groups (1 for channel-wise)
    output  s'[G, N]  same dtype; each run of 64 (grouped) or 32 (single) entries of the row-major
                      flattening is gathered independently (chunks never straddle rows)
    grouped (group_size != -1 and group_size < size_k): out[64a + 8*c8 + i] = in[64a + c8 + 8*i]
        lane group c8 loads positions 8*c8..8*c8+7 = columns c8 + 8i; pair (2j, 2j+1) are the columns
        of its frag_b0/frag_b1 in block j (scales applied before the mma)
    single (otherwise): out[32a + 8*q + 2*jj + e] = in[32a + 8*jj + 2*q + e]
        thread-in-group q owns accumulator columns (2q, 2q+1) of every n8 sub-tile (applied after)

    >>> grid = np.arange(128).reshape(2, 64)                    # G = 2 groups of 128, size_k = 256
    >>> marlin_permute_scales(grid, 256, 64, 128)[1, :10]       # grouped: 128 < 256
    array([ 64,  72,  80,  88,  96, 104, 112, 120,  65,  73])
    >>> row = np.arange(64)[None, :]
    >>> marlin_permute_scales(row, 128, 64, 128)[0, :10]        # single: K == block_k (G = 1)
    array([ 0,  1,  8,  9, 16, 17, 24, 25,  2,  3])

group_size is one of vLLM's MARLIN_SUPPORTED_GROUP_SIZES, or equal to size_k for any size_k (one group: the
single permutation, exactly the channel-wise result; vLLM accepts it, §9).

The kernel picks its path from G (G > 1 -> grouped) while this picks it from group_size < size_k;
they agree iff G*group_size == size_k, so that is checked (a wrong size_k silently switches the
permutation in vLLM, PR #50196).
"""

from __future__ import annotations

import numpy as np

from marlin_ref.errors import check_int, check_multiple, check_positive, check_rank
from marlin_ref.layout import GROUPED_PERM_CHUNK, N8, SINGLE_PERM_CHUNK, THREADS_PER_GROUP

SUPPORTED_GROUP_SIZES = (-1, 32, 64, 128)   # vLLM MARLIN_SUPPORTED_GROUP_SIZES (§2.13); -1 = channel-wise


def grouped_scale_order() -> np.ndarray:
    """out[p] = in[order[p]] inside one 64-entry chunk: position 8*c8 + i holds column c8 + 8*i."""
    columns = np.arange(GROUPED_PERM_CHUNK).reshape(8, N8)     # [i, c8]: column 8*i + c8
    return columns.T.reshape(GROUPED_PERM_CHUNK)               # [c8, i] -> 64


def single_scale_order() -> np.ndarray:
    """out[p] = in[order[p]] inside one 32-entry chunk: position 8*q + 2*jj + e holds column
    8*jj + 2*q + e (q = thread-in-group, e = which of the lane's two adjacent accumulator columns)."""
    columns = np.arange(SINGLE_PERM_CHUNK).reshape(4, THREADS_PER_GROUP, 2)   # [jj, q, e]
    return columns.transpose(1, 0, 2).reshape(SINGLE_PERM_CHUNK)              # [q, jj, e] -> 32


def check_group_size(fn: str, size_k, group_size) -> tuple[int, int]:
    """(size_k, group_size): size_k positive; group_size one of vLLM's sizes, or size_k itself (one group
    spanning K: vLLM takes the single permutation and the kernel sees G = 1, channel-wise, §2.4, §9)."""
    size_k = check_positive(fn, "size_k", size_k)
    group_size = check_int(fn, "group_size", group_size)
    if group_size not in SUPPORTED_GROUP_SIZES and group_size != size_k:
        raise ValueError(f"{fn}: group_size={group_size} must be one of {list(SUPPORTED_GROUP_SIZES)} "
                         f"or equal size_k={size_k} (a single group)")
    return size_k, group_size


def uses_grouped_scale_permutation(size_k, group_size) -> bool:
    """True iff the 64-entry grouped permutation applies: group_size != -1 and group_size < size_k.

    >>> uses_grouped_scale_permutation(4096, 128), uses_grouped_scale_permutation(128, 128)
    (True, False)
    >>> uses_grouped_scale_permutation(384, 384)        # one group of any size: single (§9)
    False
    """
    size_k, group_size = check_group_size("uses_grouped_scale_permutation", size_k, group_size)
    return group_size != -1 and group_size < size_k


def _check(fn, s, size_k, size_n, group_size) -> np.ndarray:
    """Validate and return the chunk order (grouped or single)."""
    check_rank(fn, "s", s, 2)
    size_k, group_size = check_group_size(fn, size_k, group_size)
    size_n = check_positive(fn, "size_n", size_n)
    if s.shape[1] != size_n:
        raise ValueError(f"{fn}: s must have size_n={size_n} columns, got shape {s.shape}")
    num_groups = s.shape[0]
    if group_size == -1 and num_groups != 1:
        raise ValueError(f"{fn}: group_size=-1 (channel-wise) needs s with 1 row, got shape {s.shape}")
    if group_size != -1 and num_groups * group_size != size_k:
        raise ValueError(f"{fn}: s rows * group_size must equal size_k={size_k} "
                         f"(G*group_size == size_k), got G={num_groups}, group_size={group_size}")
    grouped = group_size != -1 and group_size < size_k
    chunk = GROUPED_PERM_CHUNK if grouped else SINGLE_PERM_CHUNK
    check_multiple(fn, "size_n", size_n, chunk)
    return grouped_scale_order() if grouped else single_scale_order()


def marlin_permute_scales(s, size_k, size_n, group_size) -> np.ndarray:
    """[G, N] logical scales -> [G, N] in kernel load order (a new array, same dtype)."""
    order = _check("marlin_permute_scales", s, size_k, size_n, group_size)
    chunks = s.reshape(-1, order.size)                         # [G*N/chunk, chunk]
    return np.ascontiguousarray(chunks[:, order].reshape(s.shape))   # [G, N]


def marlin_unpermute_scales(s, size_k, size_n, group_size) -> np.ndarray:
    """Inverse of `marlin_permute_scales`: kernel order -> logical [G, N]."""
    order = _check("marlin_unpermute_scales", s, size_k, size_n, group_size)
    chunks = s.reshape(-1, order.size)                         # [G*N/chunk, chunk]
    return np.ascontiguousarray(chunks[:, np.argsort(order)].reshape(s.shape))   # [G, N]
