"""marlin_ref.marlin_permute_scales (spec §2.4): the two example rows, the selection rule, inverses, errors."""

import ml_dtypes
import numpy as np
import pytest

from marlin_ref.marlin_permute_scales import (marlin_permute_scales, marlin_unpermute_scales,
                                              uses_grouped_scale_permutation)
from properties.seam.backends import get_backend

# §2.4 example rows (one 64-column row, values = column ids), as printed in the spec
GROUPED_ROW = [0, 8, 16, 24, 32, 40, 48, 56,
               1, 9, 17, 25, 33, 41, 49, 57,
               2, 10, 18, 26, 34, 42, 50, 58,
               3, 11, 19, 27, 35, 43, 51, 59,
               4, 12, 20, 28, 36, 44, 52, 60,
               5, 13, 21, 29, 37, 45, 53, 61,
               6, 14, 22, 30, 38, 46, 54, 62,
               7, 15, 23, 31, 39, 47, 55, 63]
SINGLE_CHUNK = [0, 1, 8, 9, 16, 17, 24, 25,
                2, 3, 10, 11, 18, 19, 26, 27,
                4, 5, 12, 13, 20, 21, 28, 29,
                6, 7, 14, 15, 22, 23, 30, 31]
SINGLE_ROW = SINGLE_CHUNK + [c + 32 for c in SINGLE_CHUNK]   # second 32-chunk = first + 32


def ids_grid(groups, size_n):
    return (1000 * np.arange(groups)[:, None] + np.arange(size_n)[None, :]).astype(np.int64)


def test_grouped_example_row():
    s = ids_grid(2, 64)                                        # G = 2, group 128, size_k = 256
    out = marlin_permute_scales(s, 256, 64, 128)
    assert out[0].tolist() == GROUPED_ROW
    assert out[1].tolist() == [1000 + c for c in GROUPED_ROW]  # each row on its own


def test_single_example_row_channelwise():
    assert marlin_permute_scales(ids_grid(1, 64), 4096, 64, -1)[0].tolist() == SINGLE_ROW


def test_k_equal_block_k_takes_single_permutation():
    # block FP8 with K == block_k: G = 1, kernel's channel-wise path (§2.4 edge)
    assert not uses_grouped_scale_permutation(128, 128)
    assert marlin_permute_scales(ids_grid(1, 64), 128, 64, 128)[0].tolist() == SINGLE_ROW


def test_grouped_chunks_repeat_along_n():
    out = marlin_permute_scales(ids_grid(4, 128), 128, 128, 32)          # G = 4, group 32
    assert out[3, 64:].tolist() == [3000 + 64 + c for c in GROUPED_ROW]


def test_single_permutation_needs_only_n_multiple_of_32():
    assert marlin_permute_scales(ids_grid(1, 32), 64, 32, -1)[0].tolist() == SINGLE_CHUNK
    assert marlin_permute_scales(ids_grid(1, 96), 64, 96, -1)[0, 64:].tolist() == [64 + c for c in SINGLE_CHUNK]


@pytest.mark.parametrize("size_k, group_size, grouped", [
    (4096, 128, True), (256, 128, True), (128, 128, False), (64, 128, False),
    (64, 32, True), (32, 32, False), (128, 64, True), (4096, -1, False), (16, -1, False),
    (256, 256, False), (384, 384, False), (48, 48, False),                 # one group of any size (§9)
])
def test_selection_rule(size_k, group_size, grouped):
    # grouped iff group_size != -1 and group_size < size_k
    assert uses_grouped_scale_permutation(size_k, group_size) is grouped


@pytest.mark.parametrize("package", ["ref", "torch"])
@pytest.mark.parametrize("size_k", [16, 48, 256, 384, 4096])
def test_group_size_equal_to_size_k_is_the_channelwise_permutation(package, size_k):
    # §2.4, §9: one group of any size (vLLM accepts it) takes the single table, bit for bit the
    # channel-wise (group_size=-1) result, and unpermutes back; the kernel sees G = 1, channel-wise.
    b = get_backend(package)
    s = np.random.default_rng(size_k).standard_normal((1, 128)).astype(np.float16)
    one_group = b.marlin_permute_scales(s=s, size_k=size_k, size_n=128, group_size=size_k)
    channel = b.marlin_permute_scales(s=s, size_k=size_k, size_n=128, group_size=-1)
    assert one_group.tobytes() == channel.tobytes()
    assert b.marlin_unpermute_scales(s=one_group, size_k=size_k, size_n=128, group_size=size_k).tobytes() == s.tobytes()
    assert b.uses_grouped_scale_permutation(size_k=size_k, group_size=size_k) is False


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32, np.uint8, ml_dtypes.float8_e8m0fnu])
@pytest.mark.parametrize("size_k, group_size", [(256, 128), (256, -1)])
def test_any_dtype_bits_move_unchanged(dtype, size_k, group_size):
    groups = 1 if group_size == -1 else size_k // group_size
    raw = np.random.default_rng(0).integers(0, 256, size=(groups, 128 * np.dtype(dtype).itemsize)).astype(np.uint8)
    s = raw.view(dtype)                                        # [G, 128]
    out = marlin_permute_scales(s, size_k, 128, group_size)
    assert out.dtype == s.dtype and out.shape == s.shape and out.flags.c_contiguous
    ids = marlin_permute_scales(ids_grid(groups, 128), size_k, 128, group_size) % 1000
    rows = np.arange(groups)[:, None]
    assert np.array_equal(out.view(np.uint8).reshape(groups, 128, -1),
                          s.view(np.uint8).reshape(groups, 128, -1)[rows, ids])


@pytest.mark.parametrize("size_k, size_n, group_size", [(256, 64, 128), (256, 192, -1), (128, 64, 128),
                                                        (64, 128, 32), (64, 32, -1)])
def test_unpermute_roundtrip(size_k, size_n, group_size):
    groups = 1 if group_size == -1 else size_k // group_size
    s = np.random.default_rng(1).standard_normal((groups, size_n)).astype(np.float16)
    permuted = marlin_permute_scales(s, size_k, size_n, group_size)
    assert not np.array_equal(permuted, s)
    assert np.array_equal(marlin_unpermute_scales(permuted, size_k, size_n, group_size), s)


def test_returns_new_array_and_does_not_mutate():
    s = ids_grid(1, 64)
    before = s.copy()
    out = marlin_permute_scales(s, 64, 64, -1)
    assert np.array_equal(s, before) and not np.shares_memory(out, s)


def test_accepts_non_contiguous_input():
    s = ids_grid(2, 128)[:, ::2]                               # [2, 64], strided
    assert np.array_equal(marlin_permute_scales(s, 256, 64, 128),
                          marlin_permute_scales(np.ascontiguousarray(s), 256, 64, 128))


@pytest.mark.parametrize("fn", [marlin_permute_scales, marlin_unpermute_scales])
@pytest.mark.parametrize("args, err, match", [
    ((ids_grid(1, 64), 64, 64, 16), ValueError, r"group_size=16 must be one of \[-1, 32, 64, 128\] or equal size_k=64"),
    ((ids_grid(2, 64), 512, 64, 256), ValueError, r"group_size=256 must be one of .* or equal size_k=512"),
    ((ids_grid(1, 64), 256, 64, 128), ValueError, r"G\*group_size == size_k.*got G=1, group_size=128"),
    ((ids_grid(3, 64), 256, 64, 128), ValueError, "must equal size_k=256"),
    ((ids_grid(2, 64), 256, 64, -1), ValueError, r"group_size=-1 \(channel-wise\) needs s with 1 row"),
    ((ids_grid(1, 64), 64, 128, -1), ValueError, r"s must have size_n=128 columns, got shape \(1, 64\)"),
    ((ids_grid(2, 32), 64, 32, 32), ValueError, "size_n=32 must be a multiple of 64"),
    ((ids_grid(1, 48), 64, 48, -1), ValueError, "size_n=48 must be a multiple of 32"),
    ((np.arange(64), 64, 64, -1), ValueError, r"s must be 2-D, got shape \(64,\)"),
    ((ids_grid(1, 64), 0, 64, -1), ValueError, "size_k=0 must be positive"),
    ((ids_grid(1, 64), 64, 64, 128.0), TypeError, "group_size must be an integer"),
    (([[0] * 64], 64, 64, -1), TypeError, "must be a numpy.ndarray, got list"),
])
def test_rejects(fn, args, err, match):
    with pytest.raises(err, match=f"{fn.__name__}: .*{match}"):
        fn(*args)


def test_uses_grouped_rejects():
    with pytest.raises(ValueError, match=r"uses_grouped_scale_permutation: group_size=256 must be one of"):
        uses_grouped_scale_permutation(1024, 256)
    with pytest.raises(ValueError, match="uses_grouped_scale_permutation: size_k=-5 must be positive"):
        uses_grouped_scale_permutation(-5, 128)
