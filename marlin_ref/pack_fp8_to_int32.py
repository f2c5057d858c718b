"""Pack FP8 weights four to an int32 along K (GPTQ order), as vLLM's pack_fp8_to_int32 does (spec §2.1, §2.2).

Layout card
-----------
    fp8     uint8 / float8_e4m3fn  [K, N] (size_k_first=True)   or  [N, K] (size_k_first=False)
    packed  int32 [K/4, N]         (size_k_first=True, the GPTQ format of §2.1)
            int32 [N, K/4]         (size_k_first=False: NOT transposed; vLLM callers then take .T)
    byte j of word (r, n) == W[4r + j, n]     j = 0..3, little-endian (byte 0 = bits 0..7)

    >>> w = np.array([[0x38], [0x40], [0xB8], [0x00]], np.uint8)     # 1.0, 2.0, -1.0, 0.0 down K
    >>> hex(pack_fp8_to_int32(w).view(np.uint32)[0, 0])
    '0xb84038'
    >>> pack_fp8_to_int32(w.T, size_k_first=False).shape             # [N, K/4]
    (1, 1)
"""

from __future__ import annotations

import numpy as np

from marlin_ref.errors import check_bool, check_dtype, check_multiple, check_nonempty, check_rank
from marlin_ref.formats import E4M3, as_fp8_codes

BYTES_PER_WORD = 4   # pf for 8-bit weights


def pack_fp8_to_int32(fp8, size_k_first: bool = True) -> np.ndarray:
    """fp8 [K, N] -> int32 [K/4, N] (size_k_first) or fp8 [N, K] -> int32 [N, K/4] (not transposed)."""
    fn = "pack_fp8_to_int32"
    size_k_first = check_bool(fn, "size_k_first", size_k_first)
    codes = as_fp8_codes(check_rank(fn, "fp8", check_dtype(fn, "fp8", fp8, [E4M3, np.uint8]), 2))
    check_nonempty(fn, "fp8", codes)
    codes_nk = codes.T if size_k_first else codes                      # [N, K] (a view)
    size_n, size_k = codes_nk.shape
    check_multiple(fn, "size_k", size_k, BYTES_PER_WORD,
                   f"fp8 has shape {fp8.shape}, K on axis {0 if size_k_first else 1}")
    b = codes_nk.reshape(size_n, size_k // BYTES_PER_WORD, BYTES_PER_WORD).astype(np.uint32)  # [N, K/4, 4]
    words = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16) | (b[..., 3] << 24)             # [N, K/4]
    words = words.view(np.int32)
    return np.ascontiguousarray(words.T if size_k_first else words)    # [K/4, N] or [N, K/4]


def unpack_fp8_from_int32(packed, size_k_first: bool = True) -> np.ndarray:
    """Inverse: int32 [K/4, N] -> fp8 [K, N] (size_k_first) or int32 [N, K/4] -> fp8 [N, K];
    returns an ml_dtypes.float8_e4m3fn array (bytes unchanged, NaN codes included)."""
    fn = "unpack_fp8_from_int32"
    size_k_first = check_bool(fn, "size_k_first", size_k_first)
    check_nonempty(fn, "packed", check_rank(fn, "packed", check_dtype(fn, "packed", packed, [np.int32]), 2))
    words = (packed.T if size_k_first else packed).view(np.uint32)     # [N, K/4]
    shifts = np.arange(BYTES_PER_WORD, dtype=np.uint32) * 8             # byte j at bits 8j..8j+7
    b = ((words[..., None] >> shifts) & 0xFF).astype(np.uint8)          # [N, K/4, 4]
    codes_nk = b.reshape(words.shape[0], words.shape[1] * BYTES_PER_WORD)   # [N, K]
    codes = codes_nk.T if size_k_first else codes_nk                    # [K, N] or [N, K]
    return np.ascontiguousarray(codes).view(E4M3)
