"""marlin_ref.mxfp8_marlin_process_scales (spec §2.7, §2.10): [0,2,1,3] after the grouped permutation."""

import ml_dtypes
import numpy as np
import pytest

from marlin_ref.marlin_permute_scales import marlin_permute_scales
from marlin_ref.mxfp8_marlin_process_scales import (mxfp8_marlin_process_scales,
                                                    mxfp8_marlin_unprocess_scales)

# §2.7 example row (column ids after grouped permutation + [0,2,1,3]), as printed: first 16 and last 8
EXAMPLE_HEAD = [0, 16, 8, 24, 32, 48, 40, 56, 1, 17, 9, 25, 33, 49, 41, 57]
EXAMPLE_TAIL = [7, 23, 15, 31, 39, 55, 47, 63]


def column_ids_through_the_pipeline(groups, size_n):
    """Logical scale of column c in group g = 2^(c mod 64 - 32 + g): the byte tells the column back."""
    c = np.arange(size_n)
    logical = np.ldexp(1.0, (c % 64 - 32)[None, :] + np.arange(groups)[:, None]).astype(np.float32)
    e8m0 = mxfp8_marlin_process_scales(marlin_permute_scales(logical, 32 * groups, size_n, 32))
    codes = e8m0.view(np.uint8).astype(int)
    return codes - 95 - np.arange(groups)[:, None], e8m0


def test_example_row():
    ids, e8m0 = column_ids_through_the_pipeline(2, 64)
    assert e8m0.dtype == ml_dtypes.float8_e8m0fnu and e8m0.shape == (2, 64)
    for row in ids:
        assert row[:16].tolist() == EXAMPLE_HEAD and row[-8:].tolist() == EXAMPLE_TAIL


def test_every_column_lands_at_the_spec_position():
    ids, _ = column_ids_through_the_pipeline(4, 128)
    for c in range(64):
        position = 8 * (c % 8) + 4 * (c // 32) + 2 * ((c // 8) % 2) + (c // 16) % 2
        assert ids[3, position] == c and ids[3, 64 + position] == c   # second chunk: same columns mod 64


def test_quadruple_swap_only():
    # on an already-permuted grid the function only swaps positions 1 and 2 of every quadruple
    ms = np.ldexp(1.0, np.arange(64) - 32)[None, :]              # float64 [1, 64]
    codes = mxfp8_marlin_process_scales(ms).view(np.uint8)[0].astype(int) - 95
    assert codes[:8].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


@pytest.mark.parametrize("value, code", [
    (1.0, 127), (2.0, 128), (0.5, 126), (2.0**-127, 0), (2.0**127, 254),
    (0.0, 0), (-0.0, 0),            # zero-padded float grid (§2.10) -> byte 0 (c10 rule)
    (np.inf, 255), (np.nan, 255),   # fp16 intermediate overflow / byte 255 decoded
])
def test_bytes_by_hand(value, code):
    ms = np.full((1, 64), value)
    assert (mxfp8_marlin_process_scales(ms).view(np.uint8) == code).all()


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32, np.float64])
def test_input_dtypes(dtype):
    ms = np.full((2, 64), 4.0).astype(dtype)
    assert (mxfp8_marlin_process_scales(ms).view(np.uint8) == 129).all()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", np.float32, ml_dtypes.bfloat16, "float64"])
def test_all_256_bytes_roundtrip_through_float32_and_bf16(dtype):
    codes = np.arange(256, dtype=np.uint8).reshape(4, 64)
    floats = mxfp8_marlin_unprocess_scales(codes.view(ml_dtypes.float8_e8m0fnu), dtype)
    assert floats.dtype == np.dtype(dtype)
    assert np.array_equal(mxfp8_marlin_process_scales(floats).view(np.uint8), codes)


def test_unprocess_decodes_like_torch():
    codes = np.full((1, 64), 127, np.uint8)
    codes[0, :4] = [0, 128, 255, 126]                           # stored order; natural = [0, 255, 128, 126]
    got = mxfp8_marlin_unprocess_scales(codes)
    assert got.dtype == np.float32
    assert got[0, 0] == np.float32(2.0**-127) and np.isnan(got[0, 1]) and got[0, 2] == 2.0 and got[0, 3] == 0.5


def test_fp16_intermediate_hazard():
    # §2.10: with fp16 as the float dtype, bytes < 103 become 0 -> byte 0 and bytes > 142 become inf -> 255
    codes = np.full((1, 64), 127, np.uint8)
    codes[0, :4] = [102, 103, 142, 143]                          # [0,2,1,3] maps positions 1 <-> 2
    floats = mxfp8_marlin_unprocess_scales(codes, "float16")
    assert floats.dtype == np.float16
    assert mxfp8_marlin_process_scales(floats).view(np.uint8)[0, :4].tolist() == [0, 103, 142, 255]


def test_does_not_mutate():
    ms = np.ones((1, 64), np.float32)
    mxfp8_marlin_process_scales(ms)
    assert (ms == 1.0).all()


@pytest.mark.parametrize("value", [3.0, -2.0, 2.0**-128, 2.0**128, -np.inf, 1.5])
def test_rejects_values_that_are_not_e8m0_scales(value):
    ms = np.ones((1, 64))
    ms[0, 5] = value
    with pytest.raises(ValueError, match=r"mxfp8_marlin_process_scales: ms must hold exact powers of two "
                                         r"2\^e with e in \[-127, 127\] \(or 0, \+inf, NaN\), got .* at index \(0, 5\)"):
        mxfp8_marlin_process_scales(ms)


@pytest.mark.parametrize("bad, err, match", [
    (np.ones((1, 32)), ValueError, "size_n=32 must be a multiple of 64"),
    (np.ones(64), ValueError, "ms must be 2-D"),
    (np.ones((1, 64), np.int32), TypeError, "ms must have dtype in .*got int32"),
    (np.ones((1, 64), np.uint8), TypeError, "ms must have dtype in .*got uint8"),
])
def test_process_rejects(bad, err, match):
    with pytest.raises(err, match="mxfp8_marlin_process_scales: " + match):
        mxfp8_marlin_process_scales(bad)


@pytest.mark.parametrize("args, err, match", [
    ((np.zeros((1, 64), np.uint8), "float8"), ValueError, "dtype must be float32, float64, float16 or bfloat16, got 'float8'"),
    ((np.zeros((1, 64), np.uint8), np.int32), ValueError, "dtype must be .*got <class 'numpy.int32'>"),
    ((np.zeros((1, 64), np.float32),), TypeError, "e8m0 must have dtype in .*got float32"),
    ((np.zeros((1, 48), np.uint8),), ValueError, "size_n=48 must be a multiple of 64"),
])
def test_unprocess_rejects(args, err, match):
    with pytest.raises(err, match="mxfp8_marlin_unprocess_scales: " + match):
        mxfp8_marlin_unprocess_scales(*args)
