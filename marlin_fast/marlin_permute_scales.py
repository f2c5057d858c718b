"""Permute [G, N] scales into the order the Marlin kernel reads them (spec §2.4).

    s   : [G, N] any dtype (elements are only moved), N a multiple of the chunk length;
          G == 1 for group_size -1, else G·group_size == size_k; group_size in {-1, 32, 64, 128}, or
          group_size == size_k for any size_k (one group: the single permutation, channel-wise, §9)
    out : [G, N] contiguous; the row-major flattening is cut into chunks and each chunk is gathered:
      grouped (64-entry chunks), iff group_size != -1 and group_size < size_k:
          out[64a + p] = s[64a + p // 8 + 8·(p % 8)]
      single (32-entry chunks), otherwise (channel-wise, and block FP8 with K == block_k):
          out[32a + p] = s[32a + 2·(p // 8) + (p % 2) + 8·((p % 8) // 2)]

Why: grouped scales are applied to the B fragment before the MMA; lane t (c8 = t // 4) loads the
8 entries 8·c8.. = columns c8 + 8i. Single-permuted scales (and the bias, §2.5) are applied to the
accumulator, where lane q owns columns (2q, 2q+1) of each n8 sub-tile.

    >>> cols = torch.arange(64).repeat(2, 1)          # two groups of 128 along K = 256
    >>> marlin_permute_scales(cols, 256, 64, 128)[0, :10].tolist()
    [0, 8, 16, 24, 32, 40, 48, 56, 1, 9]
    >>> marlin_permute_scales(cols[:1], 256, 64, -1)[0, :10].tolist()
    [0, 1, 8, 9, 16, 17, 24, 25, 2, 3]
"""

from __future__ import annotations

import torch

from .errors import check_int, check_multiple, check_positive, check_rank, check_shape

GROUPED_CHUNK = 64  # one 64-column warp tile: 8 lane groups (c8) x 8 scales each
SINGLE_CHUNK = 32   # accumulator layout: 4 lanes x (4 pairs) of adjacent columns
SUPPORTED_GROUP_SIZES = (-1, 32, 64, 128)  # vLLM's MARLIN_SUPPORTED_GROUP_SIZES (§2.13); -1 = channel-wise


def grouped_scale_perm(device=None) -> torch.Tensor:
    """int64[64]: out[p] = in[p // 8 + 8·(p % 8)] inside one 64-entry chunk."""
    p = torch.arange(GROUPED_CHUNK, device=device)
    return p // 8 + 8 * (p % 8)


def single_scale_perm(device=None) -> torch.Tensor:
    """int64[32]: out[p] = in[2·(p // 8) + (p % 2) + 8·((p % 8) // 2)] inside one 32-entry chunk."""
    p = torch.arange(SINGLE_CHUNK, device=device)
    return 2 * (p // 8) + (p % 2) + 8 * ((p % 8) // 2)


def inverse_perm(perm: torch.Tensor) -> torch.Tensor:
    """inv with inv[perm[p]] = p, so x[perm][inv] == x."""
    return torch.empty_like(perm).index_copy_(0, perm, torch.arange(perm.numel(), device=perm.device))


def check_group_size(fn: str, size_k, group_size) -> tuple[int, int]:
    """(size_k, group_size): size_k positive; group_size in SUPPORTED_GROUP_SIZES or equal to size_k
    (one group of any size: vLLM takes the single permutation, the kernel sees G = 1, spec §2.4, §9)."""
    size_k = check_positive(fn, "size_k", size_k)
    group_size = check_int(fn, "group_size", group_size)
    if group_size not in SUPPORTED_GROUP_SIZES and group_size != size_k:
        raise ValueError(f"{fn}: group_size={group_size} must be one of {list(SUPPORTED_GROUP_SIZES)} "
                         f"or equal size_k={size_k} (a single group)")
    return size_k, group_size


def uses_grouped_scale_permutation(size_k: int, group_size: int) -> bool:
    """True iff the 64-entry (grouped) permutation applies: group_size != -1 and group_size < size_k."""
    size_k, group_size = check_group_size("uses_grouped_scale_permutation", size_k, group_size)
    return group_size != -1 and group_size < size_k


def _chunk_perm(fn: str, s, size_k, size_n, group_size) -> torch.Tensor:
    """Validate and return the per-chunk gather for these sizes (on s.device).

    The kernel infers grouped vs channel-wise from G = s.shape[0] while the permutation follows
    group_size < size_k; they agree iff G·group_size == size_k (§2.4), so anything else is refused
    (the wrong-size_k bug class of §6.1 item 7).
    """
    check_rank(fn, "s", s, 2)
    size_k, group_size = check_group_size(fn, size_k, group_size)
    size_n = check_positive(fn, "size_n", size_n)
    check_shape(fn, "s", s, (s.shape[0], size_n), f"[G, size_n={size_n}]")
    groups = s.shape[0]
    if group_size == -1 and groups != 1:
        raise ValueError(f"{fn}: group_size=-1 (channel-wise) needs s with 1 row, got shape {tuple(s.shape)}")
    if group_size != -1 and groups * group_size != size_k:
        raise ValueError(f"{fn}: s rows * group_size must equal size_k={size_k} (G*group_size == size_k), "
                         f"got G={groups}, group_size={group_size}")
    grouped = group_size != -1 and group_size < size_k
    check_multiple(fn, "size_n", size_n, GROUPED_CHUNK if grouped else SINGLE_CHUNK)
    return grouped_scale_perm(s.device) if grouped else single_scale_perm(s.device)


def _gather_chunks(s: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    chunks = s.reshape(-1, perm.numel())  # [G·N/chunk, chunk]
    return chunks.index_select(1, perm).reshape(s.shape)  # [G, N], a new tensor


def marlin_permute_scales(s: torch.Tensor, size_k: int, size_n: int, group_size: int) -> torch.Tensor:
    """[G, N] -> [G, N] in kernel read order (grouped or single chunk permutation, spec §2.4)."""
    return _gather_chunks(s, _chunk_perm("marlin_permute_scales", s, size_k, size_n, group_size))


def marlin_unpermute_scales(s: torch.Tensor, size_k: int, size_n: int, group_size: int) -> torch.Tensor:
    """The inverse of marlin_permute_scales for the same (size_k, size_n, group_size)."""
    perm = _chunk_perm("marlin_unpermute_scales", s, size_k, size_n, group_size)
    return _gather_chunks(s, inverse_perm(perm))
