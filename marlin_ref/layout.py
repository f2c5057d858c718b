"""Where every weight and scale lives in Marlin's layout, in the PTX mma.m16n8k16 names (spec §2.3, §2.14).

Layout card (weights, §2.3.1)
-----------------------------
    logical   W[k, n]                                    k < K (size_k), n < N (size_n)
    stored    int32[K/16, 16N/pf]                        pf = 32/num_bits (4 for fp8, 8 for 4-bit)
    k = 16*kt + 8*g + 2*q + e      kt k-tile, g B register (0: rows 0-7, 1: rows 8-15),
                                   q thread-in-group (= lane % 4), e low/high half of the register
    n = 64*nt + 16*j + 8*h + c8    nt n-tile, j 16-column block, h n8 sub-tile, c8 group id (= lane // 4)
    lane t = 4*c8 + q
    8-bit: row kt, word 256*nt + 8*t + 2*j + h, byte   2*e + g
    4-bit: row kt, word 128*nt + 4*t + j,       nibble 4*e + 2*h + g
    offset in the 1024-slot tile block: 128*c8 + 32*q + 8*j + 4*h + 2*e + g   (8-bit; 4-bit swaps h, e)

    >>> locate(7, 5, size_n=64)[:3]          # §2.3.4: (7, 5) -> row 0, int32 column 184, byte 2
    (0, 184, 2)
    >>> print(show_tile())
    lane:element of the B fragment (element 0,1 = register 0 lo,hi; 2,3 = register 1 lo,hi)
            n=0    n=1    n=2    n=3    n=8   n=16
     k=0   T0:0   T4:0   T8:0  T12:0   T0:0   T0:0
     k=1   T0:1   T4:1   T8:1  T12:1   T0:1   T0:1
     k=2   T1:0   T5:0   T9:0  T13:0   T1:0   T1:0
     k=8   T0:2   T4:2   T8:2  T12:2   T0:2   T0:2
     k=9   T0:3   T4:3   T8:3  T12:3   T0:3   T0:3
    >>> print(show_tile(cell="storage"))     # int32 column.byte in the Marlin row
    int32 column.byte in output row kt (8-bit)
            n=0    n=1    n=2    n=3    n=8   n=16
     k=0    0.0   32.0   64.0   96.0    1.0    2.0
     k=1    0.2   32.2   64.2   96.2    1.2    2.2
     k=2    8.0   40.0   72.0  104.0    9.0   10.0
     k=8    0.1   32.1   64.1   96.1    1.1    2.1
     k=9    0.3   32.3   64.3   96.3    1.3    2.3

Scales (§2.4, §2.7, §2.14): `locate_scale` gives the position of a column inside its 64-column chunk
and the lanes that load it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from marlin_ref.errors import check_bool, check_int, check_multiple, check_one_of, check_positive

TILE_K = 16                 # k extent of one mma.m16n8k16 B fragment; one Marlin row per 16-row k slab
TILE_N = 64                 # columns of one warp tile (4 blocks of 16); one tile = one contiguous block
BLOCK_N = 16                # a 16-column block j = two n8 sub-tiles (frag_b0, frag_b1)
N8 = 8                      # n extent of one mma B sub-tile
BLOCKS_PER_TILE = TILE_N // BLOCK_N   # 4
WARP = 32                   # lanes per warp
THREADS_PER_GROUP = 4       # lanes sharing a group id c8; q = lane % 4
TILE_SLOTS = TILE_K * TILE_N          # 1024 weights per 16x64 tile
WORD_BITS = 32
SUPPORTED_NUM_BITS = (4, 8)
MX_BLOCK = 32               # OCP MX: one E8M0 scale per 32 elements along K
GROUPED_PERM_CHUNK = 64     # grouped scales: one 16-byte load per lane covers a 64-column tile (§2.4)
SINGLE_PERM_CHUNK = 32      # channel-wise scales / bias: accumulator-fragment order (§2.4)

# Order of the pf values inside one int32, as the dequant wants them (§2.3.2): for 8-bit, bytes
# (0,2) -> register 0 and (1,3) -> register 1; for 4-bit, FasterTransformer's interleaved nibbles.
WEIGHT_INTERLEAVE = {8: (0, 2, 1, 3), 4: (0, 2, 4, 6, 1, 3, 5, 7)}


def pack_factor(num_bits: int) -> int:
    """pf = values per int32: 4 for 8-bit, 8 for 4-bit."""
    return WORD_BITS // num_bits


def weight_read_order() -> np.ndarray:
    """Offsets (into a 16x64 tile stored as four 16x16 blocks, k-major) in the order each lane reads
    the B operand of mma.m16n8k16, before the interleave (§2.3.5).

    PTX: group_id c8 = lane >> 2, thread_in_group q = lane % 4; B register 0 holds rows (2q, 2q+1),
    register 1 rows (2q+8, 2q+9), column c8 of the n8 sub-tile.

    >>> weight_read_order()[:8]        # lane 0: k = 0, 1, 8, 9 at n = 0, then at n = 8
    array([  0,  16, 128, 144,   8,  24, 136, 152])
    """
    order = []
    for lane in range(WARP):
        group_id, thread_in_group = divmod(lane, THREADS_PER_GROUP)
        rows = [2 * thread_in_group + dk for dk in (0, 1, 8, 9)]   # reg0 lo, reg0 hi, reg1 lo, reg1 hi
        for block_j in range(BLOCKS_PER_TILE):
            for n8_half in range(2):
                column = BLOCK_N * block_j + N8 * n8_half + group_id   # column inside the 64-wide tile
                # block-major offset: block j starts at 256*j; inside it row k starts at 16*k
                order += [BLOCK_N * TILE_K * block_j + BLOCK_N * k + (column % BLOCK_N) for k in rows]
    return np.array(order)


class WeightLocation(NamedTuple):
    row: int          # output row = k tile
    word: int         # int32 column in that row
    slot: int         # byte (8-bit) or nibble (4-bit) inside the word
    lane: int         # t = 4*c8 + q
    register: int     # B register g: 0 = rows 2q, 2q+1; 1 = rows 2q+8, 2q+9
    half: int         # e: low (0) or high (1) 16-bit half of that register
    k_tile: int
    n_tile: int
    block_j: int
    n8_half: int
    byte_offset: int  # global byte (8-bit) or nibble (4-bit) offset in the flat output


def locate(k: int, n: int, *, size_n: int, num_bits: int = 8) -> WeightLocation:
    """Closed form of §2.3.1 for one logical element W[k, n].

    >>> locate(15, 63, size_n=64, num_bits=4)[:3]    # §2.3.4 last row, 4-bit
    (0, 127, 7)
    """
    fn = "locate"
    num_bits = check_one_of(fn, "num_bits", num_bits, SUPPORTED_NUM_BITS)
    size_n = check_multiple(fn, "size_n", check_positive(fn, "size_n", size_n), TILE_N)
    k, n = check_int(fn, "k", k), check_int(fn, "n", n)
    if k < 0:
        raise ValueError(f"{fn}: k={k} must be >= 0")
    if not 0 <= n < size_n:
        raise ValueError(f"{fn}: n={n} must be in [0, size_n={size_n})")
    kt, kl = divmod(k, TILE_K)
    nt, nl = divmod(n, TILE_N)
    j, h = nl // BLOCK_N, (nl % BLOCK_N) // N8
    c8 = n % N8
    q, e, g = (kl % 8) // 2, kl % 2, kl // 8
    t = THREADS_PER_GROUP * c8 + q
    if num_bits == 8:
        word, slot = 256 * nt + 8 * t + 2 * j + h, 2 * e + g
    else:
        word, slot = 128 * nt + 4 * t + j, 4 * e + 2 * h + g
    byte_offset = int(slot_offsets(np.array(k), np.array(n), size_n=size_n, num_bits=num_bits))
    return WeightLocation(kt, word, slot, t, g, e, kt, nt, j, h, byte_offset)


def slot_offsets(k: np.ndarray, n: np.ndarray, *, size_n: int, num_bits: int = 8) -> np.ndarray:
    """The closed form of §2.3.1 on arrays: the flat byte (8-bit) or nibble (4-bit) offset of W[k, n] in the Marlin
    weight, broadcast over k and n (no checks: `locate` checks one element; this serves gathers of whole columns).

    >>> slot_offsets(np.arange(16)[:, None], np.array([0, 63]), size_n=64)[[0, 1, 8, 15]].tolist()
    [[0, 924], [2, 926], [1, 925], [99, 1023]]
    """
    kt, kl = np.divmod(k, TILE_K)
    nt, nl = np.divmod(n, TILE_N)
    j, h, c8 = nl // BLOCK_N, (nl % BLOCK_N) // N8, n % N8
    q, e, g = (kl % 8) // 2, kl % 2, kl // 8
    if num_bits == 8:
        in_tile = 128 * c8 + 32 * q + 8 * j + 4 * h + 2 * e + g
    else:
        in_tile = 128 * c8 + 32 * q + 8 * j + 4 * e + 2 * h + g
    # a Marlin row holds 16*N slots for both widths (4N bytes-words x 4, or 2N words x 8)
    return TILE_K * size_n * kt + TILE_SLOTS * nt + in_tile


class ScaleLocation(NamedTuple):
    n_tile: int               # which 64-column chunk
    position: int             # index inside the chunk after the permutation
    offset: int               # index inside a stored row of [G, N] = 64*n_tile + position
    lanes: tuple[int, ...]    # lanes that load this value (§2.14)


def locate_scale(n: int, *, grouped: bool, mx: bool = False) -> ScaleLocation:
    """Where logical column n's scale sits after `marlin_permute_scales` (and, with mx=True, after
    `mxfp8_marlin_process_scales`), and which lanes load it.

    grouped: position 8*(c mod 8) + c//8, read by the 4 lanes of group c8 = c mod 8 (before the mma).
    single:  position 32*(c//32) + 8*q + 2*((c mod 32)//8) + c mod 2 with q = (c mod 8)//2, read by
             the 8 lanes with that q (accumulator columns 2q, 2q+1).
    mx:      position 8*(c mod 8) + 4*(c//32) + 2*((c//8) mod 2) + (c//16) mod 2 (§2.7).

    >>> locate_scale(17, grouped=True, mx=True)
    ScaleLocation(n_tile=0, position=9, offset=9, lanes=(4, 5, 6, 7))
    """
    fn = "locate_scale"
    n = check_int(fn, "n", n)
    grouped, mx = check_bool(fn, "grouped", grouped), check_bool(fn, "mx", mx)
    if n < 0:
        raise ValueError(f"{fn}: n={n} must be >= 0")
    if mx and not grouped:
        raise ValueError(f"{fn}: mx=True requires grouped=True (MXFP8 scales are group-32), got grouped=False")
    nt, c = divmod(n, TILE_N)
    if grouped:
        c8 = c % N8
        lanes = tuple(THREADS_PER_GROUP * c8 + q for q in range(THREADS_PER_GROUP))
        if mx:
            position = 8 * c8 + 4 * (c // 32) + 2 * ((c // 8) % 2) + (c // 16) % 2
        else:
            position = 8 * c8 + c // 8
    else:
        q = (c % N8) // 2
        lanes = tuple(THREADS_PER_GROUP * c8 + q for c8 in range(WARP // THREADS_PER_GROUP))
        position = 32 * (c // 32) + 8 * q + 2 * ((c % 32) // 8) + c % 2
    return ScaleLocation(nt, position, TILE_N * nt + position, lanes)


def _tile_indices(fn: str, name: str, item: str, values, extent: int) -> tuple[int, ...]:
    """A non-empty sequence of integers in [0, extent): the rows (k) or columns (n) of one 16x64 tile."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{fn}: {name} must be a sequence of integers, got {values!r}")
    values = tuple(check_int(fn, item, v) for v in values)
    if not values:
        raise ValueError(f"{fn}: {name} must not be empty")
    for v in values:
        if not 0 <= v < extent:
            raise ValueError(f"{fn}: {item}={v} must be in [0, {extent})")
    return values


def show_tile(num_bits: int = 8, k_rows=(0, 1, 2, 8, 9), n_cols=(0, 1, 2, 3, 8, 16), *,
              cell: str = "fragment") -> str:
    """A table of (k, n) -> "T<lane>:<fragment element>" (cell="fragment", the same for 4 and 8 bit),
    or -> "<int32 column>.<slot>" in the Marlin row (cell="storage", depends on num_bits)."""
    fn = "show_tile"
    num_bits = check_one_of(fn, "num_bits", num_bits, SUPPORTED_NUM_BITS)
    if not isinstance(cell, str) or cell not in ("fragment", "storage"):
        raise ValueError(f"{fn}: cell={cell!r} must be 'fragment' or 'storage'")
    k_rows = _tile_indices(fn, "k_rows", "k", k_rows, TILE_K)
    n_cols = _tile_indices(fn, "n_cols", "n", n_cols, TILE_N)
    if cell == "fragment":
        title = "lane:element of the B fragment (element 0,1 = register 0 lo,hi; 2,3 = register 1 lo,hi)"
    else:
        title = f"int32 column.{'byte' if num_bits == 8 else 'nibble'} in output row kt ({num_bits}-bit)"
    lines = [title, "     " + "".join(f"{'n=' + str(n):>7}" for n in n_cols)]
    for k in k_rows:
        cells = []
        for n in n_cols:
            loc = locate(k, n, size_n=TILE_N, num_bits=num_bits)
            if cell == "fragment":
                cells.append(f"T{loc.lane}:{2 * loc.register + loc.half}")
            else:
                cells.append(f"{loc.word}.{loc.slot}")
        lines.append(f"{'k=' + str(k):>5}" + "".join(f"{c:>7}" for c in cells))
    return "\n".join(lines)
