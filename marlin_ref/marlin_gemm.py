"""What the Marlin FP8 / MXFP8 GEMM computes, as a float64 reference (spec §3), and its error bound (§3.6).

Layout card (what the kernel reads, §2.14, and the effective weight of each scheme, §3.2)
-----------
    a          [M, K] fp16 / bf16 (= output dtype)          u = dec(W[k, n]), NaN codes -> ±480 (§3.1)
    b_q_weight int32 [K/16, 4N]  --gptq_marlin_unrepack, unpack--> fp8 W [K, N]
    b_scales   (A) [1, N] 16-bit, single-permuted, fused F = S·2^β     W_eff = u·S          (not rounded)
               (B) [G, N] 16-bit, grouped-permuted, fused              W_eff = RT(u·S_g)    (one rounding)
               (C) [G, N] e8m0, grouped-permuted + [0,2,1,3]           W_eff = RT(u·μ_b), μ = 2^(b-127),
                   b = 0 -> 0, b = 255 -> +inf (bf16 only; RT is exact unless the product leaves bf16 range)
    b_bias     [N] dtype, single-permuted
    out        = RT(acc)  or, with bias, RT(RT(acc) + b)        acc = Σ_k a[m,k]·W_eff[k,n] (fp32 in the kernel)

    >>> from marlin_ref.prepare_fp8_layer_for_marlin import prepare_fp8_layer_for_marlin
    >>> w = np.zeros((128, 64), np.uint8); w[3, 5] = 0x40                  # [K, N]; W[3, 5] = 2.0
    >>> layer = prepare_fp8_layer_for_marlin(w, np.array(0.75, np.float32), orig_dtype="fp16")
    >>> float(dequantize_marlin_weight(layer.qweight, layer.scales, 128, 64, dtype="fp16")[3, 5])
    1.5

The reference computes acc in float64 (products are exact; the float64 sum has a relative error of at
most K·2^-53 of Σ|products|, far below every fp32 term of the bound) and rounds once to the dtype with
`round_to_dtype` (a single rounding from float64; ml_dtypes would round twice via float32).
"""

from __future__ import annotations

import numpy as np

from marlin_ref.errors import (FLOAT_DTYPES, check_array, check_bool, check_dtype, check_float_array, check_multiple,
                               check_nonempty, check_positive, check_rank, check_shape)
from marlin_ref.formats import (BF16, E8M0, FP16, KERNEL_E4M3_NAN_VALUE, as_activation_dtype, as_fp8_codes,
                                decode_e4m3, decode_e8m0, encode_e8m0, exponent_bias_of, round_to_dtype)
from marlin_ref.gptq_marlin_repack import gptq_marlin_unrepack
from marlin_ref.marlin_permute_bias import marlin_unpermute_bias
from marlin_ref.marlin_permute_scales import marlin_unpermute_scales
from marlin_ref.mxfp8_marlin_process_scales import mxfp8_marlin_unprocess_scales
from marlin_ref.pack_fp8_to_int32 import unpack_fp8_from_int32
from marlin_ref.layout import MX_BLOCK, TILE_K, TILE_N, slot_offsets

FP8_NUM_BITS = 8
FP8_GROUP = 128                         # the only grouped FP8 kernel (group_blocks = 8, §4.2)
MX_MIN_GROUPS = 2                       # one e8m0 group would take the single permutation in the prep (§2.4)
FP32_SUBNORMAL_GRID = 2.0 ** -149       # smallest fp32 subnormal: truncated products land on this grid
FP32_MIN_NORMAL = 2.0 ** -126


# --- validation: every public function checks its arguments here, up front, under its own name ---------

def _check_sizes(fn, size_k, size_n) -> tuple[int, int]:
    """size_k a positive multiple of 16, size_n of 64: whole Marlin tiles (§2.3)."""
    size_k = check_multiple(fn, "size_k", check_positive(fn, "size_k", size_k), TILE_K)
    size_n = check_multiple(fn, "size_n", check_positive(fn, "size_n", size_n), TILE_N)
    return size_k, size_n


def _check_weight(fn, b_q_weight, size_k, size_n, experts: int | None = None) -> None:
    """int32 Marlin words [K/16, 4N], or [E, K/16, 4N] when experts is given."""
    check_dtype(fn, "b_q_weight", b_q_weight, [np.int32])
    shape, layout = (size_k // TILE_K, 4 * size_n), "[size_k/16, 4·size_n]"
    if experts is not None:
        shape, layout = (experts,) + shape, "[E, size_k/16, 4·size_n]"
    check_shape(fn, "b_q_weight", b_q_weight, shape, layout)


def _scale_scheme(fn, b_scales, size_k, size_n, dtype, experts: int | None = None) -> tuple[str, int]:
    """(scheme, group_size) the kernel takes from b_scales [G, N] ([E, G, N] with experts), §3.2 / §4.1:
    "A" channel-wise (G = 1), "B" group 128, "C" e8m0 group 32 (bf16 only, G = K/32 >= 2)."""
    check_array(fn, "b_scales", b_scales)
    lead = () if experts is None else (experts,)
    if b_scales.ndim != len(lead) + 2 or b_scales.shape[:len(lead)] != lead or b_scales.shape[-1] != size_n \
            or b_scales.shape[-2] == 0:
        layout = "[G, size_n]" if experts is None else f"[E={experts}, G, size_n]"
        raise ValueError(f"{fn}: b_scales must be {layout} with size_n={size_n} and G >= 1, got shape "
                         f"{b_scales.shape}")
    groups = b_scales.shape[-2]
    if b_scales.dtype in (E8M0, np.dtype(np.uint8)):
        if dtype != BF16:
            raise ValueError(f"{fn}: e8m0 scales (MXFP8) need dtype bfloat16; no fp16 MXFP8 kernel "
                             f"exists (spec §2.10, §4.2), got {dtype.name}")
        if size_k % MX_BLOCK != 0 or groups != size_k // MX_BLOCK or groups < MX_MIN_GROUPS:
            raise ValueError(f"{fn}: e8m0 b_scales has G={groups} rows; MXFP8 needs G = size_k/{MX_BLOCK} >= "
                             f"{MX_MIN_GROUPS} (size_k={size_k}; one group would take the single permutation, "
                             f"spec §2.4)")
        return "C", MX_BLOCK
    check_dtype(fn, "b_scales", b_scales, [dtype])
    if groups == 1:
        return "A", -1
    if size_k != FP8_GROUP * groups:
        raise ValueError(f"{fn}: b_scales has G={groups} rows, so group_size = size_k/G = {size_k}/{groups}; "
                         f"FP8 Marlin supports only channel-wise (G=1) or group_size {FP8_GROUP} (spec §4.2)")
    return "B", FP8_GROUP


def _check_activations(fn, a, size_k: int) -> np.dtype:
    """a [M, size_k] in fp16 / bf16; returns its dtype (= the output dtype)."""
    check_dtype(fn, "a", a, [FP16, BF16])
    if a.ndim != 2 or a.shape[1] != size_k:
        raise ValueError(f"{fn}: a must be [M, size_k={size_k}], got shape {a.shape}")
    return a.dtype


def _check_bias(fn, name, bias, shape: tuple, dtypes) -> np.ndarray | None:
    """None, or an array of one of `dtypes` with exactly `shape` (no broadcasting)."""
    if bias is None:
        return None
    check_dtype(fn, name, bias, dtypes)
    return check_shape(fn, name, bias, shape, "[N]" if len(shape) == 1 else "[E, N]")


def _check_hot(fn, hot, size_k: int) -> np.ndarray:
    """Row indices of the one-hot activations: a non-empty 1-D list or array of integers in [0, size_k)."""
    hot = np.asarray(hot)
    if hot.dtype.kind not in "iu":
        raise TypeError(f"{fn}: hot must hold integers (column indices), got dtype {hot.dtype.name}")
    if hot.ndim != 1 or hot.size == 0:
        raise ValueError(f"{fn}: hot must be a non-empty 1-D sequence of indices, got shape {hot.shape}")
    if hot.min() < 0 or hot.max() >= size_k:
        raise ValueError(f"{fn}: hot must lie in [0, size_k={size_k}), got values in [{hot.min()}, {hot.max()}]")
    return hot.astype(np.int64)


# --- the computation (inputs already checked) --------------------------------------------------------

def _weight_values(b_q_weight, size_k, size_n, columns=None) -> np.ndarray:
    """u = dec(W) float64 [K, N] (or [K, C] for the given columns) with the NaN codes read as ±480 (§3.1)."""
    if columns is None:
        gptq = gptq_marlin_unrepack(b_q_weight, size_k, size_n, FP8_NUM_BITS)      # [K/4, N]
        codes = as_fp8_codes(unpack_fp8_from_int32(gptq, size_k_first=True))       # [K, N] uint8
    else:   # gather only these columns' bytes: the cost is linear in K·C, not in K·N (§2.3.1)
        offsets = slot_offsets(np.arange(size_k)[:, None], columns[None, :], size_n=size_n)   # [K, C]
        codes = np.ascontiguousarray(b_q_weight).view(np.uint8).reshape(-1)[offsets]
    return decode_e4m3(codes, nan_as=KERNEL_E4M3_NAN_VALUE)


def _expand_groups(s: np.ndarray, size_k: int) -> np.ndarray:
    return np.repeat(s, size_k // s.shape[0], axis=0)                              # [K, N]


def _scales_per_k(b_scales, scheme, group, size_k, size_n, dtype, columns=None) -> np.ndarray:
    """The multiplier of every weight, float64 [K, N] (or [K, C] for the given columns): S = F·2^-β for 16-bit
    scales, μ_b with the kernel's b = 0 -> 0, b = 255 -> +inf for e8m0 (§3.1)."""
    pick = slice(None) if columns is None else columns
    if scheme == "C":
        floats = mxfp8_marlin_unprocess_scales(b_scales.view(E8M0), dtype="float32")
        codes = encode_e8m0(marlin_unpermute_scales(floats, size_k, size_n, group))   # exact round trip (§1)
        return _expand_groups(decode_e8m0(codes[:, pick], kernel_faithful=True), size_k)   # 0 -> 0, 255 -> inf
    fused = marlin_unpermute_scales(b_scales, size_k, size_n, group).astype(np.float64)[:, pick]
    return _expand_groups(np.ldexp(fused, -exponent_bias_of(dtype)), size_k)      # S = F·2^-β, exact


def dequantize_marlin_weight(b_q_weight, b_scales, size_k, size_n, *, dtype, columns=None) -> np.ndarray:
    """Marlin tensors -> W_eff float64 [K, N] by the per-scheme rule of the card (§3.6). With `columns` (integers
    in [0, N)) only those columns, [K, C]: what a sampled oracle of a model-sized GEMM needs, at a cost linear in
    K·C (the weight's bytes are gathered, not unrepacked)."""
    fn = "dequantize_marlin_weight"
    dtype = as_activation_dtype(dtype, fn)
    size_k, size_n = _check_sizes(fn, size_k, size_n)
    _check_weight(fn, b_q_weight, size_k, size_n)
    scheme, group = _scale_scheme(fn, b_scales, size_k, size_n, dtype)
    if columns is not None:
        columns = check_array(fn, "columns", np.asarray(columns) if isinstance(columns, (list, tuple)) else columns)
        if columns.ndim != 1 or columns.dtype.kind not in "iu" or columns.size == 0 or \
                columns.min() < 0 or columns.max() >= size_n:
            raise ValueError(f"{fn}: columns must be a non-empty 1-D array of integers in [0, size_n={size_n})")
    u = _weight_values(b_q_weight, size_k, size_n, columns)
    s = _scales_per_k(b_scales, scheme, group, size_k, size_n, dtype, columns)
    with np.errstate(invalid="ignore"):                 # 0·inf = NaN is the kernel's answer too
        w = u * s
    return w if scheme == "A" else round_to_dtype(w, dtype)


def ieee_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """+0.0 + Σ_k x[m,k]·w[k,n] in float64 with IEEE specials (0·inf = NaN), starting from +0 like the
    kernel's accumulator (so an all-±0 sum is +0). BLAS is used only when everything is finite."""
    if np.isfinite(x).all() and np.isfinite(w).all():
        return x @ w + 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        return np.stack([0.0 + (row[:, None] * w).sum(axis=0) for row in x])         # [M, N]


def _truncated_products_sum(x, u, s) -> np.ndarray:
    """bf16 path (A) with §3.5's truncation: x·u·2^-120 in fp32 is truncated toward zero onto the 2^-149
    grid when subnormal, i.e. x·u keeps multiples of 2^-29 when |x·u| < 2^-6 (modelled per product)."""
    beta = exponent_bias_of(BF16)
    p = x[:, :, None] * u[None, :, :]                                                # [M, K, N]
    grid = FP32_SUBNORMAL_GRID * 2.0 ** beta                                        # 2^-29
    tiny = np.abs(p) < FP32_MIN_NORMAL * 2.0 ** beta                                # |x·u| < 2^-6
    p = np.where(tiny, np.trunc(p / grid) * grid, p)
    return 0.0 + p.sum(axis=1) * s[0]                                               # [M, N]


def add_bias_in_dtype(out: np.ndarray, bias, dtype) -> np.ndarray:
    """RT(out + b): the kernel's half2 add of the logical bias to the already-rounded output (§3.2)."""
    return out if bias is None else round_to_dtype(out + bias.astype(np.float64), dtype)


def _gemm(a, b_q_weight, b_scales, b_bias, size_k, size_n, scheme, group, truncate) -> np.ndarray:
    """The dense GEMM of the card on checked inputs, in a's dtype."""
    dtype = a.dtype
    u = _weight_values(b_q_weight, size_k, size_n)
    s = _scales_per_k(b_scales, scheme, group, size_k, size_n, dtype)
    x = a.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        if scheme == "A" and truncate and dtype == BF16:
            acc = _truncated_products_sum(x, u, s)
        elif scheme == "A":
            acc = ieee_matmul(x, u) * s[0]           # Σ x·u first, then × S (the kernel's acc·F order)
        else:
            acc = ieee_matmul(x, round_to_dtype(u * s, dtype))
    bias = None if b_bias is None else marlin_unpermute_bias(b_bias)
    return add_bias_in_dtype(round_to_dtype(acc, dtype), bias, dtype).astype(dtype)


def marlin_gemm_reference(a, b_q_weight, b_scales, b_bias, *, size_n, size_k,
                          truncate_fp32_subnormal_products=False) -> np.ndarray:
    """RT(a @ W_eff) (+ bias: RT(RT(acc) + b)), in a's dtype (§3.2, use_fp32_reduce, no atomics).

    b_bias is the single-permuted bias the kernel takes (or None). truncate_fp32_subnormal_products
    (default off) models §3.5: bf16 channel-wise products x·u·2^-120 that are fp32-subnormal are truncated
    toward zero (measured on an H100; whether per product or on the sum is undetermined, we model per
    product). It changes nothing for fp16 or the grouped/MX schemes.
    """
    fn = "marlin_gemm_reference"
    size_k, size_n = _check_sizes(fn, size_k, size_n)
    dtype = _check_activations(fn, a, size_k)
    _check_weight(fn, b_q_weight, size_k, size_n)
    scheme, group = _scale_scheme(fn, b_scales, size_k, size_n, dtype)
    _check_bias(fn, "b_bias", b_bias, (size_n,), [dtype])
    truncate = check_bool(fn, "truncate_fp32_subnormal_products", truncate_fp32_subnormal_products)
    return _gemm(a, b_q_weight, b_scales, b_bias, size_k, size_n, scheme, group, truncate)


def gemm_math_reference(x, weight_fp8_kn, scales_logical_gn, bias=None) -> np.ndarray:
    """The plain mathematical product x @ (dec(W)·S) (+ bias) in float64: nothing rounded, NaN codes stay
    NaN, scales used as given (logical order, unfused, G rows each covering K/G consecutive k)."""
    fn = "gemm_math_reference"
    check_float_array(fn, "x", x, 2)
    codes = check_rank(fn, "weight_fp8_kn", as_fp8_codes(weight_fp8_kn, fn, "weight_fp8_kn"), 2)
    size_k, size_n = codes.shape
    s = check_float_array(fn, "scales_logical_gn", scales_logical_gn, 2)
    if s.shape[1] != size_n or s.shape[0] == 0 or size_k % s.shape[0] != 0:
        raise ValueError(f"{fn}: scales_logical_gn must be [G, N={size_n}] with K={size_k} a multiple of G, "
                         f"got shape {s.shape}")
    if x.shape[1] != size_k:
        raise ValueError(f"{fn}: x must be [M, K={size_k}], got shape {x.shape}")
    _check_bias(fn, "bias", bias, (size_n,), FLOAT_DTYPES)
    w = decode_e4m3(codes) * _expand_groups(s.astype(np.float64), size_k)
    out = ieee_matmul(x.astype(np.float64), w)
    return out if bias is None else out + bias.astype(np.float64)


def one_hot_activations(hot, size_k, dtype) -> np.ndarray:
    """[M, K] activations with a single 1.0 per row, at column hot[m] (§3.6 bit-exact layout test)."""
    fn = "one_hot_activations"
    dtype = as_activation_dtype(dtype, fn)
    hot = _check_hot(fn, hot, check_positive(fn, "size_k", size_k))
    x = np.zeros((hot.size, size_k), dtype=dtype)
    x[np.arange(hot.size), hot] = 1.0
    return x


def one_hot_expected(w_eff, dtype, *, hot=None, bias=None) -> np.ndarray:
    """Exact kernel output for one-hot rows: out[m, n] = RT(W_eff[hot[m], n]) (§3.6), in dtype.

    hot defaults to arange(K) (x = identity). Zeros read out as +0.0 (the accumulator starts at +0), and a
    non-finite W_eff elsewhere in the column poisons it (0·inf = NaN, e.g. e8m0 byte 255). With bias (logical
    order): RT(RT(W_eff) + b). Not for an infinite channel-wise scale (every output non-finite, §3.7).
    """
    fn = "one_hot_expected"
    dtype = as_activation_dtype(dtype, fn)
    w = check_nonempty(fn, "w_eff", check_float_array(fn, "w_eff", w_eff, 2)).astype(np.float64)
    hot = np.arange(w.shape[0]) if hot is None else _check_hot(fn, hot, w.shape[0])
    _check_bias(fn, "bias", bias, (w.shape[1],), FLOAT_DTYPES)
    x = np.zeros((hot.size, w.shape[0]))
    x[np.arange(hot.size), hot] = 1.0
    acc = ieee_matmul(x, w)
    return add_bias_in_dtype(round_to_dtype(acc, dtype), bias, dtype).astype(dtype)


def marlin_moe_gemm_reference(a, b_q_weight, b_scales, b_bias, *, topk_ids, size_n, size_k,
                              topk_weights=None, mul_topk_weights=False) -> np.ndarray:
    """Stacked MoE GEMM (§5): row m·top_k + j = expert topk_ids[m, j]'s dense GEMM of a[m].

    b_q_weight [E, K/16, 4N], b_scales [E, G, N], b_bias [E, N] or None (single-permuted per expert).
    topk_ids -1 routes a token's slot to no expert (an expert of another rank, vLLM's expert_map): its row is +0.
    With mul_topk_weights the router weight is rounded to dtype and applied after the bias:
    out = RT(RT(RT(acc) + b) · RT(w)). GEMM2 of §5 is the same call with a [M·top_k, K] and top_k = 1.
    Returns [M·top_k, N] in a's dtype.
    """
    fn = "marlin_moe_gemm_reference"
    size_k, size_n = _check_sizes(fn, size_k, size_n)
    dtype = _check_activations(fn, a, size_k)
    check_dtype(fn, "b_q_weight", b_q_weight, [np.int32])
    num_experts = check_rank(fn, "b_q_weight", b_q_weight, 3).shape[0]
    _check_weight(fn, b_q_weight, size_k, size_n, experts=num_experts)
    scheme, group = _scale_scheme(fn, b_scales, size_k, size_n, dtype, experts=num_experts)
    _check_bias(fn, "b_bias", b_bias, (num_experts, size_n), [dtype])
    ids = check_array(fn, "topk_ids", topk_ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{fn}: topk_ids must have an integer dtype, got {ids.dtype.name}")
    if ids.ndim != 2 or ids.shape[0] != a.shape[0] or ids.size == 0:
        raise ValueError(f"{fn}: topk_ids must be [M={a.shape[0]}, top_k] with top_k >= 1, got shape {ids.shape}")
    if ids.min() < -1 or ids.max() >= num_experts:
        raise ValueError(f"{fn}: topk_ids must lie in [0, {num_experts}) or be -1 (no expert), "
                         f"got [{ids.min()}, {ids.max()}]")
    if check_bool(fn, "mul_topk_weights", mul_topk_weights):
        check_shape(fn, "topk_weights", check_float_array(fn, "topk_weights", topk_weights), ids.shape,
                    "[M, top_k], like topk_ids")
    top_k = ids.shape[1]
    out = np.zeros((a.shape[0] * top_k, size_n), dtype=dtype)
    for e in np.unique(ids[ids >= 0]):
        m, j = np.nonzero(ids == e)
        bias = None if b_bias is None else b_bias[e]
        out[m * top_k + j] = _gemm(a[m], b_q_weight[e], b_scales[e], bias, size_k, size_n, scheme, group, False)
    if not mul_topk_weights:
        return out
    w = round_to_dtype(topk_weights.astype(np.float64), dtype).reshape(-1, 1)       # [M·top_k, 1]
    return round_to_dtype(out.astype(np.float64) * w, dtype).astype(dtype)


# --- error bound (§3.6) ----------------------------------------------------------------------------

FP32_UNIT_ROUNDOFF = 2.0 ** -24                       # u for round-to-nearest fp32
_DTYPE_ULP_PARAMS = {FP16: (10, -14, 65504.0),       # (explicit mantissa bits, min normal exponent, max)
                     BF16: (7, -126, float.fromhex("0x1.fep127"))}


def dtype_ulp(magnitude, dtype) -> np.ndarray:
    """ulp_dtype(v) = 2^(max(⌊log2 |v|⌋, e_min) - p) (p = 10 fp16 / 7 bf16): the spacing of dtype's values
    in the binade of |v|, so |RT(v) - v| <= ½·dtype_ulp(v). Non-decreasing in |v|; inf for |v| = inf.

    >>> dtype_ulp(np.array([1.0, 1.5, 0.0, 2.0 ** -30]), "fp16").tolist()
    [0.0009765625, 0.0009765625, 5.960464477539063e-08, 5.960464477539063e-08]
    """
    mant_bits, min_exp, _ = _DTYPE_ULP_PARAMS[as_activation_dtype(dtype, "dtype_ulp")]
    v = np.abs(np.asarray(magnitude, dtype=np.float64))
    _, e = np.frexp(v)                                  # v = f·2^e, f in [0.5, 1): ⌊log2 v⌋ = e - 1
    e = np.where(v == 0, min_exp + 1, e)                # frexp(0) gives e = 0; zero is in the lowest binade
    return np.where(np.isfinite(v), np.ldexp(1.0, np.maximum(e - 1, min_exp) - mant_bits), np.inf)


FP32_MAX = float(np.finfo(np.float32).max)


def _check_product(fn, a, w_eff, channel_scales) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(a, w_eff, S_n) as float64: a [M, K] and w_eff [K, N] float arrays sharing K, channel_scales None or
    the logical channel-wise scales [N] (or [1, N])."""
    x = check_float_array(fn, "a", a, 2).astype(np.float64)
    w = check_float_array(fn, "w_eff", w_eff, 2).astype(np.float64)
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"{fn}: a [M, K] and w_eff [K, N] must share K, got {x.shape} and {w.shape}")
    if channel_scales is None:
        return x, w, None
    s = check_float_array(fn, "channel_scales", channel_scales)
    if s.shape not in ((w.shape[1],), (1, w.shape[1])):
        raise ValueError(f"{fn}: channel_scales must be [N] (or [1, N]) with N={w.shape[1]}, got shape {s.shape}")
    return x, w, s.astype(np.float64).reshape(-1)


def fp32_accumulator_may_overflow(a, w_eff, *, channel_scales=None) -> np.ndarray:
    """[M, N] mask of outputs whose fp32 accumulation may overflow in some summation order (§3.3).

    Group-wise (B) and MXFP8 (C) weights enter the MMA at full size, and bf16's range is fp32's, so a
    product a·W_eff or a partial sum can pass fp32's max (3.4e38) even when the exact total is finite or
    +inf: the kernel then holds ±inf, and +inf + -inf gives NaN where the float64 reference says +inf
    (found by the gemm_within_bound law on an H100, MXFP8 bf16). Wherever Σ_k|a·W_eff| >= fp32's max the
    output is either that non-finite value or the finite result within the bound, depending on the order.
    Channel-wise (A, channel_scales given) accumulates a·u·2^-β, at most 448·2^-8·65504 or
    448·2^-120·3.4e38 per product, far from overflow; only the final ×F can overflow, which is the
    output's own overflow (same sign as the reference). So the mask is all False there.

    >>> fp32_accumulator_may_overflow(np.array([[2.0, -2.0]]), np.array([[2e38], [3e38]]))
    array([[ True]])
    """
    x, w, s_n = _check_product("fp32_accumulator_may_overflow", a, w_eff, channel_scales)
    if s_n is not None:
        return np.zeros((x.shape[0], w.shape[1]), dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        return ~(ieee_matmul(np.abs(x), np.abs(w)) < FP32_MAX)


def marlin_gemm_error_bound(a, w_eff, dtype, bias=None, *, channel_scales=None) -> np.ndarray:
    """Per-element bound on |out - ref|, ref = a @ w_eff (+ bias) exactly, out = the kernel's output (§3.6).

    Valid for SM80+ tensor cores with use_fp32_reduce=True and no atomics. Derivation:
    1. Every product a·B is exact in fp32 (two significands of <= 11 and <= 15 bits), except below
       2^-126 where it is rounded or truncated (§3.5) onto the 2^-149 grid: error <= 2^-149 each.
    2. Whatever the split-K / stream-K tree, each product reaches the total through at most K - 1 fp32
       additions plus, for channel-wise scales (A), one fp32 multiply by F: K roundings, each relative
       <= u = 2^-24 (fp32 additions of subnormals are exact). Higham's bound for any summation order:
       |acc - Σ p| <= γ_K·Σ|p|, γ_K = K·u / (1 - K·u)  (the spec's c·K·2^-24·Σ|x·W_eff| with c = 1).
       With step 1: E = γ_K·Σ_k|a·W_eff| + K·2^-149·max(1, |F_n|), F_n = S_n·2^β for path (A)
       (pass channel_scales = the logical S_n to include it; the 2^-149 grid is in accumulator units).
    3. No bias: out = RT(acc), |RT(acc) - acc| <= ½·ulp(|acc|) <= h1 = ½·ulp(|ref| + E) (ulp is
       non-decreasing), so |out - ref| <= h1 + E.
    4. Bias: out = RT(RT(acc) + b) (§3.2), t = RT(acc) + b is within h1 + E of ref_b = ref + b, so
       |out - ref_b| <= h1 + E + ½·ulp(|ref_b| + h1 + E). When acc and b cancel, ulp(acc) dominates, which
       a bound in ulp(ref_b) alone would miss (§3.6).
    Where the result may overflow (|ref| + error >= the dtype's max) or ref is not finite, the bound is
    +inf: compare such elements by class (inf / NaN) instead. fp16 accumulation (SM75), dtype-precision
    reductions and atomics are not covered (§3.6 adds (#slices)·ulp for those).
    """
    fn = "marlin_gemm_error_bound"
    dtype = as_activation_dtype(dtype, fn)
    x, w, s_n = _check_product(fn, a, w_eff, channel_scales)
    _check_bias(fn, "bias", bias, (w.shape[1],), FLOAT_DTYPES)
    size_k = w.shape[0]
    gamma = size_k * FP32_UNIT_ROUNDOFF / (1.0 - size_k * FP32_UNIT_ROUNDOFF)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = ieee_matmul(x, w)
        floor_units = np.ones(w.shape[1])
        if s_n is not None:
            f = np.abs(s_n) * 2.0 ** exponent_bias_of(dtype)                           # |F_n|
            floor_units = np.maximum(1.0, f)
        err = gamma * ieee_matmul(np.abs(x), np.abs(w)) + size_k * FP32_SUBNORMAL_GRID * floor_units
        h1 = 0.5 * dtype_ulp(np.abs(ref) + err, dtype)
        bound, reach = h1 + err, np.abs(ref) + err
        if bias is not None:
            ref_b = ref + bias.astype(np.float64)
            bound = bound + 0.5 * dtype_ulp(np.abs(ref_b) + h1 + err, dtype)
            reach = np.maximum(reach, np.abs(ref_b) + h1 + err)
            ref = ref_b
    max_finite = _DTYPE_ULP_PARAMS[dtype][2]
    return np.where(np.isfinite(ref) & np.isfinite(bound) & (reach < max_finite), bound, np.inf)
