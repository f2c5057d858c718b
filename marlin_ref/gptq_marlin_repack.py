"""GPTQ-packed weights -> Marlin tiles, as vLLM's gptq_marlin_repack kernel lays them out (spec §2.3).

Layout card
-----------
    input   b_q_weight int32[K/pf, N]   GPTQ: slot j of word (r, n) = Q[pf*r + j, n]   (§2.1)
    output  int32[K/16, 16N/pf]         ([K/16, 4N] for 8-bit, [K/16, 2N] for 4-bit)
    one output row per 16-row k slab; inside it one contiguous 1024-slot block per 16x64 tile,
    tiles in increasing n; inside a tile lane t's 32 values (rows 2q, 2q+1, 2q+8, 2q+9 of the columns
    16j + 8h + c8) are contiguous, in the order of `layout.weight_read_order()`, then interleaved
    inside each word by `layout.WEIGHT_INTERLEAVE` ([0,2,1,3] bytes / [0,2,4,6,1,3,5,7] nibbles).
    Closed form (§2.3.1): 8-bit W[k, n] -> row kt, word 256*nt + 8*t + 2*j + h, byte 2*e + g.
    perm (act-order): repack(pack(Q), perm) == repack(pack(Q[perm, :]), None).

Worked example (§2.3.4): K = 16, N = 64, column 0 holds W[k, 0] = k; word 0 = bytes (W[0,0], W[8,0],
W[1,0], W[9,0]).

    >>> from marlin_ref.pack_fp8_to_int32 import pack_fp8_to_int32
    >>> w = np.zeros((16, 64), np.uint8); w[:, 0] = np.arange(16)
    >>> out = gptq_marlin_repack(pack_fp8_to_int32(w), None, 16, 64, 8)
    >>> out.shape, hex(out[0, 0])
    ((1, 256), '0x9010800')
"""

from __future__ import annotations

import numpy as np

from marlin_ref.errors import (check_array, check_dtype, check_multiple, check_one_of, check_positive,
                               check_rank, check_shape)
from marlin_ref.layout import (SUPPORTED_NUM_BITS, TILE_K, TILE_N, TILE_SLOTS, WEIGHT_INTERLEAVE,
                               pack_factor, weight_read_order)


def check_tile_sizes(fn, num_bits, size_k, size_n):
    """num_bits in {4, 8}; size_k a positive multiple of 16, size_n of 64 (§2.3 host checks)."""
    num_bits = check_one_of(fn, "num_bits", num_bits, SUPPORTED_NUM_BITS)
    size_k = check_multiple(fn, "size_k", check_positive(fn, "size_k", size_k), TILE_K)
    size_n = check_multiple(fn, "size_n", check_positive(fn, "size_n", size_n), TILE_N)
    return num_bits, size_k, size_n


def check_repack_inputs(fn, b_q_weight, perm, size_k, size_n, num_bits):
    """Shared validation of (gptq_marlin_repack, gptq_marlin_repack_by_element); returns the perm as
    an int64 array, or None for no act-order. vLLM's kernel does not check perm (§6.1 item 27); we do."""
    num_bits, size_k, size_n = check_tile_sizes(fn, num_bits, size_k, size_n)
    check_dtype(fn, "b_q_weight", b_q_weight, [np.int32])
    pf = pack_factor(num_bits)
    check_shape(fn, "b_q_weight", b_q_weight, (size_k // pf, size_n), f"[size_k/{pf}, size_n]")
    if perm is None:
        return None
    check_array(fn, "perm", perm)
    if perm.size == 0:
        return None
    check_rank(fn, "perm", perm, 1)
    if perm.dtype.kind not in "iu":
        raise TypeError(f"{fn}: perm must have an integer dtype, got {perm.dtype.name}")
    if perm.shape[0] != size_k:
        raise ValueError(f"{fn}: perm must have length size_k={size_k}, got {perm.shape[0]}")
    perm = perm.astype(np.int64)
    if not np.array_equal(np.sort(perm), np.arange(size_k)):
        raise ValueError(f"{fn}: perm must be a permutation of [0, size_k={size_k}), got values in "
                         f"[{perm.min()}, {perm.max()}] with {np.unique(perm).size} distinct")
    return perm


def _unpack_gptq(words: np.ndarray, num_bits: int) -> np.ndarray:
    """int32[K/pf, N] -> uint32[K, N] values; slot j of word (r, n) is Q[pf*r + j, n] (§2.1)."""
    pf = pack_factor(num_bits)
    shifts = (np.arange(pf, dtype=np.uint32) * num_bits)[None, :, None]
    q = (words.view(np.uint32)[:, None, :] >> shifts) & np.uint32((1 << num_bits) - 1)   # [K/pf, pf, N]
    return q.reshape(words.shape[0] * pf, words.shape[1])                                # [K, N]


def _pack_gptq(q: np.ndarray, num_bits: int) -> np.ndarray:
    """uint32[K, N] values -> int32[K/pf, N], the inverse of _unpack_gptq."""
    pf = pack_factor(num_bits)
    q = q.reshape(q.shape[0] // pf, pf, q.shape[1])                                      # [K/pf, pf, N]
    shifts = (np.arange(pf, dtype=np.uint32) * num_bits)[None, :, None]
    return np.bitwise_or.reduce(q << shifts, axis=1).view(np.int32)                      # [K/pf, N]


def gptq_marlin_repack(b_q_weight, perm, size_k, size_n, num_bits) -> np.ndarray:
    """int32[K/pf, N] GPTQ-packed -> int32[K/16, 16N/pf] Marlin tiles (num_bits 8 or 4).

    perm: None or empty for no act-order, else a permutation of [0, K): output row-slot k takes
    source row perm[k].
    """
    perm = check_repack_inputs("gptq_marlin_repack", b_q_weight, perm, size_k, size_n, num_bits)
    pf = pack_factor(num_bits)
    q = _unpack_gptq(b_q_weight, num_bits)                                   # [K, N]
    if perm is not None:
        q = q[perm, :]                                                       # [K, N] act-order rows
    # §2.3.5: make every 16x16 block contiguous (k-major inside), four blocks = one 16x64 tile
    q = q.reshape(size_k // TILE_K, TILE_K, size_n // TILE_K, TILE_K)        # [Kt, 16, N/16, 16]
    q = q.transpose(0, 2, 1, 3)                                              # [Kt, N/16, 16, 16]
    q = q.reshape(size_k // TILE_K, size_n // TILE_N, TILE_SLOTS)            # [Kt, Nt, 1024]
    q = q[:, :, weight_read_order()]                                         # [Kt, Nt, 1024] lane order
    q = q.reshape(size_k // TILE_K, size_n * TILE_K // pf, pf)               # [Kt, 16N/pf, pf]
    q = q[:, :, list(WEIGHT_INTERLEAVE[num_bits])]                           # [Kt, 16N/pf, pf] dequant order
    shifts = np.arange(pf, dtype=np.uint32) * num_bits                       # slot i at bits [nb*i, nb*(i+1))
    words = np.bitwise_or.reduce(q << shifts, axis=2)                        # [Kt, 16N/pf]
    return np.ascontiguousarray(words).view(np.int32)


def gptq_marlin_unrepack(marlin_q_weight, size_k, size_n, num_bits) -> np.ndarray:
    """Inverse of the layout: int32[K/16, 16N/pf] -> GPTQ-packed int32[K/pf, N]. An act-order perm
    is not undone (the result is pack(Q[perm]))."""
    fn = "gptq_marlin_unrepack"
    num_bits, size_k, size_n = check_tile_sizes(fn, num_bits, size_k, size_n)
    check_dtype(fn, "marlin_q_weight", marlin_q_weight, [np.int32])
    pf = pack_factor(num_bits)
    check_shape(fn, "marlin_q_weight", marlin_q_weight, (size_k // TILE_K, size_n * TILE_K // pf),
                f"[size_k/16, size_n*16/{pf}]")
    shifts = np.arange(pf, dtype=np.uint32) * num_bits
    slots = (marlin_q_weight.view(np.uint32)[:, :, None] >> shifts) & np.uint32((1 << num_bits) - 1)
    # slots: [Kt, 16N/pf, pf]; slots[..., i] = natural[..., interleave[i]]
    q = slots[:, :, np.argsort(WEIGHT_INTERLEAVE[num_bits])]                 # [Kt, 16N/pf, pf] read order
    q = q.reshape(size_k // TILE_K, size_n // TILE_N, TILE_SLOTS)            # [Kt, Nt, 1024]
    q = q[:, :, np.argsort(weight_read_order())]                             # [Kt, Nt, 1024] block-major
    q = q.reshape(size_k // TILE_K, size_n // TILE_K, TILE_K, TILE_K)        # [Kt, N/16, 16, 16]
    q = q.transpose(0, 2, 1, 3)                                              # [Kt, 16, N/16, 16]
    q = q.reshape(size_k, size_n)                                            # [K, N]
    return np.ascontiguousarray(_pack_gptq(q, num_bits))
