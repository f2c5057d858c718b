"""GPU tier, exact GEMM: one-hot activations read back RT(W_eff) bit for bit (spec §3.6) for every scheme,
dtype, row count (M <= 8 and > 8), thread-block configuration and split-K count; plus the §3.4/§3.7 edge
behaviour (e8m0 bytes 0/255, NaN codes, infinite fused scales, bf16 channel-wise underflow)."""

import zlib

import numpy as np
import pytest

from gpu_cases import (CUDA_MARKS, NUM_CONFIGS, SCHEMES, activations, assert_same_values, host, make_layer,
                       run_gemm)
from marlin_ref.marlin_gemm import one_hot_activations, one_hot_expected
from properties.laws import assert_within_gemm_bound

pytestmark = CUDA_MARKS

SIZE_K, SIZE_N = 512, 192      # N = 3 tiles: blocks of 2 and 4 tiles overhang N


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _one_hot_case(scheme, dtype, rows, *, bias=False, seed=0):
    rng = _rng(scheme, dtype, rows, bias, seed)
    layer = make_layer(scheme, dtype, SIZE_K, SIZE_N, rng, bias=bias)
    hot = np.arange(SIZE_K) if rows == SIZE_K else rng.choice(SIZE_K, rows, replace=rows > SIZE_K)
    return layer, hot, one_hot_activations(hot, SIZE_K, dtype)


@pytest.mark.parametrize("rows", [1, 3, 8, 16, 37, 64, 130, SIZE_K])
@pytest.mark.parametrize("scheme, dtype", SCHEMES)
def test_one_hot_reads_back_rt_of_w_eff(scheme, dtype, rows):
    # out[m, n] = RT(W_eff[hot[m], n]) exactly; every e4m3 code (NaN, subnormal, -0) appears in W.
    layer, hot, a = _one_hot_case(scheme, dtype, rows)
    want = one_hot_expected(layer.w_eff, dtype, hot=hot)
    assert_same_values(host(run_gemm(layer, a)), want, where=f"{scheme}/{dtype} one-hot M={rows}")


@pytest.mark.parametrize("splits", [None, 1, 3])
@pytest.mark.parametrize("config", range(NUM_CONFIGS))
@pytest.mark.parametrize("scheme, dtype", SCHEMES)
def test_one_hot_exact_in_every_config(scheme, dtype, config, splits):
    # The layout does not depend on the tiling: every config and split-K count reads the same bytes.
    layer, hot, a = _one_hot_case(scheme, dtype, 45, bias=True)
    want = one_hot_expected(layer.w_eff, dtype, hot=hot, bias=layer.bias)
    got = host(run_gemm(layer, a, config=config, splits=splits))
    assert_same_values(got, want, where=f"{scheme}/{dtype} config={config} splits={splits}")


@pytest.mark.parametrize("scheme, dtype", SCHEMES)
def test_sanitize_gemm_small(scheme, dtype):
    # Small one-hot GEMMs through every config with split-K, for compute-sanitizer (bench/sanitize.sh).
    for config in range(NUM_CONFIGS):
        layer, hot, a = _one_hot_case(scheme, dtype, 5, bias=True, seed=config)
        want = one_hot_expected(layer.w_eff, dtype, hot=hot, bias=layer.bias)
        assert_same_values(host(run_gemm(layer, a, config=config, splits=2)), want, where=f"config {config}")


def test_channel_wise_k_tail_is_exact():
    # Channel-wise needs only K % 16 == 0: K = 272 leaves a partial pipeline stage in every config.
    rng = np.random.default_rng(21)
    layer = make_layer("channel", "bfloat16", 272, 128, rng)
    hot = np.arange(272)
    for config in range(NUM_CONFIGS):
        got = host(run_gemm(layer, one_hot_activations(hot, 272, "bfloat16"), config=config))
        assert_same_values(got, one_hot_expected(layer.w_eff, "bfloat16", hot=hot), where=f"K tail, config {config}")


# --- special values (§3.4, §3.7) -------------------------------------------------------------------------

def test_e8m0_byte_0_reads_as_zero_and_255_as_infinity():
    # MXFP8: byte 0 -> multiplier +0 (not 2^-127), byte 255 -> +inf (not NaN), as the peer kernel (§3.1).
    rng = np.random.default_rng(31)
    size_k, size_n = 128, 64
    bytes_ = rng.choice(np.array([0, 1, 127, 200, 254], np.uint8), (size_k // 32, size_n))
    bytes_[:, 7] = 255                                   # one column with an infinite multiplier
    layer = make_layer("mx", "bfloat16", size_k, size_n, rng, scales_logical=bytes_)
    hot = np.arange(size_k)
    got = host(run_gemm(layer, one_hot_activations(hot, size_k, "bfloat16")))
    assert_same_values(got, one_hot_expected(layer.w_eff, "bfloat16", hot=hot), where="e8m0 specials")
    assert np.isnan(got[:, 7].astype(np.float64)).all()  # 0 * inf poisons the column (x is one-hot)


@pytest.mark.parametrize("scheme, dtype", [s for s in SCHEMES if s[0] != "mx"])
def test_fused_scales_of_256_make_every_output_non_finite(scheme, dtype):
    # S >= 256 -> fused S * 2^beta overflows to inf (§2.6, §3.5) -> no finite output (§3.7).
    rng = np.random.default_rng(41)
    layer = make_layer(scheme, dtype, 256, 128, rng, scale_range=(256.0, 256.0))
    got = host(run_gemm(layer, activations(rng, 8, 256, dtype))).astype(np.float64)
    assert not np.isfinite(got).any()


def test_bf16_channel_wise_underflows_for_tiny_activations_as_vllm():
    # Matched on purpose (§3.5, §3.7): bf16 channel-wise products x*u*2^-120 below the fp32 subnormal grid
    # are lost inside the MMA, so |x| ~ 2^-64 gives exact zeros; the group-128 path keeps them.
    rng = np.random.default_rng(51)
    a = activations(rng, 4, 256, "bfloat16", scale=2.0 ** -64)
    channel = make_layer("channel", "bfloat16", 256, 128, rng)
    assert (host(run_gemm(channel, a)).astype(np.float64) == 0).all()
    group = make_layer("group128", "bfloat16", 256, 128, rng)
    got = host(run_gemm(group, a))
    assert np.count_nonzero(got.astype(np.float64)) > 0
    assert_within_gemm_bound(got, a, group.w_eff, "bfloat16", where="group-128 with tiny activations")
