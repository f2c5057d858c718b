"""Checkpoint FP8 scale schemes -> the Marlin [G, N] scale grid (spec §2.8 step 4, §2.9 step 3, §2.10).

Layout card
-----------
    checkpoint scale  (any rank where vLLM accepts it)         ->  grid [G, N] in orig_dtype
    tensor-wise       numel == 1                                   G = 1, every column = s
    per-shard widths  numel == len(logical_widths), Σ widths = N   G = 1, s_i repeated width_i times
    equal shards      numel > 1, numel != N, N % numel == 0        G = 1, s_i repeated N/numel times
    channel-wise      numel == N                                   G = 1, [1, N]
    block-wise        [block_n, block_k] given; 2-D scale          G = ⌈K/bk⌉:
                      [⌈K/bk⌉, ⌈N/bn⌉] (size_k_first), else its transpose [⌈N/bn⌉, ⌈K/bk⌉];
                      grid[g, n] = scale_kn[g, ⌊n / block_n⌋]       (repeat bn along N, keep the first N)

    The non-block schemes are tried in exactly that order (tensor-wise first, then logical_widths, then
    equal shards, then channel-wise). First of all, the scale is cast to orig_dtype (round to nearest
    even): that rounding is part of the contract (§6.1 item 10).

    Worked example of §2.8 (bn = bk = 128, N = 192, K = 256, not size_k_first):
    >>> ckpt = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)         # [[a, b], [c, d]], rows = n-blocks
    >>> g = convert_fp8_scales(ckpt, size_n=192, size_k=256, orig_dtype="bf16",
    ...                        weight_block_size=[128, 128], size_k_first=False)
    >>> g.shape, [float(v) for v in g[0, [0, 127, 128, 191]]], [float(v) for v in g[1, [0, 128]]]
    ((2, 192), [1.0, 1.0, 3.0, 3.0], [2.0, 4.0])

The small helpers (`tensorwise_scales`, `per_shard_scales`, `equal_shard_scales`, `channelwise_scales`,
`blockwise_scales`) each take an array already in the target dtype and build one scheme's grid, so tests
can check the equivalences between schemes directly.
"""

from __future__ import annotations

import math

import numpy as np

from marlin_ref.errors import check_bool, check_dtype, check_positive
from marlin_ref.formats import BF16, FP16, as_activation_dtype, as_e8m0_codes, decode_e8m0

CHECKPOINT_SCALE_DTYPES = (np.float32, FP16, BF16)   # float64 excluded: torch rounds it to bf16 twice
INTERMEDIATE_DTYPES = {"float32": np.dtype(np.float32), "fp32": np.dtype(np.float32),
                       "float16": FP16, "fp16": FP16, "bfloat16": BF16, "bf16": BF16}


def _cast_scale(fn: str, name: str, scale, dtype: np.dtype) -> np.ndarray:
    """Checkpoint scale -> dtype, round to nearest even (the float32 hop is exact for 16-bit inputs)."""
    if isinstance(scale, np.generic):
        scale = np.asarray(scale)
    check_dtype(fn, name, scale, CHECKPOINT_SCALE_DTYPES)
    if scale.size == 0:
        raise ValueError(f"{fn}: {name} must not be empty, got shape {scale.shape}")
    return scale.astype(np.float32).astype(dtype)


# --- one helper per scheme; inputs are already in the target dtype --------------------------------

def tensorwise_scales(s: np.ndarray, size_n: int) -> np.ndarray:
    """One scale for the whole weight -> [1, N], every column = s."""
    return np.repeat(s.reshape(1, 1), size_n, axis=1)                # [1, N]


def per_shard_scales(s: np.ndarray, logical_widths) -> np.ndarray:
    """Fused layer (QKV ...) with shard widths w_i: s_i repeated w_i times, shards in order -> [1, Σ w_i]."""
    return np.repeat(s.reshape(1, -1), list(logical_widths), axis=1)   # [1, Σ widths]


def equal_shard_scales(s: np.ndarray, size_n: int) -> np.ndarray:
    """numel equal shards (gate/up ...): s_i repeated N/numel times -> [1, N]."""
    return np.repeat(s.reshape(1, -1), size_n // s.size, axis=1)     # [1, N]


def channelwise_scales(s: np.ndarray, size_n: int) -> np.ndarray:
    """One scale per output column -> [1, N] (a copy)."""
    return s.reshape(1, size_n).copy()                               # [1, N]


def blockwise_scales(scale_kn: np.ndarray, block_n: int, size_n: int) -> np.ndarray:
    """[G, ⌈N/bn⌉] k-major block grid -> [G, N]: each column repeated block_n times, cut to N columns."""
    return np.repeat(scale_kn, block_n, axis=1)[:, :size_n].copy()   # [G, N]


def check_block_size(fn: str, weight_block_size) -> tuple[int, int]:
    """(block_n, block_k) from a [block_n, block_k] pair of positive integers."""
    if isinstance(weight_block_size, (str, bytes)) or np.ndim(weight_block_size) != 1 or len(weight_block_size) != 2:
        raise ValueError(f"{fn}: weight_block_size must be [block_n, block_k], got {weight_block_size!r}")
    return (check_positive(fn, "block_n", weight_block_size[0]),
            check_positive(fn, "block_k", weight_block_size[1]))


def check_logical_widths(fn: str, logical_widths) -> list[int] | None:
    """None, or the shard widths of a fused layer as positive ints (their sum is checked where used)."""
    if logical_widths is None:
        return None
    if isinstance(logical_widths, (str, bytes)) or np.ndim(logical_widths) != 1:
        raise TypeError(f"{fn}: logical_widths must be a sequence of shard widths, got {logical_widths!r}")
    return [check_positive(fn, f"logical_widths[{i}]", w) for i, w in enumerate(logical_widths)]


def fp8_scale_grid(fn: str, name: str, scale, *, size_n: int, size_k: int, dtype: np.dtype, weight_block_size,
                   logical_widths, size_k_first: bool) -> np.ndarray:
    """convert_fp8_scales with the caller's name and argument name in every message (sizes already valid)."""
    s = _cast_scale(fn, name, scale, dtype)
    n, k = size_n, size_k
    if weight_block_size is not None:
        block_n, block_k = check_block_size(fn, weight_block_size)
        kn_shape = (math.ceil(k / block_k), math.ceil(n / block_n))
        want = kn_shape if size_k_first else kn_shape[::-1]
        if s.shape != want:
            layout = "[⌈K/bk⌉, ⌈N/bn⌉]" if size_k_first else "[⌈N/bn⌉, ⌈K/bk⌉]"
            raise ValueError(f"{fn}: {name} (block scale) must have shape {layout} = {want} for size_n={n}, "
                             f"size_k={k}, weight_block_size=[{block_n}, {block_k}], "
                             f"size_k_first={size_k_first}, got {s.shape}")
        scale_kn = s if size_k_first else s.T                          # [⌈K/bk⌉, ⌈N/bn⌉]
        return blockwise_scales(scale_kn, block_n, n)                   # [⌈K/bk⌉, N]
    if s.size == 1:
        return tensorwise_scales(s, n)
    if logical_widths is not None and s.size == len(logical_widths):
        if sum(logical_widths) != n:
            raise ValueError(f"{fn}: sum(logical_widths)={sum(logical_widths)} must equal size_n={n} "
                             f"(widths {logical_widths})")
        return per_shard_scales(s, logical_widths)
    if s.size != n:
        if n % s.size != 0:
            raise ValueError(f"{fn}: equal-shard {name}: size_n={n} must be a multiple of the scale's "
                             f"numel={s.size} (channel-wise needs numel == size_n)")
        return equal_shard_scales(s, n)
    return channelwise_scales(s, n)


def convert_fp8_scales(scale, *, size_n, size_k, orig_dtype, weight_block_size=None,
                       logical_widths=None, size_k_first=True) -> np.ndarray:
    """Dense FP8 checkpoint scale -> [G, N] in orig_dtype (§2.8 step 4; schemes and order in the card)."""
    fn = "convert_fp8_scales"
    n, k = check_positive(fn, "size_n", size_n), check_positive(fn, "size_k", size_k)
    return fp8_scale_grid(fn, "scale", scale, size_n=n, size_k=k,
                          dtype=as_activation_dtype(orig_dtype, fn, "orig_dtype"),
                          weight_block_size=weight_block_size,
                          logical_widths=check_logical_widths(fn, logical_widths),
                          size_k_first=check_bool(fn, "size_k_first", size_k_first))


def fp8_moe_scale_grid(fn: str, name: str, scale, *, num_experts: int, size_n: int, size_k: int, dtype: np.dtype,
                       weight_block_size) -> np.ndarray:
    """convert_fp8_moe_scales with the caller's name and argument name in every message (sizes already valid)."""
    e, n, k = num_experts, size_n, size_k
    s = _cast_scale(fn, name, scale, dtype)
    if weight_block_size is not None:
        block_n, block_k = check_block_size(fn, weight_block_size)
        want = (e, math.ceil(n / block_n), math.ceil(k / block_k))
        if s.shape != want:
            raise ValueError(f"{fn}: {name} (block scale) must have shape [E, ⌈N/bn⌉, ⌈K/bk⌉] = {want}, "
                             f"got {s.shape}")
        return np.stack([blockwise_scales(s[x].T, block_n, n) for x in range(e)])   # [E, ⌈K/bk⌉, N]
    if s.size == e:
        return np.stack([tensorwise_scales(s.reshape(e)[x], n) for x in range(e)])  # [E, 1, N]
    if s.size != e * n:
        shards = s.size // e
        if s.size % e != 0 or n % shards != 0:
            raise ValueError(f"{fn}: per-shard {name} numel={s.size} must be num_experts={e} times a "
                             f"divisor of size_n={n} (channel-wise needs numel == {e * n})")
        s = s.reshape(e, shards)                                                     # [E, shards]
        return np.stack([equal_shard_scales(s[x], n) for x in range(e)])             # [E, 1, N]
    s = s.reshape(e, n)                                                              # [E, N]
    return np.stack([channelwise_scales(s[x], n) for x in range(e)])                 # [E, 1, N]


def convert_fp8_moe_scales(scale, *, num_experts, size_n, size_k, orig_dtype,
                           weight_block_size=None) -> np.ndarray:
    """MoE FP8 checkpoint scale -> [E, G, size_n] in orig_dtype (§2.9 step 3).

    per-expert tensor-wise (numel == E), per-expert shards (numel > E, numel != E·size_n, shards of equal
    width), channel-wise (numel == E·size_n); block-wise [E, ⌈N/bn⌉, ⌈K/bk⌉] is always permuted to k-major
    (no size_k_first switch), repeated bn along N and cut to size_n.
    """
    fn = "convert_fp8_moe_scales"
    e = check_positive(fn, "num_experts", num_experts)
    n, k = check_positive(fn, "size_n", size_n), check_positive(fn, "size_k", size_k)
    return fp8_moe_scale_grid(fn, "scale", scale, num_experts=e, size_n=n, size_k=k,
                              dtype=as_activation_dtype(orig_dtype, fn, "orig_dtype"),
                              weight_block_size=weight_block_size)


def mxfp8_scales_to_float(scale_u8, *, intermediate_dtype) -> np.ndarray:
    """e8m0 bytes -> float values in the intermediate dtype, as vLLM's ``.to(torch.get_default_dtype())`` (§2.10).

    Exact for float32 and bfloat16 (both have the 8-bit exponent range, byte 0 = 2^-127 is a subnormal of
    each; byte 255 -> NaN). With float16 the hazard is reproduced: 2^(b-127) is rounded to nearest even, so
    bytes < 103 (below 2^-24; 102 is the tie 2^-25 and goes to even 0) become 0 and bytes > 142 (above 2^15)
    become inf; re-encoding then gives byte 0 and byte 255.

    >>> codes = np.array([102, 103, 127, 142, 143, 255], np.uint8)
    >>> mxfp8_scales_to_float(codes, intermediate_dtype="float16")
    array([0.000e+00, 5.960e-08, 1.000e+00, 3.277e+04,       inf,       nan], dtype=float16)
    """
    fn = "mxfp8_scales_to_float"
    codes = as_e8m0_codes(scale_u8, fn, "scale_u8")
    return e8m0_bytes_to_float(codes, intermediate_float_dtype(fn, intermediate_dtype))


def intermediate_float_dtype(fn: str, intermediate_dtype) -> np.dtype:
    """float32, bfloat16 or float16 from a name or a NumPy / ml_dtypes dtype (the §2.10 intermediate)."""
    key = intermediate_dtype if isinstance(intermediate_dtype, str) else None
    if key is None and intermediate_dtype is not None:       # np.dtype(None) would be float64
        try:
            key = np.dtype(intermediate_dtype).name
        except (TypeError, ValueError):
            key = None
    if key not in INTERMEDIATE_DTYPES:
        raise ValueError(f"{fn}: intermediate_dtype={intermediate_dtype!r} must be float32, bfloat16 or float16")
    return INTERMEDIATE_DTYPES[key]


def e8m0_bytes_to_float(codes: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """uint8 e8m0 codes -> 2^(b-127) in dtype, round to nearest even (both already checked)."""
    exact = decode_e8m0(codes).astype(np.float32)   # exact: 2^-127 .. 2^127, NaN
    with np.errstate(over="ignore"):                 # fp16: overflow to inf is the hazard
        return exact.astype(dtype)                   # RNE
