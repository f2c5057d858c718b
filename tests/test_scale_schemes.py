"""convert_fp8_scales / convert_fp8_moe_scales / mxfp8_scales_to_float against hand-derived grids (spec §2.8
step 4, §2.9 step 3, §2.10). Values are exact powers of two unless the test is about the cast's rounding."""

import math

import ml_dtypes
import numpy as np
import pytest

from marlin_ref.scale_schemes import (blockwise_scales, channelwise_scales, convert_fp8_moe_scales,
                                      convert_fp8_scales, equal_shard_scales, mxfp8_scales_to_float,
                                      per_shard_scales, tensorwise_scales)

BF16 = np.dtype(ml_dtypes.bfloat16)
A, B, C, D = 0.5, 0.25, 2.0, 4.0


def f64(x):
    return np.asarray(x).astype(np.float64)


def runs(*pairs):
    """[1, Σ count] row made of (value, count) runs."""
    return np.concatenate([np.full(count, value) for value, count in pairs])[None, :]


# --- §2.8 step 4 worked examples ---------------------------------------------------------------------

def test_block_worked_example_transposed_checkpoint():
    # bn = bk = 128, N = 192, K = 256; checkpoint [[a, b], [c, d]] with rows = n-blocks (not size_k_first):
    # transpose [[a, c], [b, d]] -> row 0 = a×128, c×64; row 1 = b×128, d×64
    ckpt = np.array([[A, B], [C, D]], np.float32)
    grid = convert_fp8_scales(ckpt, size_n=192, size_k=256, orig_dtype="bf16", weight_block_size=[128, 128],
                              size_k_first=False)
    assert grid.dtype == BF16 and grid.shape == (2, 192)
    want = np.concatenate([runs((A, 128), (C, 64)), runs((B, 128), (D, 64))])
    assert np.array_equal(f64(grid), want)


def test_block_size_k_first_takes_the_k_major_grid_as_is():
    kn = np.array([[A, C], [B, D]], np.float32)                      # already [K/bk, ⌈N/bn⌉]
    grid = convert_fp8_scales(kn, size_n=192, size_k=256, orig_dtype="fp16", weight_block_size=(128, 128))
    assert np.array_equal(f64(grid), np.concatenate([runs((A, 128), (C, 64)), runs((B, 128), (D, 64))]))


def test_equal_shard_worked_example():
    # s = [0.01, 0.03], N = 256 -> 128 × RT(0.01) then 128 × RT(0.03)
    grid = convert_fp8_scales(np.array([0.01, 0.03], np.float32), size_n=256, size_k=128, orig_dtype="fp16")
    want = runs((float(np.float16(0.01)), 128), (float(np.float16(0.03)), 128))
    assert grid.dtype == np.float16 and np.array_equal(f64(grid), want)


# --- the other schemes and the branch order ------------------------------------------------------------

@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_tensorwise_accepts_rank_0_1_2(shape):
    grid = convert_fp8_scales(np.full(shape, A, np.float32), size_n=64, size_k=128, orig_dtype="bf16")
    assert np.array_equal(f64(grid), np.full((1, 64), A))


@pytest.mark.parametrize("shape", [(64,), (64, 1), (1, 64)])
def test_channelwise_accepts_any_shape_with_n_elements(shape):
    s = np.ldexp(1.0, np.arange(64) - 32).astype(np.float32)
    grid = convert_fp8_scales(s.reshape(shape), size_n=64, size_k=128, orig_dtype="bf16")
    assert np.array_equal(f64(grid), f64(s)[None, :])


def test_unequal_logical_widths():
    # fused QKV with widths 64, 32, 32: shard i's scale repeated width_i times, in order
    grid = convert_fp8_scales(np.array([A, B, C], np.float32), size_n=128, size_k=128, orig_dtype="fp16",
                              logical_widths=[64, 32, 32])
    assert np.array_equal(f64(grid), runs((A, 64), (B, 32), (C, 32)))


def test_logical_widths_are_tried_before_equal_shards():
    # equal shards would give 64/64; numel == len(widths) wins and gives 96/32
    grid = convert_fp8_scales(np.array([A, B], np.float32), size_n=128, size_k=128, orig_dtype="fp16",
                              logical_widths=[96, 32])
    assert np.array_equal(f64(grid), runs((A, 96), (B, 32)))


def test_tensorwise_is_tried_before_logical_widths():
    grid = convert_fp8_scales(np.array([A], np.float32), size_n=64, size_k=128, orig_dtype="fp16",
                              logical_widths=[64])
    assert np.array_equal(f64(grid), runs((A, 64)))


def test_logical_widths_of_another_length_fall_through_to_equal_shards():
    grid = convert_fp8_scales(np.array([A, B], np.float32), size_n=128, size_k=128, orig_dtype="fp16",
                              logical_widths=[32, 32, 64])
    assert np.array_equal(f64(grid), runs((A, 64), (B, 64)))


def test_ragged_n_block_truncates_the_last_block():
    # N = 200, bn = 128: two n-blocks, the second covers only 72 columns
    kn = np.array([[A, B], [C, D]], np.float32)
    grid = convert_fp8_scales(kn, size_n=200, size_k=256, orig_dtype="bf16", weight_block_size=[128, 128])
    assert np.array_equal(f64(grid), np.concatenate([runs((A, 128), (B, 72)), runs((C, 128), (D, 72))]))


def test_ragged_k_block_has_ceil_groups():
    grid = convert_fp8_scales(np.array([[A], [B]], np.float32), size_n=64, size_k=192, orig_dtype="bf16",
                              weight_block_size=[128, 128])
    assert np.array_equal(f64(grid), np.concatenate([runs((A, 64)), runs((B, 64))]))


# --- the cast to orig_dtype is round to nearest even (§6.1 item 10) ------------------------------------

@pytest.mark.parametrize("orig, value, want", [
    ("bf16", 1 + 2**-9, 1.0),                 # below half an ulp (2^-8)
    ("bf16", 1 + 2**-8, 1.0),                 # tie -> even
    ("bf16", 1 + 2**-8 + 2**-9, 1 + 2**-7),   # above the tie
    ("fp16", 1 + 2**-11, 1.0),                # tie -> even
    ("fp16", 1 + 3 * 2**-11, 1 + 2**-9),      # tie -> even (mantissa 2)
])
def test_scales_are_rounded_to_orig_dtype_first(orig, value, want):
    grid = convert_fp8_scales(np.array(value, np.float32), size_n=64, size_k=128, orig_dtype=orig)
    assert f64(grid)[0, 0] == want


def test_sixteen_bit_checkpoint_scales_are_recast():
    grid = convert_fp8_scales(np.array([1 + 2**-10], np.float16), size_n=64, size_k=128, orig_dtype="bf16")
    assert f64(grid)[0, 0] == 1.0 and grid.dtype == BF16


# --- helper equivalences ---------------------------------------------------------------------------------

def test_tensorwise_equals_channelwise_with_a_repeated_scale():
    s = np.array(B, np.float16)
    assert np.array_equal(tensorwise_scales(s, 64), channelwise_scales(np.repeat(s, 64), 64))


def test_equal_shards_equal_per_shard_widths():
    s = np.array([A, B, C, D], np.float16)
    assert np.array_equal(equal_shard_scales(s, 128), per_shard_scales(s, [32, 32, 32, 32]))


def test_one_block_spanning_n_equals_tensorwise():
    s = np.array([[C]], np.float16)
    assert np.array_equal(blockwise_scales(s, 128, 96), tensorwise_scales(s, 96))


# --- errors and purity -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(scale=np.ones(3, np.float32), size_n=64), "multiple of the scale's numel=3"),
    (dict(scale=np.ones(2, np.float32), size_n=64, logical_widths=[32, 16]), r"sum\(logical_widths\)=48"),
    (dict(scale=np.ones((2, 2), np.float32), size_n=64, weight_block_size=[128, 128]), "block scale"),
    (dict(scale=np.ones(1, np.float32), size_n=64, weight_block_size=[128]), "block_n, block_k"),
    (dict(scale=np.ones(0, np.float32), size_n=64), "empty"),
    (dict(scale=np.ones(1, np.float32), size_n=0), "size_n=0"),
])
def test_value_errors_name_the_rule(kwargs, match):
    kwargs = {"size_k": 128, "orig_dtype": "fp16", **kwargs}
    with pytest.raises(ValueError, match=match):
        convert_fp8_scales(kwargs.pop("scale"), **kwargs)


def test_float64_scales_are_rejected():
    with pytest.raises(TypeError, match="convert_fp8_scales: scale must have dtype"):
        convert_fp8_scales(np.ones(1), size_n=64, size_k=128, orig_dtype="fp16")


def test_float32_orig_dtype_is_rejected():
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        convert_fp8_scales(np.ones(1, np.float32), size_n=64, size_k=128, orig_dtype="float32")


def test_input_not_mutated():
    s = np.array([[A, B], [C, D]], np.float32)
    before = s.copy()
    convert_fp8_scales(s, size_n=192, size_k=256, orig_dtype="bf16", weight_block_size=[128, 128],
                       size_k_first=False)
    assert np.array_equal(s, before)


# --- MoE (§2.9 step 3) -----------------------------------------------------------------------------------

def test_moe_per_expert_tensorwise():
    grid = convert_fp8_moe_scales(np.array([A, B], np.float32), num_experts=2, size_n=64, size_k=128,
                                  orig_dtype="bf16")
    assert grid.shape == (2, 1, 64)
    assert np.array_equal(f64(grid), np.stack([runs((A, 64)), runs((B, 64))]))


def test_moe_per_expert_gate_up_shards():
    grid = convert_fp8_moe_scales(np.array([[A, B], [C, D]], np.float32), num_experts=2, size_n=128,
                                  size_k=128, orig_dtype="fp16")
    assert np.array_equal(f64(grid), np.stack([runs((A, 64), (B, 64)), runs((C, 64), (D, 64))]))


def test_moe_channelwise():
    s = np.ldexp(1.0, np.arange(128) % 16).reshape(2, 64).astype(np.float32)
    grid = convert_fp8_moe_scales(s, num_experts=2, size_n=64, size_k=128, orig_dtype="fp16")
    assert np.array_equal(f64(grid), f64(s)[:, None, :])


def test_moe_block_is_always_permuted_to_k_major():
    # the dense worked example, as one expert [E, ⌈N/bn⌉, ⌈K/bk⌉]: no size_k_first switch
    ckpt = np.array([[[A, B], [C, D]]], np.float32)
    grid = convert_fp8_moe_scales(ckpt, num_experts=1, size_n=192, size_k=256, orig_dtype="bf16",
                                  weight_block_size=[128, 128])
    assert np.array_equal(f64(grid[0]), np.concatenate([runs((A, 128), (C, 64)), runs((B, 128), (D, 64))]))


@pytest.mark.parametrize("numel", [1, 3, 6])
def test_moe_rejects_numel_that_is_not_experts_times_a_divisor(numel):
    with pytest.raises(ValueError, match="convert_fp8_moe_scales: per-shard scale"):
        convert_fp8_moe_scales(np.ones(numel, np.float32), num_experts=2, size_n=64, size_k=128,
                               orig_dtype="fp16")


# --- MXFP8 bytes -> intermediate float (§2.10 hazard) ---------------------------------------------------

ALL_BYTES = np.arange(256, dtype=np.uint8)
EXACT = np.array([math.ldexp(1.0, b - 127) for b in range(255)] + [math.nan])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", np.float32, BF16])
def test_mx_bytes_are_exact_in_float32_and_bfloat16(dtype):
    out = mxfp8_scales_to_float(ALL_BYTES, intermediate_dtype=dtype)
    assert np.array_equal(f64(out), EXACT, equal_nan=True)


def test_mx_float16_hazard():
    out = f64(mxfp8_scales_to_float(ALL_BYTES.view(ml_dtypes.float8_e8m0fnu), intermediate_dtype="float16"))
    assert out.dtype == np.float64 and (out[:103] == 0).all()           # below 2^-24: flushed to 0
    assert np.array_equal(out[103:143], EXACT[103:143])                   # 2^-24 .. 2^15 exact
    assert np.isposinf(out[143:255]).all() and np.isnan(out[255])        # above 2^15: inf


def test_mx_rejects_other_dtypes():
    with pytest.raises(TypeError, match="mxfp8_scales_to_float: scale_u8"):
        mxfp8_scales_to_float(ALL_BYTES.astype(np.int16), intermediate_dtype="float32")
    with pytest.raises(ValueError, match="intermediate_dtype='float64'"):
        mxfp8_scales_to_float(ALL_BYTES, intermediate_dtype="float64")
