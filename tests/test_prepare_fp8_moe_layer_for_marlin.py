"""MoE FP8 prep (spec §2.9, §5): each expert is exactly the dense format; w13 is padded per shard."""

import ml_dtypes
import numpy as np
import pytest

from marlin_ref.gptq_marlin_repack import gptq_marlin_unrepack
from marlin_ref.pack_fp8_to_int32 import unpack_fp8_from_int32
from marlin_ref.prepare_fp8_layer_for_marlin import prepare_fp8_layer_for_marlin
from marlin_ref.prepare_fp8_moe_layer_for_marlin import MarlinMoeLayer, prepare_fp8_moe_layer_for_marlin

RNG = np.random.default_rng(7)


def single_src(p):
    """§2.4 single permutation: out[32a + p] = in[32a + 2⌊p/8⌋ + (p mod 2) + 8⌊(p mod 8)/2⌋]."""
    r = p % 32
    return 32 * (p // 32) + 2 * (r // 8) + (r % 2) + 8 * ((r % 8) // 2)


def logical_codes(qweight, size_k, size_n):
    """Marlin int32 [K/16, 4N] -> fp8 codes [K, N] through the repack/pack inverses."""
    return unpack_fp8_from_int32(gptq_marlin_unrepack(qweight, size_k, size_n, 8)).view(np.uint8)


def f64(x):
    return np.asarray(x).astype(np.float64)


def same_bytes(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("orig", ["fp16", "bf16"])
def test_each_expert_equals_the_dense_prep(orig):
    e, n, k = 3, 64, 128
    w13 = RNG.integers(0, 256, (e, 2 * n, k), dtype=np.uint8)
    w2 = RNG.integers(0, 256, (e, k, n), dtype=np.uint8)
    s13 = RNG.uniform(0.01, 1, (e, 2)).astype(np.float32)          # per-expert gate/up tensor-wise
    s2 = RNG.uniform(0.01, 1, e).astype(np.float32)
    moe = prepare_fp8_moe_layer_for_marlin(w13, w2, s13, s2, orig_dtype=orig)
    assert isinstance(moe, MarlinMoeLayer)
    assert (moe.num_experts, moe.hidden_size, moe.intermediate_size, moe.padded_intermediate) == (e, k, n, n)
    for x in range(e):
        d13 = prepare_fp8_layer_for_marlin(w13[x], s13[x], orig_dtype=orig, size_k_first=False)
        d2 = prepare_fp8_layer_for_marlin(w2[x], s2[x], orig_dtype=orig, size_k_first=False)
        assert same_bytes(moe.w13_qweight[x], d13.qweight) and same_bytes(moe.w13_scales[x], d13.scales)
        assert same_bytes(moe.w2_qweight[x], d2.qweight) and same_bytes(moe.w2_scales[x], d2.scales)


def test_block_experts_equal_the_dense_prep():
    e, n, k, bn, bk = 2, 128, 256, 128, 128
    w13 = RNG.integers(0, 256, (e, 2 * n, k), dtype=np.uint8)
    w2 = RNG.integers(0, 256, (e, k, n), dtype=np.uint8)
    s13 = RNG.uniform(0.01, 1, (e, 2 * n // bn, k // bk)).astype(np.float32)   # [E, ⌈2n/bn⌉, ⌈k/bk⌉]
    s2 = RNG.uniform(0.01, 1, (e, k // bn, n // bk)).astype(np.float32)
    moe = prepare_fp8_moe_layer_for_marlin(w13, w2, s13, s2, orig_dtype="bf16", weight_block_size=[bn, bk])
    assert moe.group_size == bk and moe.w13_scales.shape == (e, k // bk, 2 * n) and moe.w2_scales.shape == (e, 1, k)
    for x in range(e):
        d13 = prepare_fp8_layer_for_marlin(w13[x], s13[x], orig_dtype="bf16", size_k_first=False,
                                           weight_block_size=[bn, bk])
        d2 = prepare_fp8_layer_for_marlin(w2[x], s2[x], orig_dtype="bf16", size_k_first=False,
                                          weight_block_size=[bn, bk])
        assert same_bytes(moe.w13_scales[x], d13.scales) and same_bytes(moe.w2_scales[x], d2.scales)
        assert same_bytes(moe.w13_qweight[x], d13.qweight) and same_bytes(moe.w2_qweight[x], d2.qweight)


def test_w13_is_padded_per_shard_and_w2_along_n():
    # n = 32 -> pn = 64 (§2.9 step 1); gate codes 1.0, up codes 2.0; padded rows are 0x00
    e, n, k = 2, 32, 128
    w13 = np.concatenate([np.full((e, n, k), 0x38, np.uint8), np.full((e, n, k), 0x40, np.uint8)], axis=1)
    w2 = np.full((e, k, n), 0x48, np.uint8)
    s13 = np.array([[0.5, 0.25], [2.0, 4.0]], np.float32)
    moe = prepare_fp8_moe_layer_for_marlin(w13, w2, s13, np.array([1.0, 1.0], np.float32), orig_dtype="fp16")
    assert moe.padded_intermediate == 64 and moe.w13_qweight.shape == (e, k // 16, 8 * 64)
    col = np.arange(128)
    want13 = np.where(col < 32, 0x38, np.where((col >= 64) & (col < 96), 0x40, 0))
    want2 = np.where(np.arange(64) < 32, 0x48, 0)
    for x in range(e):
        assert np.array_equal(logical_codes(moe.w13_qweight[x], k, 128), np.broadcast_to(want13, (k, 128)))
        assert np.array_equal(logical_codes(moe.w2_qweight[x], 64, k), np.broadcast_to(want2[:, None], (64, k)))
        gate, up = s13[x] * 2**8                                       # fused fp16 scales
        logical = np.where(col < 32, gate, np.where((col >= 64) & (col < 96), up, 0.0))
        assert np.array_equal(f64(moe.w13_scales[x, 0]), logical[single_src(col)])


def test_biases_are_padded_per_shard_and_permuted_per_expert():
    e, n, k = 2, 32, 128
    w13, w2 = np.zeros((e, 2 * n, k), np.uint8), np.zeros((e, k, n), np.uint8)
    b13 = np.stack([np.concatenate([np.arange(n), 100 + np.arange(n)]) + 200 * x for x in range(e)]).astype(np.float16)
    b2 = (np.arange(e * k).reshape(e, k) % 1000).astype(np.float16)
    moe = prepare_fp8_moe_layer_for_marlin(w13, w2, np.ones(e, np.float32), np.ones(e, np.float32),
                                           orig_dtype="fp16", w13_bias=b13, w2_bias=b2)
    col = np.arange(128)
    for x in range(e):
        logical = np.zeros(128)
        logical[:32], logical[64:96] = f64(b13[x, :32]), f64(b13[x, 32:])
        assert np.array_equal(f64(moe.w13_bias[x]), logical[single_src(col)])
        assert np.array_equal(f64(moe.w2_bias[x]), f64(b2[x])[single_src(np.arange(k))])


def test_bf16_scales_are_fused_with_2_to_the_120():
    moe = prepare_fp8_moe_layer_for_marlin(np.zeros((1, 128, 128), np.uint8), np.zeros((1, 128, 64), np.uint8),
                                           np.array([0.5], np.float32), np.array([0.25], np.float32),
                                           orig_dtype="bf16")
    assert moe.w13_scales.dtype == ml_dtypes.bfloat16
    assert (f64(moe.w13_scales) == 0.5 * 2.0**120).all() and (f64(moe.w2_scales) == 0.25 * 2.0**120).all()


@pytest.mark.parametrize("w13_shape, w2_shape, kwargs, match", [
    ((1, 128, 64), (1, 64, 64), {}, "hidden_size=64 must be a multiple of 128"),
    ((1, 128, 128), (1, 128, 32), {}, r"w13 must be \[E, 2n, k\]"),
    ((1, 128, 128), (1, 128, 64), dict(weight_block_size=[128, 128]),
     "intermediate_size=64 must be a multiple of group_size=128"),
    ((1, 256, 128), (1, 128, 128), dict(weight_block_size=[96, 128]), "block_n=96"),
    ((1, 256, 256), (1, 256, 128), dict(weight_block_size=[128, 64]), "block_k=64"),
    ((1, 128, 128), (1, 128, 64), dict(w13_bias=np.zeros((1, 64), np.float16)), r"w13_bias must have shape \[E, 2n\]"),
])
def test_bad_shapes_are_rejected(w13_shape, w2_shape, kwargs, match):
    e = w13_shape[0]
    s = np.ones(e, np.float32)
    with pytest.raises(ValueError, match=match):
        prepare_fp8_moe_layer_for_marlin(np.zeros(w13_shape, np.uint8), np.zeros(w2_shape, np.uint8), s, s,
                                         orig_dtype="fp16", **kwargs)


def test_inputs_not_mutated():
    w13, w2 = RNG.integers(0, 256, (2, 64, 128), dtype=np.uint8), RNG.integers(0, 256, (2, 128, 32), dtype=np.uint8)
    s13, s2 = np.ones((2, 2), np.float32), np.ones(2, np.float32)
    copies = [a.copy() for a in (w13, w2, s13, s2)]
    prepare_fp8_moe_layer_for_marlin(w13, w2, s13, s2, orig_dtype="fp16")
    assert all(np.array_equal(a, c) for a, c in zip((w13, w2, s13, s2), copies))
