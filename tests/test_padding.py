"""Padding helpers (spec §2.11): sizes hand-computed from the two tile families, arrays compared byte for byte."""

import ml_dtypes
import numpy as np
import pytest

from marlin_ref.padding import (marlin_moe_padded_intermediate, marlin_pad_dim, marlin_pad_qweight,
                                marlin_pad_scales, marlin_padded_nk, marlin_repacked_nk, marlin_unpad_output)


@pytest.mark.parametrize("n, k, group, want", [
    (64, 128, -1, (64, 128)),      # aligned (64, 128) family: identity
    (128, 64, -1, (128, 64)),      # aligned (128, 64) family: identity
    (192, 320, -1, (192, 384)),    # A (192, 384) = 73728 < B (256, 320) = 81920
    (200, 64, -1, (256, 64)),      # A (256, 128) = 32768 > B (256, 64) = 16384
    (64, 64, -1, (64, 128)),       # A (64, 128) and B (128, 64): same product and sum -> A
    (100, 100, -1, (128, 128)),    # both candidates are (128, 128)
    (64, 64, 128, (64, 128)),      # g = 128: A (64, 128) vs B (128, lcm(64,128) = 128)
    (128, 192, 128, (128, 256)),   # A (128, 256) vs B (128, 256)
    (64, 96, 32, (64, 128)),       # A (64, 128) vs B (128, 128)
    (96, 64, 32, (128, 64)),       # A (128, 128) vs B (128, 64)
])
def test_padded_nk(n, k, group, want):
    assert marlin_padded_nk(n, k, group) == want


@pytest.mark.parametrize("n, group, want", [(64, -1, 64), (96, -1, 128), (96, 128, 128), (130, 128, 256),
                                            (40, 32, 64), (192, 128, 256)])
def test_moe_padded_intermediate(n, group, want):
    assert marlin_moe_padded_intermediate(n, group) == want


def test_pad_qweight_adds_zero_words_right_and_bottom():
    q = np.arange(1, 7, dtype=np.int32).reshape(2, 3)          # K = 8 (pf 4), N = 3
    out = marlin_pad_qweight(q, 3, 8, 5, 16)
    want = np.zeros((4, 5), np.int32)
    want[:2, :3] = q
    assert out.dtype == np.int32 and np.array_equal(out.view(np.uint8), want.view(np.uint8))


def test_pad_scales_channelwise_keeps_one_row():
    s = np.array([[1, 2, 3]], np.float16)
    assert np.array_equal(marlin_pad_scales(s, 3, 100, 5, 128, -1), np.array([[1, 2, 3, 0, 0]], np.float16))


def test_pad_scales_grouped_adds_group_rows():
    s = np.ones((2, 3), ml_dtypes.bfloat16)                      # K = 192 -> ⌈192/128⌉ = 2 groups
    out = marlin_pad_scales(s, 3, 192, 4, 384, 128)
    want = np.zeros((3, 4), ml_dtypes.bfloat16)
    want[:2, :3] = 1
    assert out.dtype == s.dtype and np.array_equal(out.view(np.uint16), want.view(np.uint16))


def test_pad_scales_of_raw_bytes():
    s = np.full((1, 2), 127, np.uint8)
    assert np.array_equal(marlin_pad_scales(s, 2, 32, 3, 64, 32), np.array([[127, 127, 0], [0, 0, 0]], np.uint8))


def test_pad_dim_and_unpad_output():
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float16)
    padded = marlin_pad_dim(x, 3, 5)
    assert np.array_equal(padded, np.array([[1, 2, 3, 0, 0], [4, 5, 6, 0, 0]], np.float16))
    back = marlin_unpad_output(padded, 3, 5)
    assert np.array_equal(back, x) and back.flags.c_contiguous and not np.shares_memory(back, padded)


def test_no_padding_still_returns_a_new_array():
    x = np.ones((2, 4), np.float16)
    out = marlin_pad_dim(x, 4, 4)
    assert np.array_equal(out, x) and not np.shares_memory(out, x)


@pytest.mark.parametrize("shape, bits, want", [((8, 512), 8, (128, 128)), ((8, 256), 4, (128, 128)),
                                               ((3, 4, 256), 8, (64, 64))])
def test_repacked_nk(shape, bits, want):
    assert marlin_repacked_nk(np.zeros(shape, np.int32), bits) == want


@pytest.mark.parametrize("call, exc, match", [
    (lambda: marlin_padded_nk(64, 128, 0), ValueError, "marlin_padded_nk: group_size=0"),
    (lambda: marlin_padded_nk(0, 128), ValueError, "size_n=0 must be positive"),
    (lambda: marlin_pad_qweight(np.zeros((2, 3), np.int32), 3, 8, 2, 8), ValueError, "padded_n=2 must be >="),
    (lambda: marlin_pad_qweight(np.zeros((2, 3), np.int32), 4, 8, 4, 8), ValueError, "size_n=4"),
    (lambda: marlin_pad_qweight(np.zeros((2, 3), np.int32), 3, 8, 3, 10), ValueError, "pack factor 4"),
    (lambda: marlin_pad_scales(np.zeros((3, 3)), 3, 192, 3, 256, 128), ValueError, "more than"),
    (lambda: marlin_pad_dim(np.zeros((2, 3)), 4, 5), ValueError, "size=4"),
    (lambda: marlin_unpad_output(np.zeros((2, 3)), 2, 4), ValueError, "padded_n=4"),
    (lambda: marlin_repacked_nk(np.zeros((2, 3), np.int32), 8), ValueError, "multiple of 16"),
    (lambda: marlin_repacked_nk(np.zeros((2, 4), np.int32), 2), ValueError, "num_bits=2"),
    (lambda: marlin_pad_dim([1, 2], 2, 3), TypeError, "numpy.ndarray"),
])
def test_errors_name_the_rule(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
