"""marlin_ref.marlin_permute_bias (spec §2.5): the single 32-entry permutation over the flattened bias."""

import ml_dtypes
import numpy as np
import pytest

from marlin_ref.marlin_permute_bias import marlin_permute_bias, marlin_unpermute_bias
from marlin_ref.marlin_permute_scales import marlin_permute_scales

# §2.4 single permutation, as printed in the spec
SINGLE_CHUNK = [0, 1, 8, 9, 16, 17, 24, 25, 2, 3, 10, 11, 18, 19, 26, 27,
                4, 5, 12, 13, 20, 21, 28, 29, 6, 7, 14, 15, 22, 23, 30, 31]


def test_example_row():
    assert marlin_permute_bias(np.arange(64)).tolist() == SINGLE_CHUNK + [32 + c for c in SINGLE_CHUNK]


def test_expert_stacked_bias_keeps_shape():
    bias = np.arange(2 * 32).reshape(2, 32)                  # [E=2, N=32]
    out = marlin_permute_bias(bias)
    assert out.shape == (2, 32)
    assert out[1].tolist() == [32 + c for c in SINGLE_CHUNK]


def test_equals_channelwise_scale_permutation():
    # the kernel adds the bias where it applies channel-wise scales (§2.4, §2.5)
    b = np.random.default_rng(0).standard_normal(192).astype(np.float16)
    assert np.array_equal(marlin_permute_bias(b), marlin_permute_scales(b[None, :], 256, 192, -1)[0])


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32])
def test_roundtrip_and_dtype(dtype):
    b = np.random.default_rng(1).standard_normal((3, 64)).astype(dtype)
    before = b.copy()
    out = marlin_permute_bias(b)
    assert out.dtype == b.dtype and not np.shares_memory(out, b)
    assert np.array_equal(marlin_unpermute_bias(out).view(np.uint8), b.view(np.uint8))
    assert np.array_equal(b.view(np.uint8), before.view(np.uint8))


@pytest.mark.parametrize("fn", [marlin_permute_bias, marlin_unpermute_bias])
@pytest.mark.parametrize("bad, err, match", [
    (np.zeros(48), ValueError, r"bias.size=48 must be a multiple of 32 \(shape \(48,\)\)"),
    (np.zeros((3, 8)), ValueError, "bias.size=24 must be a multiple of 32"),
    (np.float32(1.0), TypeError, "bias must be a numpy.ndarray"),
    (np.array(1.0), ValueError, r"bias must have at least 1 dimension, got shape \(\)"),
    (list(range(32)), TypeError, "bias must be a numpy.ndarray, got list"),
])
def test_rejects(fn, bad, err, match):
    with pytest.raises(err, match=f"{fn.__name__}: {match}"):
        fn(bad)
