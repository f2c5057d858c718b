"""Dense MXFP8 prep (spec §2.10): e8m0 bytes placed by the §2.7 closed form, weights as FP8, fp16 hazard."""

import ml_dtypes
import numpy as np
import pytest

from marlin_ref.prepare_fp8_layer_for_marlin import prepare_fp8_layer_for_marlin
from marlin_ref.prepare_mxfp8_layer_for_marlin import prepare_mxfp8_layer_for_marlin

E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)


def mx_position(c):
    """§2.7: column c of a 64-chunk ends at 8(c mod 8) + 4⌊c/32⌋ + 2(⌊c/8⌋ mod 2) + (⌊c/16⌋ mod 2)."""
    c = np.asarray(c)
    r = c % 64
    return 64 * (c // 64) + 8 * (r % 8) + 4 * (r // 32) + 2 * ((r // 8) % 2) + (r // 16) % 2


def expected_bytes(logical_gn):
    """[G, N] logical bytes -> [G, N] kernel order, by scattering through mx_position."""
    out = np.zeros_like(logical_gn)
    out[:, mx_position(np.arange(logical_gn.shape[1]))] = logical_gn
    return out


def test_spec_example_row():
    src = np.argsort(mx_position(np.arange(64)))
    assert list(src[:12]) == [0, 16, 8, 24, 32, 48, 40, 56, 1, 17, 9, 25]


@pytest.mark.parametrize("n", [64, 128])
def test_scale_bytes_follow_the_closed_form(n):
    k = 128
    b = (1 + np.arange(n)[:, None] % 64 + 60 * np.arange(k // 32)[None, :]).astype(np.uint8)   # [N, K/32]
    layer = prepare_mxfp8_layer_for_marlin(np.zeros((n, k), np.uint8), b)
    assert layer.scales.dtype == E8M0 and layer.scales.shape == (k // 32, n) and layer.group_size == 32
    assert np.array_equal(layer.scales.view(np.uint8), expected_bytes(b.T))


def test_weights_are_packed_exactly_as_fp8():
    w = np.random.default_rng(3).integers(0, 256, (128, 256), dtype=np.uint8)     # [N, K]
    mx = prepare_mxfp8_layer_for_marlin(w, np.full((128, 8), 127, np.uint8))
    fp8 = prepare_fp8_layer_for_marlin(w, np.array(1.0, np.float32), orig_dtype="bf16", size_k_first=False)
    assert np.array_equal(mx.qweight.view(np.uint8), fp8.qweight.view(np.uint8))


def test_oversized_scale_is_sliced():
    b = np.random.default_rng(4).integers(0, 255, (64, 4), dtype=np.uint8)
    big = np.full((67, 6), 200, np.uint8)
    big[:64, :4] = b
    a = prepare_mxfp8_layer_for_marlin(np.zeros((64, 128), np.uint8), b)
    c = prepare_mxfp8_layer_for_marlin(np.zeros((64, 128), np.uint8), big)
    assert np.array_equal(a.scales.view(np.uint8), c.scales.view(np.uint8))


@pytest.mark.parametrize("dtype, want", [
    ("bfloat16", [0, 50, 102, 103, 127, 142, 143, 200, 254, 255]),   # every byte survives
    ("float32", [0, 50, 102, 103, 127, 142, 143, 200, 254, 255]),
    ("float16", [0, 0, 0, 103, 127, 142, 255, 255, 255, 255]),       # < 103 -> 0, > 142 -> inf -> 255
])
def test_intermediate_dtype_hazard(dtype, want):
    codes = np.array([0, 50, 102, 103, 127, 142, 143, 200, 254, 255], np.uint8)
    b = np.full((64, 4), 127, np.uint8)
    b[:10, 0] = codes                                                # columns 0..9 of group 0
    layer = prepare_mxfp8_layer_for_marlin(np.zeros((64, 128), np.uint8), b, intermediate_dtype=dtype)
    got = layer.scales.view(np.uint8)[0, mx_position(np.arange(10))]
    assert got.tolist() == want


def test_no_exponent_bias_is_fused():
    layer = prepare_mxfp8_layer_for_marlin(np.zeros((64, 128), np.uint8), np.full((64, 4), 127, np.uint8))
    assert (layer.scales.view(np.uint8) == 127).all()


@pytest.mark.parametrize("n, k, pn, pk", [(96, 128, 128, 128), (64, 32, 64, 128)])
def test_padded_scales_are_byte_zero(n, k, pn, pk):
    # padded float scales are 0.0 -> e8m0 byte 0, which the kernel reads as multiplier 0 (§3.4)
    layer = prepare_mxfp8_layer_for_marlin(np.zeros((n, k), np.uint8), np.full((n, k // 32), 130, np.uint8))
    assert (layer.padded_n, layer.padded_k) == (pn, pk)
    logical = np.zeros((pk // 32, pn), np.uint8)
    logical[: k // 32, :n] = 130
    assert np.array_equal(layer.scales.view(np.uint8), expected_bytes(logical))


def test_bias_becomes_bf16_and_single_permuted():
    bias = np.arange(64).astype(np.float32)
    layer = prepare_mxfp8_layer_for_marlin(np.zeros((64, 128), np.uint8), np.full((64, 4), 127, np.uint8),
                                           bias=bias)
    p = np.arange(64) % 32
    src = 32 * (np.arange(64) // 32) + 2 * (p // 8) + (p % 2) + 8 * ((p % 8) // 2)
    assert layer.bias.dtype == ml_dtypes.bfloat16
    assert np.array_equal(layer.bias.astype(np.float64), src.astype(np.float64))


@pytest.mark.parametrize("weight, scale, exc, match", [
    (np.zeros((64, 48), np.uint8), np.zeros((64, 1), np.uint8), ValueError, "size_k=48 must be a multiple of 32"),
    (np.zeros((64, 128), np.uint8), np.zeros((63, 4), np.uint8), ValueError, r"at least \[N, K/32\]"),
    (np.zeros((64, 128), np.uint8), np.zeros((64, 4), np.float32), TypeError, "weight_scale must have dtype"),
    (np.zeros((64, 128), np.float16), np.zeros((64, 4), np.uint8), TypeError, "weight must have dtype"),
])
def test_bad_inputs(weight, scale, exc, match):
    with pytest.raises(exc, match=f"prepare_mxfp8_layer_for_marlin: .*{match}"):
        prepare_mxfp8_layer_for_marlin(weight, scale)


def test_bad_intermediate_dtype():
    with pytest.raises(ValueError, match="intermediate_dtype='int8'"):
        prepare_mxfp8_layer_for_marlin(np.zeros((64, 128), np.uint8), np.zeros((64, 4), np.uint8),
                                       intermediate_dtype="int8")
