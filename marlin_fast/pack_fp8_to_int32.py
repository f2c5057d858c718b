"""Pack FP8 weights four to an int32 along K (GPTQ order), as vLLM's pack_fp8_to_int32 does (spec §2.1, §2.2).

    fp8    : e4m3fn[K, N]  (size_k_first=True)   or e4m3fn[N, K]  (size_k_first=False)
    packed : int32[K/4, N]                        or int32[N, K/4]  (NOT transposed; callers apply .T)
    byte j of word (r, n) == W[4r + j, n]          j = 0..3, little-endian (byte j = bits [8j, 8j+8))

    >>> w = torch.tensor([[0x38], [0x40], [0xB8], [0x00]], dtype=torch.uint8)   # 1.0, 2.0, -1.0, 0.0
    >>> hex(pack_fp8_to_int32(w)[0, 0].item())
    '0xb84038'
    >>> pack_fp8_to_int32(torch.zeros(8, 64, dtype=torch.uint8), size_k_first=False).shape
    torch.Size([8, 16])

Both directions reinterpret memory (uint8 <-> int32 views), which is the spec's little-endian word
order on every platform torch runs on; the guard below makes a big-endian host fail loudly instead.
"""

from __future__ import annotations

import sys

import torch

from .errors import check_bool, check_dtype, check_multiple, check_nonempty, check_rank
from .formats import fp8_codes

BYTES_PER_WORD = 4  # four e4m3fn bytes per int32 word (pack factor 32 / 8)

if sys.byteorder != "little":  # the views below would put byte j at the wrong end of the word
    raise ImportError("marlin_fast needs a little-endian host (spec §0.2: words are little-endian)")


def words_from_bytes(b: torch.Tensor) -> torch.Tensor:
    """uint8[..., 4W] -> int32[..., W]: bytes 4i..4i+3 become word i, byte j at bits [8j, 8j+8)."""
    flat = b.contiguous().reshape(-1)  # 1-D first: size-1 dims can leave odd strides that view() rejects
    return flat.view(torch.int32).reshape(*b.shape[:-1], b.shape[-1] // BYTES_PER_WORD)  # [..., W]


def bytes_from_words(w: torch.Tensor) -> torch.Tensor:
    """int32[..., W] -> uint8[..., 4W], the inverse of words_from_bytes (no sign extension: a view)."""
    flat = w.contiguous().reshape(-1)
    return flat.view(torch.uint8).reshape(*w.shape[:-1], w.shape[-1] * BYTES_PER_WORD)  # [..., 4W]


def pack_fp8_to_int32(fp8: torch.Tensor, size_k_first: bool = True) -> torch.Tensor:
    """int32[K/4, N] from e4m3fn[K, N] (size_k_first) or int32[N, K/4] from e4m3fn[N, K] (spec §2.2)."""
    fn = "pack_fp8_to_int32"
    size_k_first = check_bool(fn, "size_k_first", size_k_first)
    codes = check_nonempty(fn, "fp8", check_rank(fn, "fp8", fp8_codes(fp8, fn, "fp8"), 2))
    size_k = codes.shape[0] if size_k_first else codes.shape[1]
    check_multiple(fn, "size_k", size_k, BYTES_PER_WORD,
                   f"fp8 has shape {tuple(fp8.shape)}, K on axis {0 if size_k_first else 1}")
    n_major = codes.T if size_k_first else codes             # [N, K]
    words = words_from_bytes(n_major)                        # [N, K/4]
    # clone: with a contiguous [N, K] input the view would alias it, and outputs never alias inputs
    return words.T.contiguous() if size_k_first else words.clone()   # [K/4, N] or [N, K/4]


def unpack_fp8_from_int32(packed: torch.Tensor, size_k_first: bool = True) -> torch.Tensor:
    """The inverse of pack_fp8_to_int32: float8_e4m3fn[K, N] (size_k_first) or [N, K]."""
    fn = "unpack_fp8_from_int32"
    size_k_first = check_bool(fn, "size_k_first", size_k_first)
    check_nonempty(fn, "packed", check_rank(fn, "packed", check_dtype(fn, "packed", packed, (torch.int32,)), 2))
    n_major = packed.T if size_k_first else packed           # [N, K/4]
    codes = bytes_from_words(n_major)                        # [N, K]
    codes = codes.T.contiguous() if size_k_first else codes.clone()  # [K, N] or [N, K]
    return codes.view(torch.float8_e4m3fn)
