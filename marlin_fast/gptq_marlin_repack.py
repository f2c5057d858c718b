"""Repack GPTQ-packed weights into Marlin's tile layout, and back (spec §2.1, §2.3).

    b_q_weight : int32[K/pf, N]       GPTQ: slot j of word (r, n) holds Q[pf·r + j, n]        (§2.1)
    marlin     : int32[K/16, 16N/pf]  = [K/16, 4N] for 8-bit (pf = 4), [K/16, 2N] for 4-bit (pf = 8)

    The logical element (k, n) = (16·kt + 8·g + 2·q + e,  64·nt + 16·w + 8·h + c8) sits at slot
    (byte for 8-bit, nibble for 4-bit) offset, counting LSB-first through the row-major words (§2.3.1):
        8-bit:  16N·kt + 1024·nt + 128·c8 + 32·q + 8·w + 4·h + 2·e + g
        4-bit:  16N·kt + 1024·nt + 128·c8 + 32·q + 8·w + 4·e + 2·h + g
    kt/nt = 16x64 tile, c8 = mma group id and q = thread in group (lane t = 4·c8 + q),
    w = 16-column block of the warp tile, h = n8 half, g = B register (rows 0-7 / 8-15),
    e = low/high half of that register. The slot offset is a mixed-radix number with those digits,
    so the gather map below is a broadcast of one arange per digit.

    Worked example (§2.3.4, K = 16, N = 64, W[k, 0] = k): word 0 holds (W[0,0], W[8,0], W[1,0], W[9,0]).

    >>> from marlin_fast.pack_fp8_to_int32 import pack_fp8_to_int32
    >>> w = torch.zeros(16, 64, dtype=torch.uint8); w[:, 0] = torch.arange(16, dtype=torch.uint8)
    >>> q = gptq_marlin_repack(pack_fp8_to_int32(w), None, 16, 64, 8)
    >>> q.shape, hex(q[0, 0].item())
    (torch.Size([1, 256]), '0x9010800')

With act-order, output row-slot k takes source row perm[k]:
repack(pack(Q), perm) == repack(pack(Q[perm]), None). The index map is cached per
(size_k, size_n, num_bits, device): K·N int64 entries (8 bytes per weight) held until evicted.
"""

from __future__ import annotations

import functools

import torch

from .errors import check_dtype, check_multiple, check_one_of, check_positive, check_rank, check_shape, check_tensor
from .pack_fp8_to_int32 import bytes_from_words, words_from_bytes

__all__ = ["gptq_marlin_repack", "gptq_marlin_unrepack"]

TILE_K = 16  # rows of one Marlin tile (the k extent of mma.m16n8k16)
TILE_N = 64  # columns of one Marlin tile (4 warp blocks of 16)
SUPPORTED_NUM_BITS = (4, 8)
INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
WORD_BITS = 32
NIBBLE_MASK = 0x0F

# Digits of the slot offset inside one 16x64 tile, most significant first, with their radices (§2.3.1).
_TILE_DIGITS = {
    8: (("c8", 8), ("q", 4), ("w", 4), ("h", 2), ("e", 2), ("g", 2)),
    4: (("c8", 8), ("q", 4), ("w", 4), ("e", 2), ("h", 2), ("g", 2)),
}


def pack_factor(num_bits: int) -> int:
    return WORD_BITS // num_bits


@functools.lru_cache(maxsize=16)
def marlin_source_index(size_k: int, size_n: int, num_bits: int, device: torch.device) -> torch.Tensor:
    """int64[K·N]: entry p is k·N + n, the logical element stored at Marlin slot offset p (§2.3.1)."""
    digits = (("kt", size_k // TILE_K), ("nt", size_n // TILE_N)) + _TILE_DIGITS[num_bits]
    rank = len(digits)
    d = {}
    for axis, (name, radix) in enumerate(digits):
        shape = [1] * rank
        shape[axis] = radix
        d[name] = torch.arange(radix, device=device).view(shape)  # broadcasts along its own axis
    k = TILE_K * d["kt"] + 8 * d["g"] + 2 * d["q"] + d["e"]
    n = TILE_N * d["nt"] + 16 * d["w"] + 8 * d["h"] + d["c8"]
    return (k * size_n + n).reshape(-1)  # [K·N] in slot order


def words_from_slots(slots: torch.Tensor, num_bits: int) -> torch.Tensor:
    """uint8[..., pf] slot values -> int32[...], slot j at bits [num_bits·j, num_bits·(j+1))."""
    if num_bits == 4:  # two nibbles per byte, the lower slot in the low nibble
        slots = slots[..., 0::2] | (slots[..., 1::2] << 4)  # [..., 4]
    return words_from_bytes(slots).squeeze(-1)  # [...]


def slots_from_words(words: torch.Tensor, num_bits: int) -> torch.Tensor:
    """int32[...] -> uint8[..., pf], the inverse of words_from_slots (uint8 shifts: no sign extension)."""
    b = bytes_from_words(words.unsqueeze(-1))  # [..., 4]
    if num_bits == 8:
        return b
    nibbles = torch.stack((b & NIBBLE_MASK, b >> 4), dim=-1)  # [..., 4, 2]
    return nibbles.flatten(-2)  # [..., 8]


def gptq_unpack_codes(b_q_weight: torch.Tensor, num_bits: int) -> torch.Tensor:
    """int32[K/pf, N] -> uint8[K, N]: Q[pf·r + j, n] = slot j of word (r, n) (§2.1)."""
    rows, size_n = b_q_weight.shape
    slots = slots_from_words(b_q_weight, num_bits)  # [K/pf, N, pf]
    return slots.permute(0, 2, 1).reshape(rows * pack_factor(num_bits), size_n)  # [K, N]


def gptq_pack_codes(codes: torch.Tensor, num_bits: int) -> torch.Tensor:
    """uint8[K, N] -> int32[K/pf, N], the inverse of gptq_unpack_codes."""
    size_k, size_n = codes.shape
    pf = pack_factor(num_bits)
    slots = codes.reshape(size_k // pf, pf, size_n).permute(0, 2, 1)  # [K/pf, N, pf]
    return words_from_slots(slots, num_bits)  # [K/pf, N]


def _check_sizes(fn: str, size_k, size_n, num_bits) -> tuple[int, int, int]:
    num_bits = check_one_of(fn, "num_bits", num_bits, SUPPORTED_NUM_BITS)
    size_k = check_multiple(fn, "size_k", check_positive(fn, "size_k", size_k), TILE_K)
    size_n = check_multiple(fn, "size_n", check_positive(fn, "size_n", size_n), TILE_N)
    return size_k, size_n, num_bits


def _check_perm(fn: str, perm, size_k: int, device: torch.device) -> torch.Tensor | None:
    """None for no act-order (None or an empty tensor), else a permutation of [0, K) as int64 on `device`.

    The kernel reads perm[k] for every k and checks neither length nor values (§2.3, §6.1 item 27); we do.
    """
    if perm is None:
        return None
    check_tensor(fn, "perm", perm)
    if perm.numel() == 0:
        return None
    check_rank(fn, "perm", perm, 1)
    if perm.dtype not in INTEGER_DTYPES:
        raise TypeError(f"{fn}: perm must have an integer dtype, got {str(perm.dtype).removeprefix('torch.')}")
    if perm.numel() != size_k:
        raise ValueError(f"{fn}: perm must have length size_k={size_k}, got {perm.numel()}")
    perm = perm.to(device=device, dtype=torch.int64)
    if not torch.equal(torch.sort(perm).values, torch.arange(size_k, device=device)):
        raise ValueError(f"{fn}: perm must be a permutation of [0, size_k={size_k}), got values in "
                         f"[{int(perm.min())}, {int(perm.max())}] with {perm.unique().numel()} distinct")
    return perm


def gptq_marlin_repack(b_q_weight: torch.Tensor, perm, size_k: int, size_n: int, num_bits: int) -> torch.Tensor:
    """int32[K/pf, N] GPTQ words -> int32[K/16, 16N/pf] Marlin words (§2.3).

    perm: None or empty (no act-order), or a permutation of [0, K): row-slot k takes source row perm[k].
    """
    fn = "gptq_marlin_repack"
    size_k, size_n, num_bits = _check_sizes(fn, size_k, size_n, num_bits)
    check_dtype(fn, "b_q_weight", b_q_weight, (torch.int32,))
    check_shape(fn, "b_q_weight", b_q_weight, (size_k // pack_factor(num_bits), size_n), "[size_k/pf, size_n]")
    perm = _check_perm(fn, perm, size_k, b_q_weight.device)
    codes = gptq_unpack_codes(b_q_weight, num_bits)  # [K, N]
    if perm is not None:
        codes = codes.index_select(0, perm)  # [K, N], row k = source row perm[k]
    index = marlin_source_index(size_k, size_n, num_bits, codes.device)
    slots = codes.reshape(-1).index_select(0, index)  # [K·N] in Marlin slot order
    slots = slots.view(size_k // TILE_K, size_n * TILE_K // pack_factor(num_bits), -1)  # [K/16, 16N/pf, pf]
    return words_from_slots(slots, num_bits)  # [K/16, 16N/pf]


def gptq_marlin_unrepack(marlin_q_weight: torch.Tensor, size_k: int, size_n: int, num_bits: int) -> torch.Tensor:
    """int32[K/16, 16N/pf] Marlin words -> int32[K/pf, N] GPTQ words (the perm, if any, is not undone)."""
    fn = "gptq_marlin_unrepack"
    size_k, size_n, num_bits = _check_sizes(fn, size_k, size_n, num_bits)
    check_dtype(fn, "marlin_q_weight", marlin_q_weight, (torch.int32,))
    marlin_shape = (size_k // TILE_K, size_n * TILE_K // pack_factor(num_bits))
    check_shape(fn, "marlin_q_weight", marlin_q_weight, marlin_shape, "[size_k/16, 16·size_n/pf]")
    slots = slots_from_words(marlin_q_weight, num_bits).reshape(-1)  # [K·N] in Marlin slot order
    index = marlin_source_index(size_k, size_n, num_bits, slots.device)
    codes = torch.empty_like(slots).index_copy_(0, index, slots)  # [K·N] logical, row-major
    return gptq_pack_codes(codes.view(size_k, size_n), num_bits)  # [K/pf, N]
