"""Tile padding of the newest vLLM Marlin path (spec §2.11): zero-pad N and K up to a shape the kernel runs.

The GEMM has a thread configuration only when ``(N % 64 == 0 and K % 128 == 0)`` or
``(N % 128 == 0 and K % 64 == 0)`` (§4.2). A misaligned layer is zero-padded at weight preparation;
activations are zero-padded along K and the output sliced back to N on every call. Padded fp8 weights are
0x00 (= 0.0), padded scales 0 and padded activations 0, so the padded region contributes exactly 0.

    candidate A = (round_up(N, 64),  round_up(K, lcm(128, g)))       g = max(group_size, 1)
    candidate B = (round_up(N, 128), round_up(K, lcm(64, g)))
    (padded_n, padded_k) = the candidate with the smaller N·K, ties by the smaller N + K, then A

    >>> marlin_padded_nk(192, 320, -1)     # A = (192, 384): 73728;  B = (256, 320): 81920
    (192, 384)
    >>> marlin_padded_nk(128, 64, -1)      # A = (128, 128), B = (128, 64): B is smaller
    (128, 64)
    >>> marlin_moe_padded_intermediate(96, 128)   # round_up(96, lcm(64, 128))
    128

Signatures follow vLLM's marlin_utils.py (sizes in (n, k) order); unlike vLLM, every function returns a new
array even when nothing is padded, so callers can never alias an input.
"""

from __future__ import annotations

import math

import numpy as np

from marlin_ref.errors import check_array, check_dtype, check_int, check_one_of, check_positive

N_ALIGN_NARROW = 64    # GPTQ_MARLIN_MIN_THREAD_N: thread_n >= 64
K_ALIGN_WIDE = 128     # GPTQ_MARLIN_MIN_THREAD_K for the (n % 64, k % 128) family
N_ALIGN_WIDE = 128     # the (n % 128, k % 64) family
K_ALIGN_NARROW = 64
MARLIN_TILE = 16       # GPTQ_MARLIN_TILE: repacked rows hold 16 k each
WORD_BITS = 32


def round_up(x: int, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= x.

    >>> round_up(65, 64), round_up(64, 64)
    (128, 64)
    """
    return -(-x // multiple) * multiple


def _group(fn: str, group_size) -> int:
    """g = max(group_size, 1): -1 (channel-wise) counts as 1."""
    group_size = check_int(fn, "group_size", group_size)
    if group_size != -1 and group_size <= 0:
        raise ValueError(f"{fn}: group_size={group_size} must be -1 (channel-wise) or positive")
    return max(group_size, 1)


def marlin_padded_nk(size_n, size_k, group_size=-1) -> tuple[int, int]:
    """(padded_n, padded_k): the cheaper of the two kernel tile families (§2.11, §4.2); identity if aligned."""
    fn = "marlin_padded_nk"
    n, k = check_positive(fn, "size_n", size_n), check_positive(fn, "size_k", size_k)
    g = _group(fn, group_size)
    candidates = [
        (round_up(n, N_ALIGN_NARROW), round_up(k, math.lcm(K_ALIGN_WIDE, g))),
        (round_up(n, N_ALIGN_WIDE), round_up(k, math.lcm(K_ALIGN_NARROW, g))),
    ]
    return min(candidates, key=lambda nk: (nk[0] * nk[1], nk[0] + nk[1]))  # min keeps A on a full tie


def marlin_moe_padded_intermediate(size_n, group_size=-1) -> int:
    """MoE intermediate size n rounded up to lcm(64, g) (§2.9 step 1): 2n % 128 for w13, n % 64 for w2."""
    fn = "marlin_moe_padded_intermediate"
    n = check_positive(fn, "size_n", size_n)
    return round_up(n, math.lcm(N_ALIGN_NARROW, _group(fn, group_size)))


def _check_padded(fn: str, name: str, size: int, padded: int) -> None:
    if padded < size:
        raise ValueError(f"{fn}: padded_{name}={padded} must be >= size_{name}={size}")


def _zero_pad(x: np.ndarray, pads: list[int]) -> np.ndarray:
    """New array: `x` followed by pads[d] zeros along the last len(pads) dims (zero bytes for every dtype)."""
    shape = x.shape[: x.ndim - len(pads)] + tuple(s + p for s, p in zip(x.shape[x.ndim - len(pads):], pads))
    out = np.zeros(shape, dtype=x.dtype)
    out[tuple(slice(0, s) for s in x.shape)] = x
    return out


def marlin_pad_qweight(qweight, size_n, size_k, padded_n, padded_k) -> np.ndarray:
    """Zero-pad a GPTQ-packed weight int32 [K/pf, N] to [padded_k/pf, padded_n] (right and bottom)."""
    fn = "marlin_pad_qweight"
    check_dtype(fn, "qweight", qweight, [np.int32])
    n, k = check_positive(fn, "size_n", size_n), check_positive(fn, "size_k", size_k)
    pn, pk = check_int(fn, "padded_n", padded_n), check_int(fn, "padded_k", padded_k)
    _check_padded(fn, "n", n, pn)
    _check_padded(fn, "k", k, pk)
    if qweight.ndim != 2 or qweight.shape[1] != n or qweight.shape[0] == 0 or k % qweight.shape[0] != 0:
        raise ValueError(f"{fn}: qweight must be 2-D [size_k/pack_factor, size_n] with size_k={k}, "
                         f"size_n={n}, got shape {qweight.shape}")
    pack_factor = k // qweight.shape[0]
    if (pk - k) % pack_factor != 0:
        raise ValueError(f"{fn}: padded_k={pk} minus size_k={k} must be a multiple of the pack factor "
                         f"{pack_factor}")
    return _zero_pad(qweight, [(pk - k) // pack_factor, pn - n])


def marlin_pad_scales(scales, size_n, size_k, padded_n, padded_k, group_size) -> np.ndarray:
    """Zero-pad scales [G, N] to [padded_k/group_size (or 1 when group_size == -1), padded_n].

    G must be exactly ⌈size_k/group_size⌉ (1 for channel-wise): one scale row per group of real K rows, so
    only padded rows get the zero scale. Call before marlin_permute_scales and pass it the padded extents.
    Any dtype (raw e8m0 bytes too).
    """
    fn = "marlin_pad_scales"
    check_array(fn, "scales", scales)
    n, k = check_positive(fn, "size_n", size_n), check_positive(fn, "size_k", size_k)
    pn, pk = check_int(fn, "padded_n", padded_n), check_int(fn, "padded_k", padded_k)
    g = _group(fn, group_size)
    _check_padded(fn, "n", n, pn)
    _check_padded(fn, "k", k, pk)
    if scales.ndim != 2 or scales.shape[1] != n:
        raise ValueError(f"{fn}: scales must be 2-D [G, size_n={n}], got shape {scales.shape}")
    groups, rows = scales.shape[0], 1
    if group_size != -1:
        if pk % g != 0:
            raise ValueError(f"{fn}: padded_k={pk} must be a multiple of group_size={g}")
        rows = pk // g
    want = 1 if group_size == -1 else -(-k // g)                  # ⌈size_k / group_size⌉
    if groups != want:
        which = "fewer" if groups < want else "more"
        raise ValueError(f"{fn}: scales must have one row per group, ⌈size_k/group_size⌉ = {want} for "
                         f"size_k={k}, group_size={group_size}; got G={groups}, {which} than {want} groups")
    return _zero_pad(scales, [rows - groups, pn - n])


def marlin_pad_dim(x, size, padded) -> np.ndarray:
    """Zero-pad the last dim of `x` from `size` to `padded` (activations along K, bias along N)."""
    fn = "marlin_pad_dim"
    check_array(fn, "x", x)
    size, padded = check_positive(fn, "size", size), check_int(fn, "padded", padded)
    if x.ndim == 0 or x.shape[-1] != size:
        raise ValueError(f"{fn}: x's last dim must be size={size}, got shape {x.shape}")
    if padded < size:
        raise ValueError(f"{fn}: padded={padded} must be >= size={size}")
    return _zero_pad(x, [padded - size])


def marlin_unpad_output(output, size_n, padded_n) -> np.ndarray:
    """Contiguous copy of output[..., :size_n]; the last dim must be padded_n."""
    fn = "marlin_unpad_output"
    check_array(fn, "output", output)
    n, pn = check_positive(fn, "size_n", size_n), check_int(fn, "padded_n", padded_n)
    _check_padded(fn, "n", n, pn)
    if output.ndim == 0 or output.shape[-1] != pn:
        raise ValueError(f"{fn}: output's last dim must be padded_n={pn}, got shape {output.shape}")
    return np.ascontiguousarray(output[..., :n])


def marlin_repacked_nk(qweight, num_bits) -> tuple[int, int]:
    """(size_n, size_k) a Marlin weight was repacked with, padding included, from its shape (§2.11).

    K = rows·16 and N = cols·pf/16 (pf = 32/num_bits); for a stacked MoE weight the last two dims count.

    >>> marlin_repacked_nk(np.zeros((8, 512), np.int32), 8)     # [K/16, 4N]
    (128, 128)
    """
    fn = "marlin_repacked_nk"
    check_dtype(fn, "qweight", qweight, [np.int32])
    num_bits = check_one_of(fn, "num_bits", num_bits, (4, 8))
    if qweight.ndim < 2:
        raise ValueError(f"{fn}: qweight must be at least 2-D [K/16, N·16/pf], got shape {qweight.shape}")
    pack_factor = WORD_BITS // num_bits
    rows, cols = qweight.shape[-2:]
    if (cols * pack_factor) % MARLIN_TILE != 0:
        raise ValueError(f"{fn}: qweight columns={cols} times pack factor {pack_factor} must be a "
                         f"multiple of {MARLIN_TILE}")
    return cols * pack_factor // MARLIN_TILE, rows * MARLIN_TILE
