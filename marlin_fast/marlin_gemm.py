"""The Marlin FP8 / MXFP8 W8A16 GEMM in plain torch: what the kernel computes, on CPU or CUDA tensors (spec §3).

    a          [M, K] fp16 / bf16 = the output dtype
    b_q_weight int32 [K/16, 4N]  --gptq_marlin_unrepack, unpack-->  e4m3 codes W [K, N],
               u = dec(W[k, n]) with the NaN codes 0x7F / 0xFF read as ±480 (§3.1)
    b_scales   (A) [1, N]   16-bit, single-permuted, fused F = S·2^β   B = u·2^-β,    acc·F     (§3.2 A)
               (B) [K/128, N] 16-bit, grouped-permuted, fused          B = RT(u·S_g) in dtype    (§3.2 B)
               (C) [K/32, N]  e8m0 (bf16 only), grouped + [0,2,1,3]     B = RT(u·μ_b), μ_b = 2^(b-127),
                   b = 0 -> 0, b = 255 -> +inf (the kernel's decode, not e8m0's)               (§3.2 C)
    b_bias     [N] dtype, single-permuted (§2.5), added after rounding
    out        [M, N] = RT(acc) or, with bias, RT(RT(acc) + b)         acc = Σ_k a[m, k]·B[k, n]

β = 8 (fp16) / 120 (bf16). The kernel accumulates in fp32 on tensor cores; here acc is float64, where
every product is exact and the sum's error (K·2^-53 of Σ|products|) sits far inside the fp32 term of
the §3.6 bound, and acc is rounded once to the dtype (RT, `round_to_dtype`: torch's own float64 cast
would round twice via float32). A one-hot row has one product per output, so it reads out RT(W_eff)
bit for bit, as the kernel does (§3.6; a zero reads out as +0, §3.4). BLAS sees finite values only (it
may skip zero activations, losing 0·inf = NaN); the IEEE specials (e8m0 byte 255, inf activations) are
counted per output beside it.

    >>> from marlin_fast.prepare_fp8_layer_for_marlin import prepare_fp8_layer_for_marlin
    >>> w = torch.zeros(128, 64, dtype=torch.uint8); w[3, 5] = 0x40            # [K, N]; W[3, 5] = 2.0
    >>> layer = prepare_fp8_layer_for_marlin(w, torch.tensor(0.75), orig_dtype="float16")
    >>> a = torch.zeros(1, 128, dtype=torch.float16); a[0, 3] = 1.0           # one-hot row at k = 3
    >>> marlin_gemm(a, layer.qweight, layer.scales, size_n=64, size_k=128)[0, 4:6].tolist()
    [0.0, 1.5]
"""

from __future__ import annotations

import torch

from .errors import check_bool, check_dtype, check_multiple, check_positive, check_rank, check_shape, check_tensor
from .formats import ACTIVATION_DTYPES, decode_e4m3, decode_e8m0, encode_e8m0, exponent_bias_of, round_to_dtype
from .gptq_marlin_repack import gptq_marlin_unrepack
from .marlin_permute_bias import marlin_unpermute_bias
from .marlin_permute_scales import marlin_unpermute_scales
from .mxfp8_marlin_process_scales import mxfp8_marlin_unprocess_scales
from .pack_fp8_to_int32 import unpack_fp8_from_int32

__all__ = ["marlin_gemm"]

FP8_NUM_BITS = 8
TILE_K, TILE_N = 16, 64           # the Marlin tile (§2.3.1): K and N come in whole tiles
WORDS_PER_TILE_ROW = 4            # Marlin int32 [K/16, 4N]: a 16x64 tile is 256 words (§2.3)
FP8_GROUP = 128                   # the only grouped FP8 kernel (group_blocks = 8, §4.2)
MX_GROUP = 32                     # OCP MX: one e8m0 scale per 32 elements (§2.10)
MX_MIN_GROUPS = 2                 # one group would take the single permutation in the prep (§2.4)
KERNEL_E4M3_NAN_VALUE = 480.0     # NaN codes dequantize to ±1.875·2^-β, i.e. ±480 once scaled (§3.1)
E8M0_DTYPES = (torch.float8_e8m0fnu, torch.uint8)


def _check_scales(fn, b_scales, a_dtype, size_k, size_n) -> str:
    """The scheme the kernel takes from b_scales (§4.1): "channel", "group128" or "mx"."""
    check_rank(fn, "b_scales", b_scales, 2)
    groups = b_scales.shape[0]
    if b_scales.shape[1] != size_n or groups < 1:
        raise ValueError(f"{fn}: b_scales must be [G, size_n={size_n}] with G >= 1, got {tuple(b_scales.shape)}")
    if b_scales.dtype in E8M0_DTYPES:
        if a_dtype != torch.bfloat16:
            raise ValueError(f"{fn}: MXFP8 (e8m0 scales) needs bfloat16 activations, got a.dtype={a_dtype} "
                             "(no fp16 MXFP8 kernel, spec §2.10)")
        if size_k % MX_GROUP != 0 or groups != size_k // MX_GROUP or groups < MX_MIN_GROUPS:
            raise ValueError(f"{fn}: e8m0 b_scales has G={groups} rows; MXFP8 needs G = size_k/{MX_GROUP} >= "
                             f"{MX_MIN_GROUPS} (size_k={size_k}; one group would take the single permutation, "
                             "spec §2.4)")
        return "mx"
    if b_scales.dtype != a_dtype:
        raise TypeError(f"{fn}: b_scales.dtype={b_scales.dtype} must equal a.dtype={a_dtype} (fused FP8 scales, "
                        "spec §2.6) or be torch.float8_e8m0fnu/uint8 (MXFP8)")
    if groups == 1:
        return "channel"
    if size_k != FP8_GROUP * groups:
        raise ValueError(f"{fn}: b_scales has G={groups} rows, so group_size = size_k/G = {size_k}/{groups}; "
                         f"FP8 Marlin supports only channel-wise (G=1) or group_size {FP8_GROUP} (spec §4.2)")
    return "group128"


def _check_inputs(fn, a, b_q_weight, b_scales, b_bias, size_n, size_k) -> str:
    size_k = check_multiple(fn, "size_k", check_positive(fn, "size_k", size_k), TILE_K)
    size_n = check_multiple(fn, "size_n", check_positive(fn, "size_n", size_n), TILE_N)
    check_rank(fn, "a", check_dtype(fn, "a", a, ACTIVATION_DTYPES), 2)
    check_shape(fn, "a", a, (a.shape[0], size_k), "[M, size_k]")
    check_dtype(fn, "b_q_weight", b_q_weight, (torch.int32,))
    check_shape(fn, "b_q_weight", b_q_weight, (size_k // TILE_K, WORDS_PER_TILE_ROW * size_n),
                "[size_k/16, 4·size_n]")
    scheme = _check_scales(fn, check_tensor(fn, "b_scales", b_scales), a.dtype, size_k, size_n)
    tensors = [("b_q_weight", b_q_weight), ("b_scales", b_scales)]
    if b_bias is not None:
        check_dtype(fn, "b_bias", b_bias, (a.dtype,))
        check_shape(fn, "b_bias", b_bias, (size_n,), "[size_n]")
        tensors.append(("b_bias", b_bias))
    for name, t in tensors:
        if t.device != a.device:
            raise ValueError(f"{fn}: {name}.device={t.device} must equal a.device={a.device}")
    return scheme


def _weight_values(b_q_weight, size_k, size_n) -> torch.Tensor:
    """u = dec(W) as float64 [K, N], NaN codes read as ±480 (§3.1)."""
    gptq = gptq_marlin_unrepack(b_q_weight, size_k, size_n, FP8_NUM_BITS)        # [K/4, N]
    codes = unpack_fp8_from_int32(gptq, size_k_first=True)                     # [K, N] e4m3fn
    return decode_e4m3(codes, nan_as=KERNEL_E4M3_NAN_VALUE)


def _logical_scales(scheme, b_scales, size_k, size_n) -> torch.Tensor:
    """Per-group multipliers in logical column order, float64 [G, N]: S = F·2^-β for 16-bit scales,
    μ_b with the kernel's b = 0 -> 0, b = 255 -> +inf for e8m0 (§3.1)."""
    groups = b_scales.shape[0]
    if scheme == "mx":
        floats = mxfp8_marlin_unprocess_scales(b_scales, dtype="float32")      # [G, N], still grouped-permuted
        codes = encode_e8m0(floats)                                            # bytes back: exact for all 256 (§1)
        codes = marlin_unpermute_scales(codes, size_k, size_n, MX_GROUP)       # [G, N] logical
        return decode_e8m0(codes, kernel_faithful=True)
    group_size = -1 if groups == 1 else FP8_GROUP
    fused = marlin_unpermute_scales(b_scales, size_k, size_n, group_size)      # [G, N] logical
    return fused.to(torch.float64) * 2.0 ** -exponent_bias_of(b_scales.dtype)   # exact: a power of two


def _count(x_mask: torch.Tensor, w_mask: torch.Tensor) -> torch.Tensor:
    """[M, N]: how many k have x_mask[m, k] and w_mask[k, n] (a matmul of 0/1 matrices, exact)."""
    return x_mask.to(torch.float64) @ w_mask.to(torch.float64)


def _ieee_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """+0.0 + Σ_k x[m, k]·w[k, n] in float64, starting from +0 like the kernel's accumulator.

    BLAS may skip zero activations, so it sees finite values only; the IEEE specials are counted per
    output instead: a NaN product (NaN, 0·inf) or +inf meeting -inf gives NaN, else an infinite
    product gives its infinity."""
    x_finite, w_finite = torch.isfinite(x), torch.isfinite(w)
    acc = torch.where(x_finite, x, 0.0) @ torch.where(w_finite, w, 0.0) + 0.0
    if bool(x_finite.all()) and bool(w_finite.all()):
        return acc
    x_inf, w_inf = torch.isinf(x), torch.isinf(w)
    x_pos, x_neg, w_pos, w_neg = x > 0, x < 0, w > 0, w < 0                      # infinities included
    nan_products = (_count(torch.isnan(x), torch.ones_like(w_pos)) + _count(torch.ones_like(x_pos), torch.isnan(w))
                    + _count(x == 0, w_inf) + _count(x_inf, w == 0))
    plus_inf = (_count(x_inf & x_pos, w_pos) + _count(x_inf & x_neg, w_neg)
                + _count(x_pos & ~x_inf, w_inf & w_pos) + _count(x_neg & ~x_inf, w_inf & w_neg))
    minus_inf = (_count(x_inf & x_pos, w_neg) + _count(x_inf & x_neg, w_pos)
                 + _count(x_pos & ~x_inf, w_inf & w_neg) + _count(x_neg & ~x_inf, w_inf & w_pos))
    acc = torch.where(plus_inf > 0, float("inf"), torch.where(minus_inf > 0, float("-inf"), acc))
    return torch.where((nan_products > 0) | ((plus_inf > 0) & (minus_inf > 0)), float("nan"), acc)


def marlin_gemm(a: torch.Tensor, b_q_weight: torch.Tensor, b_scales: torch.Tensor,
                b_bias: torch.Tensor | None = None, *, size_n: int, size_k: int) -> torch.Tensor:
    """y = a·W (+ b_bias) with W the Marlin FP8 / MXFP8 weight; [M, size_n] in a's dtype (§3.2).

    a: fp16/bf16 [M, size_k]; b_q_weight: Marlin int32 [size_k/16, 4·size_n]; b_scales: fused
    channel-wise [1, N] or group-128 [K/128, N] scales in a's dtype, or e8m0 [K/32, N] (float8_e8m0fnu
    or uint8; bf16 only, G >= 2); b_bias: [N] in a's dtype, single-permuted. size_k % 16 == 0,
    size_n % 64 == 0. Inputs are never mutated; the output is on a's device.
    """
    fn = "marlin_gemm"
    scheme = _check_inputs(fn, a, b_q_weight, b_scales, b_bias, size_n, size_k)
    dtype = a.dtype
    u = _weight_values(b_q_weight, size_k, size_n)                             # [K, N] float64
    s = _logical_scales(scheme, b_scales, size_k, size_n)                      # [G, N] float64
    x = a.to(torch.float64)                                                     # [M, K], exact
    if scheme == "channel":
        acc = _ieee_matmul(x, u) * s                                            # Σ x·u, then × S (the kernel's acc·F)
    else:
        s_k = s.repeat_interleave(size_k // s.shape[0], dim=0)                 # [K, N], group g covers K/G rows of k
        acc = _ieee_matmul(x, round_to_dtype(u * s_k, dtype))                  # B rounded to dtype first
    out = round_to_dtype(acc, dtype)                                            # RT(acc)
    if b_bias is not None:
        out = round_to_dtype(out + marlin_unpermute_bias(b_bias).to(torch.float64), dtype)   # RT(RT(acc) + b)
    return out.to(dtype)                                                        # exact: out is on dtype's grid


def marlin_moe_gemm(a: torch.Tensor, b_q_weight: torch.Tensor, b_scales: torch.Tensor,
                    b_bias: torch.Tensor | None = None, *, topk_ids: torch.Tensor,
                    topk_weights: torch.Tensor | None = None, size_n: int, size_k: int,
                    mul_topk_weights: bool = False) -> torch.Tensor:
    """The MoE GEMM over stacked experts (§5): out[m·top_k + j] = a[m] · W[topk_ids[m, j]] (+ its bias), [M·top_k, N].

    b_q_weight int32 [E, size_k/16, 4·size_n], b_scales [E, G, N], b_bias [E, N] or None (each expert's data is
    exactly the dense format); topk_ids integer [M, top_k] in [0, E), or -1 for a slot routed to no expert (an expert
    of another rank): its row is +0. With mul_topk_weights each row is RT(RT(RT(acc) + b) · RT(w)) (§5).
    """
    fn = "marlin_moe_gemm"
    for name, t in (("a", a), ("b_q_weight", b_q_weight), ("b_scales", b_scales), ("topk_ids", topk_ids)):
        check_tensor(fn, name, t)
    check_dtype(fn, "b_q_weight", b_q_weight, [torch.int32])
    experts = check_rank(fn, "b_q_weight", b_q_weight, 3).shape[0]
    if b_scales.dim() != 3 or b_scales.shape[0] != experts:
        raise ValueError(f"{fn}: b_scales must be [E={experts}, G, size_n], got {tuple(b_scales.shape)}")
    if b_bias is not None:
        check_shape(fn, "b_bias", check_tensor(fn, "b_bias", b_bias), (experts, size_n), "[E, size_n]")
    _check_inputs(fn, a, b_q_weight[0], b_scales[0], None if b_bias is None else b_bias[0], size_n, size_k)  # expert 0
    if topk_ids.dtype not in (torch.int32, torch.int64, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{fn}: topk_ids must have an integer dtype, got {topk_ids.dtype}")
    if topk_ids.dim() != 2 or a.dim() != 2 or topk_ids.shape[0] != a.shape[0] or topk_ids.numel() == 0:
        raise ValueError(f"{fn}: topk_ids must be [M={a.shape[0] if a.dim() else '?'}, top_k] with top_k >= 1, "
                         f"got shape {tuple(topk_ids.shape)}")
    ids = topk_ids.to(torch.int64)
    if int(ids.min()) < -1 or int(ids.max()) >= experts:
        raise ValueError(f"{fn}: topk_ids must lie in [0, {experts}) or be -1 (no expert), "
                         f"got [{int(ids.min())}, {int(ids.max())}]")
    if check_bool(fn, "mul_topk_weights", mul_topk_weights):
        check_tensor(fn, "topk_weights", topk_weights)
        check_shape(fn, "topk_weights", topk_weights, tuple(ids.shape), "[M, top_k], like topk_ids")
    top_k = ids.shape[1]
    out = torch.zeros((a.shape[0] * top_k, size_n), dtype=a.dtype, device=a.device)     # [M·top_k, N]
    for e in torch.unique(ids[ids >= 0]).tolist():
        m, j = torch.nonzero(ids == e, as_tuple=True)
        bias = None if b_bias is None else b_bias[e]
        out[m * top_k + j] = marlin_gemm(a[m], b_q_weight[e], b_scales[e], bias, size_n=size_n, size_k=size_k)
    if not mul_topk_weights:
        return out
    w = round_to_dtype(topk_weights.reshape(-1, 1).to(torch.float64), a.dtype)          # [M·top_k, 1], RT(w)
    return round_to_dtype(out.to(torch.float64) * w, a.dtype).to(a.dtype)
