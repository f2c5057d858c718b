"""The GEMM reference (spec §3): per-scheme W_eff, one-hot read-out, bias double rounding, the §3.6 bound
against a float32 emulation of the kernel, and the stacked MoE reference (§5)."""

import ml_dtypes
import numpy as np
import pytest

from marlin_ref.formats import decode_e4m3, round_to_dtype
from marlin_ref.marlin_gemm import (dequantize_marlin_weight, dtype_ulp, gemm_math_reference,
                                    marlin_gemm_error_bound, marlin_gemm_reference, marlin_moe_gemm_reference,
                                    one_hot_activations, one_hot_expected)
from marlin_ref.prepare_fp8_layer_for_marlin import prepare_fp8_layer_for_marlin
from marlin_ref.prepare_fp8_moe_layer_for_marlin import prepare_fp8_moe_layer_for_marlin
from marlin_ref.prepare_mxfp8_layer_for_marlin import prepare_mxfp8_layer_for_marlin

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = {"fp16": np.dtype(np.float16), "bf16": BF16}
BETA = {"fp16": 8, "bf16": 120}                                     # §2.6


def dec(codes):
    """§3.1: the kernel reads NaN codes as ±480."""
    return decode_e4m3(np.asarray(codes, np.uint8), nan_as=480.0)


def rt(x, d):
    return round_to_dtype(x, d)


def case(scheme, d, seed, k=256, n=64):
    """(weight [K, N] codes, layer, W_eff [K, N] hand-derived from §3.6, logical S per k [K, N])."""
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 256, (k, n), dtype=np.uint8)
    if scheme == "A":
        s = rt(rng.uniform(2**-8, 1, n).astype(np.float32), d)                        # S = RT(s) per column
        layer = prepare_fp8_layer_for_marlin(w, s.astype(np.float32), orig_dtype=d)
        s_kn = np.broadcast_to(s, (k, n))
        return w, layer, dec(w) * s_kn, s_kn
    if scheme == "B":
        s = rt(rng.uniform(2**-8, 1, (k // 128, n)).astype(np.float32), d)            # block [1, 128]
        layer = prepare_fp8_layer_for_marlin(w, s.astype(np.float32), orig_dtype=d, weight_block_size=[1, 128])
        s_kn = np.repeat(s, 128, axis=0)
        return w, layer, rt(dec(w) * s_kn, d), s_kn
    b = rng.integers(110, 140, (n, k // 32), dtype=np.uint8)                          # MXFP8, bf16 only
    layer = prepare_mxfp8_layer_for_marlin(np.ascontiguousarray(w.T), b)
    s_kn = np.repeat(np.ldexp(1.0, b.T.astype(int) - 127), 32, axis=0)
    return w, layer, rt(dec(w) * s_kn, "bf16"), s_kn


SCHEMES = [("A", "fp16"), ("A", "bf16"), ("B", "fp16"), ("B", "bf16"), ("C", "bf16")]


# --- W_eff and the one-hot read-out (§3.6 bit-exact layout test) -----------------------------------------

@pytest.mark.parametrize("scheme, d", SCHEMES)
def test_dequantize_matches_the_scheme_rule(scheme, d):
    w, layer, w_eff, _ = case(scheme, d, seed=1)
    got = dequantize_marlin_weight(layer.qweight, layer.scales, 256, 64, dtype=d)
    assert np.array_equal(got, w_eff)


@pytest.mark.parametrize("scheme, d", SCHEMES)
def test_one_hot_reads_back_rt_of_w_eff(scheme, d):
    _, layer, w_eff, _ = case(scheme, d, seed=2)
    out = marlin_gemm_reference(one_hot_activations(np.arange(256), 256, d), layer.qweight, layer.scales, None,
                                size_n=64, size_k=256)
    want = rt(w_eff, d)
    assert out.dtype == DTYPES[d] and np.array_equal(out.astype(np.float64), want)
    assert not np.signbit(out.astype(np.float64)[want == 0]).any()          # −0 codes read out as +0
    assert np.array_equal(one_hot_expected(w_eff, d).view(np.uint16), out.view(np.uint16))


def test_nan_codes_read_out_as_480_times_the_scale():
    w = np.zeros((128, 64), np.uint8)
    w[0, 0], w[1, 0] = 0x7F, 0xFF
    layer = prepare_fp8_layer_for_marlin(w, np.array(0.5, np.float32), orig_dtype="fp16")
    out = marlin_gemm_reference(one_hot_activations([0, 1], 128, "fp16"), layer.qweight, layer.scales, None,
                                size_n=64, size_k=128)
    assert out[0, 0] == 240 and out[1, 0] == -240


def test_e8m0_byte_0_is_zero_and_255_is_infinite():
    w = np.full((64, 128), 0x38, np.uint8)                   # [N, K], every weight 1.0
    w[1, :] = 0x00                                           # column 1 holds zeros
    w[3, :] = 0x80                                           # column 3 holds -0
    b = np.full((64, 4), 127, np.uint8)
    b[0, 0], b[1, 1], b[2, 2] = 0, 255, 255                  # col 0 group 0 -> 0; cols 1, 2 -> inf multiplier
    layer = prepare_mxfp8_layer_for_marlin(w, b)
    w_eff = dequantize_marlin_weight(layer.qweight, layer.scales, 128, 64, dtype="bf16")
    assert (w_eff[:32, 0] == 0).all() and (w_eff[32:, 0] == 1).all()
    assert np.isnan(w_eff[32:64, 1]).all()                   # 0 · inf
    assert np.isposinf(w_eff[64:96, 2]).all()
    out = marlin_gemm_reference(one_hot_activations([0, 40], 128, "bf16"), layer.qweight, layer.scales, None,
                                size_n=64, size_k=128).astype(np.float64)
    assert out[0, 0] == 0 and out[1, 0] == 1
    assert np.isnan(out[:, 2]).all()                         # 0 · inf from the other rows poisons column 2
    assert (out[:, 3] == 0).all() and not np.signbit(out[:, 3]).any()   # the accumulator starts at +0
    assert np.array_equal(out, one_hot_expected(w_eff, "bf16", hot=[0, 40]).astype(np.float64), equal_nan=True)


# --- the three schemes differ, and the reference follows each ----------------------------------------------

@pytest.mark.parametrize("d", ["fp16", "bf16"])
def test_channelwise_is_unrounded_and_grouped_is_rounded(d):
    # the same logical S in both layers: as channel-wise (A) and as two 128-groups (B)
    rng = np.random.default_rng(5)
    w = rng.integers(0, 0x7E, (256, 64), dtype=np.uint8)
    s = rt(rng.uniform(0.1, 1, 64).astype(np.float32), d)
    x = rt(rng.standard_normal((16, 256)), d).astype(DTYPES[d])
    la = prepare_fp8_layer_for_marlin(w, s.astype(np.float32), orig_dtype=d)
    lb = prepare_fp8_layer_for_marlin(w, np.tile(s, (2, 1)).astype(np.float32), orig_dtype=d,
                                      weight_block_size=[1, 128])
    xa = x.astype(np.float64)
    want_a, want_b = rt(xa @ (dec(w) * s), d), rt(xa @ rt(dec(w) * s, d), d)
    got_a = marlin_gemm_reference(x, la.qweight, la.scales, None, size_n=64, size_k=256).astype(np.float64)
    got_b = marlin_gemm_reference(x, lb.qweight, lb.scales, None, size_n=64, size_k=256).astype(np.float64)
    assert np.array_equal(got_a, want_a) and np.array_equal(got_b, want_b)
    assert not np.array_equal(want_a, want_b)                # the test can tell the schemes apart


def test_bias_is_added_after_rounding_the_accumulator():
    # acc = 1 + 2^-11 (a tie: RT = 1.0); RT(1.0 + 2^-11) = 1.0 again; one rounding would give 1 + 2^-10
    w = np.zeros((128, 64), np.uint8)
    w[0, :], w[1, :] = 0x38, 0x38
    layer = prepare_fp8_layer_for_marlin(w, np.array(1.0, np.float32), orig_dtype="fp16",
                                         bias=np.full(64, 2.0**-11, np.float16))
    x = np.zeros((1, 128), np.float16)
    x[0, 0], x[0, 1] = 1.0, 2.0**-11
    out = marlin_gemm_reference(x, layer.qweight, layer.scales, layer.bias, size_n=64, size_k=128)
    assert (out == 1.0).all()
    no_bias = marlin_gemm_reference(x, layer.qweight, layer.scales, None, size_n=64, size_k=128)
    assert (no_bias == 1.0).all()


def test_bias_is_unpermuted_before_the_add():
    bias = np.arange(64).astype(np.float16)
    layer = prepare_fp8_layer_for_marlin(np.zeros((128, 64), np.uint8), np.array(1.0, np.float32),
                                         orig_dtype="fp16", bias=bias)
    out = marlin_gemm_reference(np.ones((2, 128), np.float16), layer.qweight, layer.scales, layer.bias,
                                size_n=64, size_k=128)
    assert np.array_equal(out, np.tile(bias, (2, 1)))


def test_fp32_subnormal_truncation_option():
    # §3.5: bf16 channel-wise keeps x·u only on the 2^-29 grid when |x·u| < 2^-6
    w = np.zeros((128, 64), np.uint8)
    w[0, :] = 0x38
    layer = prepare_fp8_layer_for_marlin(w, np.array(1.0, np.float32), orig_dtype="bf16")
    x = np.zeros((3, 128), BF16)
    x[:, 0] = [2.0**-40, 1.5 * 2.0**-29, 2.0**-7]
    on = marlin_gemm_reference(x, layer.qweight, layer.scales, None, size_n=64, size_k=128,
                               truncate_fp32_subnormal_products=True).astype(np.float64)
    off = marlin_gemm_reference(x, layer.qweight, layer.scales, None, size_n=64, size_k=128).astype(np.float64)
    assert on[:, 0].tolist() == [0.0, 2.0**-29, 2.0**-7]
    assert off[:, 0].tolist() == [2.0**-40, 1.5 * 2.0**-29, 2.0**-7]


# --- the error bound (§3.6) -----------------------------------------------------------------------------------

def emulate_kernel(x, w, s_kn, scheme, d, bias, rng, slices=3):
    """float32 emulation of §3.2/§3.3: exact products, sequential fp32 sums in a random k order split over
    `slices` threadblocks; for (A) each partial is multiplied by the fp32 fused scale before the reduction."""
    x = x.astype(np.float64)
    if scheme == "A":
        b_op = dec(w) * 2.0 ** -BETA[d]                              # u·2^-β, exact in dtype
        fused = (s_kn[0] * 2.0 ** BETA[d]).astype(np.float32)
    else:
        b_op = rt(dec(w) * s_kn, d)
    products = (x[:, :, None] * b_op[None]).astype(np.float32)       # [M, K, N]; fp32 subnormals round
    partials = []
    for chunk in np.array_split(rng.permutation(w.shape[0]), slices):
        part = np.cumsum(products[:, chunk, :], axis=1, dtype=np.float32)[:, -1, :]
        partials.append(part * fused if scheme == "A" else part)
    acc = partials[0]
    for part in partials[1:]:
        acc = (acc + part).astype(np.float32)
    out = rt(acc.astype(np.float64), d)
    return out if bias is None else rt(out + bias, d)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("scheme, d", SCHEMES)
def test_bound_covers_the_fp32_emulation_and_catches_a_swapped_column(scheme, d, with_bias, seed):
    rng = np.random.default_rng(100 + seed)
    w, _, w_eff, s_kn = case(scheme, d, seed=seed)
    x = rt(rng.standard_normal((8, 256)), d)
    bias = rt(rng.standard_normal(64), d) if with_bias else None
    ref = x @ w_eff + (0 if bias is None else bias)
    bound = marlin_gemm_error_bound(x.astype(DTYPES[d]), w_eff, d, bias,
                                    channel_scales=s_kn[0] if scheme == "A" else None)
    out = emulate_kernel(x, w, s_kn, scheme, d, bias, rng)
    assert (np.abs(out - ref) <= bound).all()
    swapped = out[:, [1, 0] + list(range(2, 64))]
    assert (np.abs(swapped - ref) > bound).any()


def test_bound_covers_fp32_subnormal_products_given_channel_scales():
    # bf16 (A): x·u·2^-120 is deep in fp32's subnormals for |x| ~ 2^-24; the kernel truncates each product onto
    # the 2^-149 grid (§3.5). The K·2^-149·F term (F = S·2^120) covers it; without channel_scales it is missing.
    rng = np.random.default_rng(21)
    w = rng.integers(0x30, 0x60, (256, 64), dtype=np.uint8)
    s = rt(rng.uniform(0.25, 1, 64), "bf16")
    x = rt(rng.uniform(1, 2, (4, 256)) * 2.0**-24, "bf16")
    p = (x[:, :, None] * dec(w)[None]) * 2.0**-120                        # exact in float64
    p = np.trunc(p / 2.0**-149) * 2.0**-149                              # every product is subnormal here
    acc = np.cumsum(p.astype(np.float32), axis=1, dtype=np.float32)[:, -1, :] * (s * 2.0**120).astype(np.float32)
    out, ref = rt(acc.astype(np.float64), "bf16"), x @ (dec(w) * s)
    with_scales = marlin_gemm_error_bound(x.astype(BF16), dec(w) * s, "bf16", channel_scales=s)
    without = marlin_gemm_error_bound(x.astype(BF16), dec(w) * s, "bf16")
    assert (np.abs(out - ref) <= with_scales).all() and (np.abs(out - ref) > without).any()


def test_bound_covers_cancellation_with_bias():
    # acc = 1 + 2^-11 -> RT = 1; + b = -1 -> 0, while ref = 2^-11: the error 2^-11 is ½ulp(acc), far above ½ulp(ref)
    x, w_eff = np.array([[1.0, 2.0**-11]], np.float16), np.ones((2, 1))
    bound = marlin_gemm_error_bound(x, w_eff, "fp16", np.array([-1.0]))
    assert bound[0, 0] >= 2.0**-11 and 0.5 * dtype_ulp(2.0**-11, "fp16") < 2.0**-11


def test_bound_is_inf_where_the_output_may_overflow():
    bound = marlin_gemm_error_bound(np.array([[256.0, 1.0]], np.float16), np.array([[256.0], [1.0]]), "fp16")
    assert np.isposinf(bound).all()


@pytest.mark.parametrize("v, d, want", [(1.0, "fp16", 2.0**-10), (65504.0, "fp16", 32.0), (2.0**-20, "fp16", 2.0**-24),
                                        (0.0, "fp16", 2.0**-24), (1.0, "bf16", 2.0**-7), (0.0, "bf16", 2.0**-133),
                                        (-3.0, "bf16", 2.0**-6)])
def test_dtype_ulp(v, d, want):
    assert dtype_ulp(v, d) == want


# --- plain maths reference -------------------------------------------------------------------------------------

def test_gemm_math_reference_by_hand():
    w = np.array([[0x38, 0x7F], [0x40, 0x38], [0x38, 0x38], [0x38, 0x38]], np.uint8)    # 1, NaN / 2, 1 / ...
    s = np.array([[0.5, 1.0], [0.25, 1.0]])                                          # G = 2 groups of 2 rows
    out = gemm_math_reference(np.array([[1.0, 2.0, 4.0, 8.0]]), w, s, bias=np.array([1.0, 0.0]))
    assert out[0, 0] == 1 * 0.5 + 2 * 2 * 0.5 + 4 * 0.25 + 8 * 0.25 + 1 and np.isnan(out[0, 1])


# --- MoE (§5) ------------------------------------------------------------------------------------------------

def test_moe_stacked_equals_per_expert_dense_with_topk_and_router_weights():
    rng = np.random.default_rng(9)
    e, n, k, m, top_k = 3, 64, 128, 6, 2
    w13, w2 = rng.integers(0, 0x7E, (e, 2 * n, k), dtype=np.uint8), rng.integers(0, 0x7E, (e, k, n), dtype=np.uint8)
    b13 = rt(rng.standard_normal((e, 2 * n)), "fp16").astype(np.float16)
    moe = prepare_fp8_moe_layer_for_marlin(w13, w2, rng.uniform(0.01, 0.1, (e, 2)).astype(np.float32),
                                           np.full(e, 0.05, np.float32), orig_dtype="fp16", w13_bias=b13)
    a = rt(rng.standard_normal((m, k)), "fp16").astype(np.float16)
    ids = rng.integers(0, e, (m, top_k))
    topk_w = rng.uniform(0, 1, (m, top_k)).astype(np.float32)
    out = marlin_moe_gemm_reference(a, moe.w13_qweight, moe.w13_scales, moe.w13_bias, topk_ids=ids,
                                    size_n=2 * n, size_k=k)
    weighted = marlin_moe_gemm_reference(a, moe.w13_qweight, moe.w13_scales, moe.w13_bias, topk_ids=ids,
                                         size_n=2 * n, size_k=k, topk_weights=topk_w, mul_topk_weights=True)
    for i in range(m):
        for j in range(top_k):
            x = ids[i, j]
            dense = marlin_gemm_reference(a[i:i + 1], moe.w13_qweight[x], moe.w13_scales[x], moe.w13_bias[x],
                                          size_n=2 * n, size_k=k)[0]
            assert np.array_equal(out[i * top_k + j], dense)
            want = rt(dense.astype(np.float64) * rt(np.float64(topk_w[i, j]), "fp16"), "fp16")
            assert np.array_equal(weighted[i * top_k + j].astype(np.float64), want)


# --- errors ----------------------------------------------------------------------------------------------------

def test_errors_name_the_rule():
    _, la, _, _ = case("A", "fp16", seed=3)
    _, lc, _, _ = case("C", "bf16", seed=3)
    x16 = np.zeros((1, 256), np.float16)
    with pytest.raises(TypeError, match="marlin_gemm_reference: a must have dtype"):
        marlin_gemm_reference(x16.astype(np.float32), la.qweight, la.scales, None, size_n=64, size_k=256)
    with pytest.raises(ValueError, match="e8m0 scales .* need dtype bfloat16"):
        marlin_gemm_reference(x16, lc.qweight, lc.scales, None, size_n=64, size_k=256)
    with pytest.raises(TypeError, match="b_scales must have dtype"):
        marlin_gemm_reference(x16.astype(BF16), la.qweight, la.scales, None, size_n=64, size_k=256)
    with pytest.raises(ValueError, match=r"a must be \[M, size_k=256\]"):
        marlin_gemm_reference(np.zeros((1, 128), np.float16), la.qweight, la.scales, None, size_n=64, size_k=256)
    with pytest.raises(ValueError, match=r"topk_ids must lie in \[0, 1\)"):
        marlin_moe_gemm_reference(x16, la.qweight[None], la.scales[None], None, topk_ids=np.array([[1]]),
                                  size_n=64, size_k=256)


def test_fp32_accumulator_overflow_is_order_dependent_only_outside_the_channel_path():
    # The H100 finding: products past fp32's max of opposite signs meet +inf terms; the kernel holds NaN,
    # the float64 reference +inf. Group/MX weights can do that, channel-wise accumulators cannot.
    from marlin_ref.marlin_gemm import fp32_accumulator_may_overflow
    a = np.array([[-2.0, -2.125, 0.5], [1.0, 1.0, 1.0]])
    w = np.array([[3.0e38], [-np.inf], [1.0]])              # row 0: -6e38 (past fp32) + inf
    mask = fp32_accumulator_may_overflow(a, w)
    assert mask[:, 0].tolist() == [True, True]
    small = np.array([[1.0], [2.0], [3.0]])
    assert not fp32_accumulator_may_overflow(a, small).any()
    assert not fp32_accumulator_may_overflow(a, w, channel_scales=np.array([1.0])).any()


def test_gemm_bound_accepts_nan_only_where_the_fp32_accumulator_may_overflow():
    from properties.laws import assert_within_gemm_bound
    a = np.array([[-2.0, -2.125]]).astype(ml_dtypes.bfloat16)
    w = np.array([[3.0e38, 1.0], [-np.inf, 1.0]])
    out = np.array([[np.nan, -4.125]])                     # column 0: +inf exactly, NaN in fp32
    assert_within_gemm_bound(out, a, w, "bfloat16", where="order-dependent overflow")
    with pytest.raises(AssertionError, match="outside the §3.6 bound"):
        assert_within_gemm_bound(np.array([[np.inf, np.nan]]), a, w, "bfloat16", where="NaN in a finite column")
