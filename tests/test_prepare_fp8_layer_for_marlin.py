"""Dense FP8 prep (spec §2.8) checked byte for byte against the closed forms of §2.3.1 (weights), §2.4 (scale
permutations), §2.5 (bias) and §2.6 (exponent bias), with §2.11 padding."""

import ml_dtypes
import numpy as np
import pytest

from marlin_ref.prepare_fp8_layer_for_marlin import MarlinLayer, prepare_fp8_layer_for_marlin

BF16 = np.dtype(ml_dtypes.bfloat16)
ONE = 0x38      # e4m3fn 1.0


def weight_byte_index(k, n):
    """(row, byte in the row of qweight.view(uint8)) of W[k, n], from the §2.3.1 table (8-bit)."""
    k, n = np.asarray(k), np.asarray(n)
    kl, nl = k % 16, n % 64
    w, h, c8 = nl // 16, (nl % 16) // 8, n % 8
    q, e, g = (kl % 8) // 2, kl % 2, kl // 8
    t = 4 * c8 + q
    column = 256 * (n // 64) + 8 * t + 2 * w + h
    return k // 16, 4 * column + 2 * e + g


def single_src(p):
    """§2.4 single permutation: out[32a + p] = in[32a + 2⌊p/8⌋ + (p mod 2) + 8⌊(p mod 8)/2⌋]."""
    p = np.asarray(p)
    r = p % 32
    return 32 * (p // 32) + 2 * (r // 8) + (r % 2) + 8 * ((r % 8) // 2)


def grouped_src(p):
    """§2.4 grouped permutation: out[64a + p] = in[64a + ⌊p/8⌋ + 8(p mod 8)]."""
    p = np.asarray(p)
    r = p % 64
    return 64 * (p // 64) + r // 8 + 8 * (r % 8)


def f64(x):
    return np.asarray(x).astype(np.float64)


# --- weights -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k, n, row, col, byte", [        # the §2.3.4 table, 8-bit column
    (0, 0, 0, 0, 0), (1, 0, 0, 0, 2), (8, 0, 0, 0, 1), (9, 0, 0, 0, 3), (0, 1, 0, 32, 0), (0, 8, 0, 1, 0),
    (2, 0, 0, 8, 0), (0, 16, 0, 2, 0), (7, 5, 0, 184, 2), (0, 63, 0, 231, 0), (15, 63, 0, 255, 3),
    (16, 64, 1, 256, 0),                                   # second k tile = row 1, second n tile = +256
])
@pytest.mark.parametrize("size_k_first", [True, False])
def test_single_weight_byte_lands_where_the_spec_table_says(k, n, row, col, byte, size_k_first):
    w = np.zeros((128, 128), np.uint8)
    w[k, n] = 0x3C
    layer = prepare_fp8_layer_for_marlin(w if size_k_first else w.T, np.array(1.0, np.float32),
                                         orig_dtype="fp16", size_k_first=size_k_first)
    want = np.zeros((8, 4 * 128 * 4), np.uint8)
    want[row, 4 * col + byte] = 0x3C
    assert np.array_equal(layer.qweight.view(np.uint8), want)


def test_every_byte_follows_the_closed_form():
    rng = np.random.default_rng(0)
    w = rng.integers(0, 256, (64, 192), dtype=np.uint8).view(ml_dtypes.float8_e4m3fn)   # [K, N], NaN codes too
    layer = prepare_fp8_layer_for_marlin(w, np.array(1.0, np.float32), orig_dtype="bf16")
    kk, nn = np.meshgrid(np.arange(64), np.arange(192), indexing="ij")
    row, idx = weight_byte_index(kk, nn)
    assert np.array_equal(layer.qweight.view(np.uint8)[row, idx], w.view(np.uint8))


def test_square_weight_orientation_is_taken_from_size_k_first():
    # N == K (§6.1 item 6): [K, N] with size_k_first and its transpose without must give the same bytes
    w = np.random.default_rng(1).integers(0, 256, (128, 128), dtype=np.uint8)
    a = prepare_fp8_layer_for_marlin(w, np.array(1.0, np.float32), orig_dtype="fp16", size_k_first=True)
    b = prepare_fp8_layer_for_marlin(np.ascontiguousarray(w.T), np.array(1.0, np.float32), orig_dtype="fp16",
                                     size_k_first=False)
    assert np.array_equal(a.qweight.view(np.uint8), b.qweight.view(np.uint8))
    assert not np.array_equal(a.qweight, prepare_fp8_layer_for_marlin(w, np.array(1.0, np.float32),
                                                                      orig_dtype="fp16", size_k_first=False).qweight)


@pytest.mark.parametrize("n, k, pn, pk", [
    (96, 64, 128, 64),     # A (128, 128) = 16384 > B (128, 64) = 8192: only N is padded
    (64, 64, 64, 128),     # A (64, 128) ties B (128, 64) in product and sum: A, only K is padded
    (96, 96, 128, 128),    # A (128, 128), B (128, 128): both padded
])
def test_padding_adds_zero_bytes_only(n, k, pn, pk):
    # every logical byte sits where §2.3.1 says (in the padded extents), every other byte is 0x00
    w = np.full((k, n), ONE, np.uint8)
    layer = prepare_fp8_layer_for_marlin(w, np.array(1.0, np.float32), orig_dtype="fp16")
    assert (layer.padded_k, layer.padded_n, layer.size_k, layer.size_n) == (pk, pn, k, n)
    assert layer.qweight.shape == (pk // 16, 4 * pn)
    want = np.zeros((pk // 16, 16 * pn), np.uint8)
    kk, nn = np.meshgrid(np.arange(k), np.arange(n), indexing="ij")
    row, idx = weight_byte_index(kk, nn)
    want[row, idx] = ONE
    assert np.array_equal(layer.qweight.view(np.uint8), want)


# --- scales --------------------------------------------------------------------------------------------

def test_channelwise_scales_single_permutation_and_fp16_fusion():
    s = ((np.arange(64) + 1) / 128).astype(np.float32)                 # exact in fp16
    layer = prepare_fp8_layer_for_marlin(np.zeros((128, 64), np.uint8), s, orig_dtype="fp16")
    assert layer.scales.dtype == np.float16 and layer.scales.shape == (1, 64)
    assert np.array_equal(f64(layer.scales[0]), f64(s)[single_src(np.arange(64))] * 2**8)
    # the spec's example row: 0,1,8,9,16,17,24,25, 2,3,10,11,...
    assert list(single_src(np.arange(10))) == [0, 1, 8, 9, 16, 17, 24, 25, 2, 3]


def test_block_scales_grouped_permutation_and_bf16_fusion():
    # block [1, 128] (one scale per column and k-group), K = 256 -> G = 2 groups of 128
    s = (np.arange(256).reshape(2, 128) + 1).astype(np.float32) / 512        # exact in bf16 (<= 8 bits)
    layer = prepare_fp8_layer_for_marlin(np.zeros((256, 128), np.uint8), s, orig_dtype="bf16",
                                         weight_block_size=[1, 128])
    assert layer.scales.dtype == BF16 and layer.scales.shape == (2, 128) and layer.group_size == 128
    p = np.arange(128)
    assert np.array_equal(f64(layer.scales), f64(s)[:, grouped_src(p)] * 2.0**120)
    assert list(grouped_src(np.arange(10))) == [0, 8, 16, 24, 32, 40, 48, 56, 1, 9]


def test_block_k_equal_to_k_is_the_channelwise_path():
    # K == block_k: one group, so the single permutation (§2.4 edge)
    s = ((np.arange(64) + 1) / 128).astype(np.float32)[None, :]              # [K/bk = 1, N/bn = 64]
    layer = prepare_fp8_layer_for_marlin(np.zeros((128, 64), np.uint8), s, orig_dtype="fp16",
                                         weight_block_size=[1, 128])
    assert np.array_equal(f64(layer.scales[0]), f64(s[0])[single_src(np.arange(64))] * 2**8)


def test_tensorwise_scale_is_rounded_then_fused():
    layer = prepare_fp8_layer_for_marlin(np.zeros((128, 64), np.uint8), np.array(1 + 2**-8 + 2**-9, np.float32),
                                         orig_dtype="bf16")
    assert (f64(layer.scales) == (1 + 2**-7) * 2.0**120).all()


def test_fp16_fused_scale_overflows_at_256():
    layer = prepare_fp8_layer_for_marlin(np.zeros((128, 64), np.uint8), np.array([255.875, 256.0], np.float32),
                                         orig_dtype="fp16")
    fused = f64(layer.scales[0])
    src = single_src(np.arange(64))                        # equal shards: columns < 32 hold 255.875
    assert (fused[src < 32] == 65504).all() and np.isposinf(fused[src >= 32]).all()


def test_padded_scale_columns_are_zero():
    s = np.full(96, 0.5, np.float32)
    layer = prepare_fp8_layer_for_marlin(np.zeros((128, 96), np.uint8), s, orig_dtype="fp16")
    src = single_src(np.arange(128))
    assert np.array_equal(f64(layer.scales[0]), np.where(src < 96, 128.0, 0.0))


# --- bias ----------------------------------------------------------------------------------------------

def test_bias_is_padded_then_single_permuted():
    bias = np.arange(96).astype(np.float16)
    layer = prepare_fp8_layer_for_marlin(np.zeros((128, 96), np.uint8), np.array(1.0, np.float32),
                                         orig_dtype="fp16", bias=bias)
    src = single_src(np.arange(128))
    assert layer.bias.dtype == np.float16
    assert np.array_equal(f64(layer.bias), np.where(src < 96, src, 0).astype(np.float64))


def test_no_bias_gives_none_and_a_marlin_layer():
    layer = prepare_fp8_layer_for_marlin(np.zeros((128, 64), np.uint8), np.array(1.0, np.float32),
                                         orig_dtype="fp16")
    assert isinstance(layer, MarlinLayer) and layer.bias is None and layer.group_size == -1


# --- rejections and purity ------------------------------------------------------------------------------

@pytest.mark.parametrize("input_dtype", ["int8", "float8_e4m3fn", np.int8, ml_dtypes.float8_e4m3fn])
def test_w8a8_is_rejected(input_dtype):
    with pytest.raises(ValueError, match="itemsize 1"):
        prepare_fp8_layer_for_marlin(np.zeros((128, 64), np.uint8), np.array(1.0, np.float32), orig_dtype="fp16",
                                     input_dtype=input_dtype)


@pytest.mark.parametrize("block_k, k", [(64, 256), (32, 256), (256, 512)])
def test_group_sizes_without_an_fp8_kernel_are_rejected(block_k, k):
    with pytest.raises(ValueError, match=f"block_k={block_k}.*§4.2"):
        prepare_fp8_layer_for_marlin(np.zeros((k, 64), np.uint8), np.ones((k // block_k, 1), np.float32),
                                     orig_dtype="fp16", weight_block_size=[64, block_k])


def test_large_single_block_is_accepted_as_channelwise():
    layer = prepare_fp8_layer_for_marlin(np.zeros((256, 64), np.uint8), np.ones((1, 1), np.float32),
                                         orig_dtype="fp16", weight_block_size=[128, 256])
    assert layer.scales.shape == (1, 64) and layer.group_size == 256


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(input_dtype="bfloat16"), ValueError, "input_dtype=bfloat16 must equal orig_dtype=float16"),
    (dict(orig_dtype="float32"), ValueError, "prepare_fp8_layer_for_marlin: .*float16 or bfloat16"),
    (dict(weight=np.zeros((128, 64), np.float16)), TypeError, "weight must have dtype"),
    (dict(weight=np.zeros((2, 128, 64), np.uint8)), ValueError, "weight must be 2-D"),
    (dict(weight=np.zeros((6, 64), np.uint8)), ValueError, "size_k=6 must be a multiple of 4"),
    (dict(bias=np.zeros(63, np.float16)), ValueError, "size_n=64"),
])
def test_bad_inputs(kwargs, exc, match):
    args = {"weight": np.zeros((128, 64), np.uint8), "weight_scale": np.array(1.0, np.float32),
            "orig_dtype": "fp16", **kwargs}
    with pytest.raises(exc, match=match):
        prepare_fp8_layer_for_marlin(args.pop("weight"), args.pop("weight_scale"), **args)


def test_inputs_not_mutated():
    w = np.random.default_rng(2).integers(0, 256, (128, 96), dtype=np.uint8)
    s, b = np.full(96, 0.25, np.float32), np.ones(96, np.float16)
    copies = [x.copy() for x in (w, s, b)]
    prepare_fp8_layer_for_marlin(w, s, orig_dtype="fp16", bias=b)
    assert all(np.array_equal(x, c) for x, c in zip((w, s, b), copies))
