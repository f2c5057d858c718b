"""MoE MXFP8 prep (spec §2.10): experts equal the dense MXFP8 prep; w13 bytes padded per shard."""

import numpy as np
import pytest

from marlin_ref.prepare_mxfp8_layer_for_marlin import prepare_mxfp8_layer_for_marlin
from marlin_ref.prepare_mxfp8_moe_layer_for_marlin import prepare_mxfp8_moe_layer_for_marlin

RNG = np.random.default_rng(11)


def mx_position(c):
    """§2.7: column c of a 64-chunk ends at 8(c mod 8) + 4⌊c/32⌋ + 2(⌊c/8⌋ mod 2) + (⌊c/16⌋ mod 2)."""
    r = c % 64
    return 64 * (c // 64) + 8 * (r % 8) + 4 * (r // 32) + 2 * ((r // 8) % 2) + (r // 16) % 2


def same_bytes(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("intermediate", ["bfloat16", "float16"])
def test_each_expert_equals_the_dense_prep(intermediate):
    e, n, k = 2, 64, 128
    w13, w2 = RNG.integers(0, 256, (e, 2 * n, k), dtype=np.uint8), RNG.integers(0, 256, (e, k, n), dtype=np.uint8)
    s13 = RNG.integers(0, 256, (e, 2 * n, k // 32), dtype=np.uint8)
    s2 = RNG.integers(0, 256, (e, k, n // 32), dtype=np.uint8)
    moe = prepare_mxfp8_moe_layer_for_marlin(w13, w2, s13, s2, intermediate_dtype=intermediate)
    assert moe.w13_scales.shape == (e, k // 32, 2 * n) and moe.w2_scales.shape == (e, n // 32, k)
    assert (moe.group_size, moe.padded_intermediate, moe.w13_bias, moe.w2_bias) == (32, n, None, None)
    for x in range(e):
        d13 = prepare_mxfp8_layer_for_marlin(w13[x], s13[x], intermediate_dtype=intermediate)
        d2 = prepare_mxfp8_layer_for_marlin(w2[x], s2[x], intermediate_dtype=intermediate)
        assert same_bytes(moe.w13_qweight[x], d13.qweight) and same_bytes(moe.w13_scales[x], d13.scales)
        assert same_bytes(moe.w2_qweight[x], d2.qweight) and same_bytes(moe.w2_scales[x], d2.scales)


def test_padding_per_shard_gives_byte_zero():
    # n = 32 -> pn = 64; gate scale bytes 120, up 140; padded columns (and the w2 padded group) -> byte 0
    e, n, k = 1, 32, 128
    s13 = np.concatenate([np.full((e, n, 4), 120, np.uint8), np.full((e, n, 4), 140, np.uint8)], axis=1)
    s2 = np.full((e, k, 1), 133, np.uint8)
    moe = prepare_mxfp8_moe_layer_for_marlin(np.zeros((e, 2 * n, k), np.uint8), np.zeros((e, k, n), np.uint8),
                                             s13, s2)
    assert moe.padded_intermediate == 64 and moe.w13_qweight.shape == (e, k // 16, 8 * 64)
    col = np.arange(128)
    logical13 = np.where(col < 32, 120, np.where((col >= 64) & (col < 96), 140, 0))
    want13 = np.zeros(128, np.uint8)
    want13[mx_position(col)] = logical13
    assert (moe.w13_scales.view(np.uint8)[0] == want13).all()
    want2 = np.zeros((2, 128), np.uint8)
    want2[0, mx_position(col)] = 133                                   # group 0 real, group 1 padded
    assert np.array_equal(moe.w2_scales.view(np.uint8)[0], want2)


@pytest.mark.parametrize("s13_shape, s2_shape, n, match", [
    ((1, 128, 3), (1, 128, 2), 64, r"w13_scale must have shape \(1, 128, 4\)"),
    ((1, 128, 4), (1, 128, 1), 64, r"w2_scale must have shape \(1, 128, 2\)"),
    ((1, 96, 4), (1, 128, 1), 48, "intermediate_size=48 must be a multiple of group_size=32"),
])
def test_bad_shapes(s13_shape, s2_shape, n, match):
    with pytest.raises(ValueError, match=f"prepare_mxfp8_moe_layer_for_marlin: {match}"):
        prepare_mxfp8_moe_layer_for_marlin(np.zeros((1, 2 * n, 128), np.uint8), np.zeros((1, 128, n), np.uint8),
                                           np.zeros(s13_shape, np.uint8), np.zeros(s2_shape, np.uint8))
