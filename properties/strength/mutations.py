"""The NumPy rewrites the mutants use to break a correct backend's output in one realistic way.

Weights (spec §2.3.1). `slot_offsets` is the closed form of the Marlin layout as one [K, N] table of
flat slot offsets (byte for 8-bit, nibble for 4-bit), or the same table with one bug of `LAYOUT_BUGS`
planted. `decode` reads a Marlin weight back to logical codes with the correct table and `encode`
writes logical codes with any table, so `encode(decode(w), bug=...)` is the weight a buggy repack
would have produced from the same logical weight:

    interleave       8-bit bytes in natural order [0,1,2,3] (rows 2q, 2q+1, 2q+8, 2q+9) instead of
                     [0,2,1,3]; 4-bit nibbles with the 8-bit [0,2,1,3] per quadruple (§6.1 item 1)
    word_index       warp-major word index 64j + 2t + h (4-bit: 32j + t) instead of 8t + 2j + h
                     (4-bit: 4t + j) (§6.1 item 2)
    row_set          lane q reads rows 4q..4q+3 instead of (2q, 2q+1, 2q+8, 2q+9) (§6.1 item 3)
    tile_n_reversed  the 16x64 tiles of a row in decreasing n (§6.1 item 4)
    tile_k_major     tile (kt, nt) stored at tile index nt*(K/16) + kt instead of kt*(N/64) + nt

    >>> w = np.zeros((16, 64), np.uint8); w[:, 0] = np.arange(16)       # W[k, 0] = k, [K=16, N=64]
    >>> marlin = encode(w)                                              # the correct layout
    >>> hex(marlin.view(np.uint32)[0, 0])        # bytes W[0,0], W[8,0], W[1,0], W[9,0] (§2.3.4)
    '0x9010800'
    >>> hex(encode(w, bug="interleave").view(np.uint32)[0, 0])      # W[0,0], W[1,0], W[8,0], W[9,0]
    '0x9080100'
    >>> bool(np.array_equal(decode(marlin), w))
    True

Scales (§2.4, §2.7): `to_logical` undoes the kernel order of a correct grid (grouped or single
permutation, and for MX the [0,2,1,3] quadruple reorder), `to_kernel` applies an order, so a
mutant can re-permute with the wrong one.
"""

from __future__ import annotations

import functools

import numpy as np

from marlin_ref.formats import round_to_dtype
from marlin_ref.layout import (BLOCK_N, N8, TILE_K, TILE_N, TILE_SLOTS, THREADS_PER_GROUP,
                               pack_factor)
from marlin_ref.marlin_permute_scales import grouped_scale_order, single_scale_order

LAYOUT_BUGS = ("interleave", "word_index", "row_set", "tile_n_reversed", "tile_k_major")
MX_QUAD = (0, 2, 1, 3)        # the e8m0 reorder of §2.7 (an involution)
WORDS_PER_LANE = {8: 8, 4: 4}  # a lane's B operand of one 16x64 tile: 32 values (§2.3.2)


@functools.lru_cache(maxsize=64)
def slot_offsets(size_k: int, size_n: int, num_bits: int = 8, bug: str | None = None) -> np.ndarray:
    """[K, N] flat slot offset of every logical W[k, n] in the Marlin weight (read-only, cached)."""
    if bug not in (None, *LAYOUT_BUGS):
        raise ValueError(f"slot_offsets: bug={bug!r} must be None or one of {LAYOUT_BUGS}")
    k = np.arange(size_k)[:, None]                               # [K, 1]
    n = np.arange(size_n)[None, :]                               # [1, N]
    kt, kl = k // TILE_K, k % TILE_K
    nt, nl = n // TILE_N, n % TILE_N
    j, h, c8 = nl // BLOCK_N, (nl % BLOCK_N) // N8, n % N8
    if bug == "row_set":
        q, e, g = kl // 4, kl % 2, (kl % 4) // 2                 # rows 4q + (0, 1, 2, 3)
    else:
        q, e, g = (kl % 8) // 2, kl % 2, kl // 8                 # rows 2q + e + 8g
    t = THREADS_PER_GROUP * c8 + q
    pf = pack_factor(num_bits)
    if num_bits == 8:
        slot = e + 2 * g if bug == "interleave" else 2 * e + g
        word = 64 * j + 2 * t + h if bug == "word_index" else WORDS_PER_LANE[8] * t + 2 * j + h
    else:
        slot = 4 * h + 2 * e + g if bug == "interleave" else 4 * e + 2 * h + g
        word = 32 * j + t if bug == "word_index" else WORDS_PER_LANE[4] * t + j
    k_tiles, n_tiles = size_k // TILE_K, size_n // TILE_N
    if bug == "tile_n_reversed":
        nt = n_tiles - 1 - nt
    tile = nt * k_tiles + kt if bug == "tile_k_major" else kt * n_tiles + nt
    offsets = np.broadcast_to(TILE_SLOTS * tile + pf * word + slot, (size_k, size_n)).copy()
    offsets.flags.writeable = False
    return offsets


def marlin_sizes(words: np.ndarray, num_bits: int) -> tuple[int, int]:
    """(size_k, size_n) of Marlin words [..., K/16, 16N/pf] (§2.11 marlin_repacked_nk)."""
    return words.shape[-2] * TILE_K, words.shape[-1] * pack_factor(num_bits) // TILE_K


def decode(words: np.ndarray, num_bits: int = 8, bug: str | None = None) -> np.ndarray:
    """Marlin int32 [..., K/16, 16N/pf] -> logical codes uint8 [..., K, N] (read with `bug`'s table)."""
    pf = pack_factor(num_bits)
    size_k, size_n = marlin_sizes(words, num_bits)
    shifts = np.arange(pf, dtype=np.uint32) * num_bits
    slots = (words.view(np.uint32)[..., None] >> shifts) & np.uint32((1 << num_bits) - 1)   # [..., R, C, pf]
    slots = slots.reshape(words.shape[:-2] + (size_k * size_n,)).astype(np.uint8)         # [..., K*N]
    return slots[..., slot_offsets(size_k, size_n, num_bits, bug)]                         # [..., K, N]


def encode(codes: np.ndarray, num_bits: int = 8, bug: str | None = None) -> np.ndarray:
    """Logical codes [..., K, N] -> Marlin int32 [..., K/16, 16N/pf] (written with `bug`'s table)."""
    pf = pack_factor(num_bits)
    size_k, size_n = codes.shape[-2:]
    slots = np.zeros(codes.shape[:-2] + (size_k * size_n,), np.uint32)                    # [..., K*N]
    slots[..., slot_offsets(size_k, size_n, num_bits, bug)] = codes
    slots = slots.reshape(codes.shape[:-2] + (size_k // TILE_K, size_n * TILE_K // pf, pf))  # [..., R, C, pf]
    shifts = np.arange(pf, dtype=np.uint32) * num_bits
    return np.ascontiguousarray(np.bitwise_or.reduce(slots << shifts, axis=-1)).view(np.int32)


def rewrite_weight(words: np.ndarray, fn, num_bits: int = 8, bug: str | None = None) -> np.ndarray:
    """encode(fn(decode(words)), bug): change the logical weight and/or the layout of a correct one."""
    return encode(fn(decode(words, num_bits)), num_bits, bug)


# --- scales ---------------------------------------------------------------------------------------

def scale_order(grouped: bool) -> np.ndarray:
    """out[p] = in[order[p]] inside one chunk: the 64-entry grouped or the 32-entry single order."""
    return grouped_scale_order() if grouped else single_scale_order()


def is_grouped(size_k: int, group_size: int) -> bool:
    """§2.4: the grouped permutation iff group_size != -1 and group_size < size_k."""
    return group_size != -1 and group_size < size_k


def permute_chunks(s: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Gather every run of len(order) entries of the row-major flattening (any dtype, bytes moved)."""
    return np.ascontiguousarray(s.reshape(-1, order.size)[:, order].reshape(s.shape))


def unpermute_chunks(s: np.ndarray, order: np.ndarray) -> np.ndarray:
    return permute_chunks(s, np.argsort(order))


def swap_quads(s: np.ndarray) -> np.ndarray:
    """The [0,2,1,3] reorder of every 4 consecutive entries (§2.7); its own inverse."""
    return permute_chunks(s, np.array(MX_QUAD))


def to_logical(s: np.ndarray, size_k: int, group_size: int, mx: bool = False) -> np.ndarray:
    """A correct [..., G, N] kernel-order scale grid back to logical column order (dtype kept)."""
    if mx:
        s = swap_quads(s)
    return unpermute_chunks(s, scale_order(is_grouped(size_k, group_size)))


def to_kernel(logical: np.ndarray, grouped: bool, mx: bool = False) -> np.ndarray:
    """Logical [..., G, N] -> kernel order with the given permutation (and the MX reorder)."""
    s = permute_chunks(logical, scale_order(grouped))
    return swap_quads(s) if mx else s


def gather_map(convert, shape: tuple, digit_base: int = 1024) -> np.ndarray:
    """The flat input index each output element of a pure gather `convert` reads.

    `convert(values)` must move (never combine) the entries of a float32 array of `shape` and cast
    them to float16; the indices travel as base-1024 digits, which float16 holds exactly."""
    size = int(np.prod(shape, dtype=np.int64))
    index = np.arange(size, dtype=np.int64)
    result, place = None, 1
    while True:
        digits = ((index // place) % digit_base).astype(np.float32).reshape(shape)
        part = np.asarray(convert(digits)).astype(np.int64) * place
        result = part if result is None else result + part
        place *= digit_base
        if place >= size:
            return result


# --- scale values (§2.6) --------------------------------------------------------------------------

def times_power_of_two(s: np.ndarray, exponent: int) -> np.ndarray:
    """s * 2^exponent in s's dtype (exact but for overflow/underflow, rounded once)."""
    return round_to_dtype(np.ldexp(s.astype(np.float64), exponent), s.dtype).astype(s.dtype)


def e8m0_times_power_of_two(s: np.ndarray, exponent: int = 120) -> np.ndarray:
    """What multiplying MX scales by 2^exponent before the e8m0 cast does to the bytes: b -> b + exponent,
    saturating to 255 (inf/NaN); 0 (a zero pad) and 255 (NaN) unchanged."""
    b = s.view(np.uint8).astype(np.int32)
    out = np.where((b == 0) | (b == 255), b, np.minimum(b + exponent, 255))
    return out.astype(np.uint8).view(s.dtype)
