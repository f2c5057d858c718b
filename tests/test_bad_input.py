"""The bad-input battery: every public function of marlin_ref and marlin_fast refuses invalid input cleanly.

The rule (docs/design.md, "Errors"): a wrong type or dtype is a TypeError, a wrong rank, shape, divisibility
or value range a ValueError, and the message starts with the function's name and names the argument
(`gptq_marlin_repack: size_n=96 must be a multiple of 64`). Never an assert, an IndexError, a NumPy-internal
error or a silent result; inputs are never mutated.

Each case is one change to a valid call: `VALID[fn]()` gives keyword arguments that work in both packages
(checked by test_valid_call_succeeds), and `bad(fn, exc, match, **changes)` replaces some of them. A case runs
on every package that has the function: marlin_ref with NumPy arrays, marlin_fast with the same arrays as
torch tensors (properties.seam.backends.torch_adapter). Both must raise `exc`, with a message that starts with the
function's name and matches `match`. Three families are generated for every valid call instead of being
written out: each array argument as a list (TypeError), each integer argument as a float (TypeError) and
each bool flag as the string "False" (TypeError). This file holds the cases of the formats, layouts, scale
transforms and padding helpers; test_bad_input_pipelines.py those of the prepare pipelines and the GEMM, and
test_bad_input_cli.py those of `python -m marlin_ref`.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from dataclasses import dataclass, field
from typing import Callable

import ml_dtypes
import numpy as np
import pytest

import marlin_ref
from properties.seam.backends import torch_adapter

try:
    fast = importlib.import_module("marlin_fast")
except ImportError:  # the oracle's cases still run without torch
    fast = None

E4M3, E8M0, BF16 = (np.dtype(d) for d in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e8m0fnu, ml_dtypes.bfloat16))
# the same contract under the fast path's name
FAST_NAMES = {"marlin_gemm_reference": "marlin_gemm", "marlin_moe_gemm_reference": "marlin_moe_gemm"}


def fp8(*shape):
    return np.zeros(shape, np.uint8).view(E4M3)


def u8(*shape, v=127):
    return np.full(shape, v, np.uint8)


def i32(*shape):
    return np.zeros(shape, np.int32)


def f16(*shape):
    return np.ones(shape, np.float16)


def bf16(*shape):
    return np.ones(shape, BF16)


def f32(*shape, v=1.0):
    return np.full(shape, v, np.float32)


def f64(*shape):
    return np.ones(shape, np.float64)


def big_endian(a):
    return a.astype(a.dtype.newbyteorder(">"))


# --- one valid call per public function (keyword arguments, NumPy inputs) --------------------------------

VALID: dict[str, Callable[[], dict]] = {
    "as_activation_dtype": lambda: dict(dtype="bf16"),
    "exponent_bias_of": lambda: dict(dtype="fp16"),
    "decode_e4m3": lambda: dict(codes=u8(4), nan_as=480.0),
    "encode_e4m3": lambda: dict(values=f32(4), saturate=False),
    "decode_e8m0": lambda: dict(codes=u8(4), kernel_faithful=False),
    "encode_e8m0": lambda: dict(values=f32(4)),
    "round_to_dtype": lambda: dict(x=f64(4), dtype="fp16"),
    "pack_fp8_to_int32": lambda: dict(fp8=fp8(16, 64), size_k_first=True),
    "unpack_fp8_from_int32": lambda: dict(packed=i32(4, 64), size_k_first=True),
    "gptq_marlin_repack": lambda: dict(b_q_weight=i32(4, 64), perm=None, size_k=16, size_n=64, num_bits=8),
    "gptq_marlin_repack_by_element": lambda: dict(b_q_weight=i32(4, 64), perm=None, size_k=16, size_n=64, num_bits=8),
    "gptq_marlin_unrepack": lambda: dict(marlin_q_weight=i32(1, 256), size_k=16, size_n=64, num_bits=8),
    "marlin_permute_scales": lambda: dict(s=f16(2, 64), size_k=256, size_n=64, group_size=128),
    "marlin_unpermute_scales": lambda: dict(s=f16(2, 64), size_k=256, size_n=64, group_size=128),
    "uses_grouped_scale_permutation": lambda: dict(size_k=256, group_size=128),
    "marlin_permute_bias": lambda: dict(bias=f16(64)),
    "marlin_unpermute_bias": lambda: dict(bias=f16(64)),
    "fp8_fused_exponent_bias_into_scales": lambda: dict(s=f16(1, 64)),
    "fp8_unfuse_exponent_bias_from_scales": lambda: dict(s=f16(1, 64)),
    "mxfp8_marlin_process_scales": lambda: dict(ms=f32(2, 64)),
    "mxfp8_marlin_unprocess_scales": lambda: dict(e8m0=u8(2, 64), dtype="float32"),
    "convert_fp8_scales": lambda: dict(scale=f32(64), size_n=64, size_k=128, orig_dtype="bf16", size_k_first=True),
    "convert_fp8_moe_scales": lambda: dict(scale=f32(2), num_experts=2, size_n=128, size_k=128, orig_dtype="bf16"),
    "mxfp8_scales_to_float": lambda: dict(scale_u8=u8(64, 4), intermediate_dtype="bfloat16"),
    "marlin_padded_nk": lambda: dict(size_n=64, size_k=128, group_size=-1),
    "marlin_moe_padded_intermediate": lambda: dict(size_n=96, group_size=-1),
    "marlin_pad_qweight": lambda: dict(qweight=i32(2, 3), size_n=3, size_k=8, padded_n=64, padded_k=128),
    "marlin_pad_scales": lambda: dict(scales=f16(2, 3), size_n=3, size_k=192, padded_n=64, padded_k=384,
                                      group_size=128),
    "marlin_pad_dim": lambda: dict(x=f16(2, 3), size=3, padded=5),
    "marlin_unpad_output": lambda: dict(output=f16(2, 5), size_n=3, padded_n=5),
    "marlin_repacked_nk": lambda: dict(qweight=i32(8, 512), num_bits=8),
    "prepare_fp8_layer_for_marlin": lambda: dict(weight=fp8(128, 64), weight_scale=f32(64), orig_dtype="bf16",
                                                 size_k_first=True),
    "prepare_fp8_moe_layer_for_marlin": lambda: dict(w13=fp8(2, 128, 128), w2=fp8(2, 128, 64), w13_scale=f32(2),
                                                     w2_scale=f32(2), orig_dtype="bf16"),
    "prepare_mxfp8_layer_for_marlin": lambda: dict(weight=fp8(64, 128), weight_scale=u8(64, 4)),
    "prepare_mxfp8_moe_layer_for_marlin": lambda: dict(w13=fp8(1, 128, 128), w2=fp8(1, 128, 64),
                                                       w13_scale=u8(1, 128, 4), w2_scale=u8(1, 128, 2)),
    "marlin_gemm_reference": lambda: dict(a=bf16(2, 128), b_q_weight=i32(8, 256), b_scales=bf16(1, 64), b_bias=None,
                                          size_n=64, size_k=128),
    "apply_fp8_marlin_linear": lambda: dict(input=bf16(2, 3, 100), weight=i32(8, 512), weight_scale=bf16(1, 128),
                                            size_n=96, size_k=100, bias=bf16(128)),
    "apply_mxfp8_marlin_linear": lambda: dict(input=bf16(2, 100), weight=i32(8, 512), weight_scale=u8(4, 128),
                                              size_n=96, size_k=100, bias=None),
    "dequantize_marlin_weight": lambda: dict(b_q_weight=i32(8, 256), b_scales=bf16(1, 64), size_k=128, size_n=64,
                                             dtype="bf16"),
    "gemm_math_reference": lambda: dict(x=f32(2, 128), weight_fp8_kn=fp8(128, 64), scales_logical_gn=f32(1, 64)),
    "marlin_gemm_error_bound": lambda: dict(a=f32(2, 128), w_eff=f32(128, 64), dtype="bf16"),
    "fp32_accumulator_may_overflow": lambda: dict(a=f32(2, 128), w_eff=f32(128, 64)),
    "one_hot_expected": lambda: dict(w_eff=f32(128, 64), dtype="bf16", hot=[0, 5]),
    "marlin_moe_gemm_reference": lambda: dict(a=bf16(2, 128), b_q_weight=i32(2, 8, 256), b_scales=bf16(2, 1, 64),
                                              b_bias=None, topk_ids=np.array([[0], [1]]), size_n=64, size_k=128,
                                              mul_topk_weights=False),
    "locate": lambda: dict(k=7, n=5, size_n=64, num_bits=8),
    "locate_scale": lambda: dict(n=5, grouped=True, mx=False),
    "show_tile": lambda: dict(num_bits=8, cell="fragment"),
}


@dataclass(frozen=True, eq=False)
class Bad:
    """One invalid call: VALID[fn]() with `changes` applied must raise `exc` with `match` in the message."""

    fn: str
    exc: type
    match: str                                  # a regex naming the argument (and often the rule or value)
    changes: dict = field(default_factory=dict)
    packages: tuple = ("ref", "fast")           # ("ref",) for inputs torch cannot even hold (byte order)

    def kwargs(self) -> dict:
        return {**VALID[self.fn](), **{k: np.copy(v) if isinstance(v, np.ndarray) else v
                                       for k, v in self.changes.items()}}

    def __str__(self):
        shown = ",".join(f"{k}={_short(v)}" for k, v in self.changes.items())
        return f"{self.fn}[{shown}]"


def _short(v) -> str:
    if isinstance(v, np.ndarray):
        return f"{v.dtype.str.lstrip('|<')}{list(v.shape)}"
    return repr(v)[:24]


def bad(fn: str, exc: type, match: str, **changes) -> Bad:
    return Bad(fn, exc, match, changes)


def ref_only(cases) -> list[Bad]:
    return [dataclasses.replace(c, packages=("ref",)) for c in cases]


def both(fns, exc, match, **changes) -> list[Bad]:
    """The same invalid change for a function and its inverse (or siblings with one signature)."""
    return [bad(fn, exc, match, **changes) for fn in fns]


PERMUTE_SCALES = ("marlin_permute_scales", "marlin_unpermute_scales")
PERMUTE_BIAS = ("marlin_permute_bias", "marlin_unpermute_bias")
FUSE = ("fp8_fused_exponent_bias_into_scales", "fp8_unfuse_exponent_bias_from_scales")
REPACK = ("gptq_marlin_repack", "gptq_marlin_repack_by_element")

CASES: list[Bad] = [
    # --- formats (§1) ---
    *[bad("as_activation_dtype", ValueError, "dtype", dtype=d) for d in ("int8", "float32", None, 3, "", "half")],
    bad("as_activation_dtype", ValueError, "dtype", dtype=np.float32),
    *[bad("exponent_bias_of", ValueError, "dtype", dtype=d) for d in ("float32", "e4m3", None, np.int8)],
    bad("decode_e4m3", TypeError, "codes", codes=f32(4)),
    bad("decode_e4m3", TypeError, "codes", codes=i32(4)),
    bad("decode_e4m3", TypeError, "codes", codes=u8(4).view(E8M0)),
    bad("decode_e4m3", TypeError, "nan_as", nan_as="x"),
    bad("decode_e4m3", TypeError, "nan_as", nan_as=[480.0]),
    bad("decode_e4m3", TypeError, "nan_as", nan_as=True),
    bad("encode_e4m3", TypeError, "values", values=np.ones(4, np.complex64)),
    bad("encode_e4m3", TypeError, "values", values=np.ones(4, bool)),
    bad("encode_e4m3", TypeError, "saturate", saturate=1),
    bad("encode_e4m3", TypeError, "saturate", saturate=None),
    bad("decode_e8m0", TypeError, "codes", codes=f32(4)),
    bad("decode_e8m0", TypeError, "codes", codes=fp8(4)),
    bad("decode_e8m0", TypeError, "kernel_faithful", kernel_faithful=0),
    bad("encode_e8m0", TypeError, "values", values=np.ones(4, bool)),
    bad("encode_e8m0", TypeError, "values", values=np.ones(4, np.complex128)),
    bad("round_to_dtype", TypeError, "x", x=np.ones(4, bool)),
    bad("round_to_dtype", TypeError, "x", x=np.ones(4, np.complex64)),
    bad("round_to_dtype", ValueError, "dtype", dtype="float32"),
    bad("round_to_dtype", ValueError, "dtype", dtype=None),
    # --- pack_fp8_to_int32 (§2.2) ---
    bad("pack_fp8_to_int32", TypeError, "fp8", fp8=i32(16, 64)),
    bad("pack_fp8_to_int32", TypeError, "fp8", fp8=f16(16, 64)),
    bad("pack_fp8_to_int32", ValueError, "fp8 must be 2-D", fp8=fp8(16)),
    bad("pack_fp8_to_int32", ValueError, "fp8 must be 2-D", fp8=fp8(2, 16, 64)),
    bad("pack_fp8_to_int32", ValueError, r"size_k=6 must be a multiple of 4 \(fp8", fp8=fp8(6, 64)),
    bad("pack_fp8_to_int32", ValueError, r"size_k=6 .*fp8 has shape \(64, 6\)", fp8=fp8(64, 6), size_k_first=False),
    bad("pack_fp8_to_int32", ValueError, "fp8 must not be empty", fp8=fp8(0, 64)),
    bad("pack_fp8_to_int32", TypeError, "size_k_first", size_k_first=1),
    bad("pack_fp8_to_int32", TypeError, "size_k_first", size_k_first=None),
    bad("unpack_fp8_from_int32", TypeError, "packed", packed=f32(4, 64)),
    bad("unpack_fp8_from_int32", TypeError, "packed", packed=u8(4, 64)),
    bad("unpack_fp8_from_int32", ValueError, "packed must be 2-D", packed=i32(4)),
    bad("unpack_fp8_from_int32", ValueError, "packed must not be empty", packed=i32(0, 64)),
    bad("unpack_fp8_from_int32", TypeError, "size_k_first", size_k_first="yes"),
    # --- gptq_marlin_repack (§2.3) ---
    *both(REPACK, ValueError, "size_n=96 must be a multiple of 64", b_q_weight=i32(4, 96), size_n=96),
    *both(REPACK, ValueError, "size_n=0 must be positive", size_n=0),
    *both(REPACK, ValueError, "size_k=8 must be a multiple of 16", b_q_weight=i32(2, 64), size_k=8),
    *both(REPACK, ValueError, "size_k=-16 must be positive", size_k=-16),
    *both(REPACK, ValueError, r"num_bits=16 must be one of \[4, 8\]", num_bits=16),
    *both(REPACK, TypeError, "num_bits", num_bits=None),
    *both(REPACK, TypeError, "size_k", size_k=True),
    *both(REPACK, TypeError, "b_q_weight", b_q_weight=f32(4, 64)),
    *both(REPACK, TypeError, "b_q_weight", b_q_weight=np.zeros((4, 64), np.uint32)),
    *both(REPACK, ValueError, r"b_q_weight must have shape \(4, 64\)", b_q_weight=i32(4, 128)),
    *both(REPACK, ValueError, r"b_q_weight must have shape \(2, 64\)", num_bits=4),
    *both(REPACK, ValueError, "b_q_weight", b_q_weight=i32(256)),
    *both(REPACK, ValueError, "perm must have length size_k=16", perm=np.arange(8)),
    *both(REPACK, ValueError, "perm must be a permutation", perm=np.zeros(16, np.int64)),
    *both(REPACK, ValueError, "perm must be a permutation", perm=np.arange(1, 17)),
    *both(REPACK, ValueError, "perm must be a permutation", perm=np.arange(-1, 15)),
    *both(REPACK, TypeError, "perm must have an integer dtype", perm=np.arange(16, dtype=np.float32)),
    *both(REPACK, TypeError, "perm must have an integer dtype", perm=np.ones(16, bool)),
    *both(REPACK, ValueError, "perm must be 1-D", perm=np.arange(16).reshape(4, 4)),
    bad("gptq_marlin_unrepack", TypeError, "marlin_q_weight", marlin_q_weight=f32(1, 256)),
    bad("gptq_marlin_unrepack", ValueError, r"marlin_q_weight must have shape \(1, 256\)", marlin_q_weight=i32(1, 255)),
    bad("gptq_marlin_unrepack", ValueError, "marlin_q_weight", marlin_q_weight=i32(256)),
    bad("gptq_marlin_unrepack", ValueError, r"marlin_q_weight must have shape \(1, 128\)", num_bits=4),
    bad("gptq_marlin_unrepack", ValueError, "size_n=32 must be a multiple of 64", size_n=32),
    bad("gptq_marlin_unrepack", ValueError, "size_k=-16", size_k=-16),
    bad("gptq_marlin_unrepack", ValueError, "num_bits=2", num_bits=2),
    bad("gptq_marlin_unrepack", TypeError, "num_bits", num_bits="8"),
    # --- marlin_permute_scales (§2.4) ---
    *both(PERMUTE_SCALES, ValueError, r"group_size=16 must be one of \[-1, 32, 64, 128\]", group_size=16),
    *both(PERMUTE_SCALES, ValueError, "group_size=0", group_size=0),
    *both(PERMUTE_SCALES, ValueError, r"group_size=512 must be one of .*or equal size_k=1024", size_k=1024,
          group_size=512),
    *both(PERMUTE_SCALES, ValueError, r"G\*group_size == size_k.*G=2, group_size=256", group_size=256),
    *both(PERMUTE_SCALES, TypeError, "group_size", group_size=None),
    *both(PERMUTE_SCALES, ValueError, "size_k=0 must be positive", size_k=0),
    *both(PERMUTE_SCALES, ValueError, "must equal size_k=255", size_k=255),
    *both(PERMUTE_SCALES, ValueError, "size_n=128", size_n=128),
    *both(PERMUTE_SCALES, ValueError, "size_n=0", size_n=0),
    *both(PERMUTE_SCALES, ValueError, "size_n=32 must be a multiple of 64", s=f16(2, 32), size_n=32),
    *both(PERMUTE_SCALES, ValueError, "size_n=48 must be a multiple of 32", s=f16(1, 48), size_n=48, group_size=-1),
    *both(PERMUTE_SCALES, ValueError, "s must be 2-D", s=f16(64)),
    *both(PERMUTE_SCALES, ValueError, "s must be 2-D", s=f16(2, 2, 64)),
    *both(PERMUTE_SCALES, ValueError, "G=3", s=f16(3, 64)),
    *both(PERMUTE_SCALES, ValueError, r"group_size=-1 \(channel-wise\) needs s with 1 row", group_size=-1),
    *[bad("uses_grouped_scale_permutation", ValueError, f"group_size={g}", group_size=g) for g in (16, 0, -2, 512)],
    *[bad("uses_grouped_scale_permutation", ValueError, f"size_k={k} must be positive", size_k=k) for k in (0, -5)],
    bad("uses_grouped_scale_permutation", TypeError, "group_size", group_size="128"),
    # --- marlin_permute_bias (§2.5), exponent bias (§2.6) ---
    *both(PERMUTE_BIAS, ValueError, "bias.*=48 must be a multiple of 32", bias=f16(48)),
    *both(PERMUTE_BIAS, ValueError, "bias.*=24 must be a multiple of 32", bias=f16(3, 8)),
    *both(PERMUTE_BIAS, ValueError, "bias", bias=np.array(1.0, np.float16)),
    *both(PERMUTE_BIAS, ValueError, "bias must not be empty", bias=f16(0)),
    *both(FUSE, TypeError, "s must", s=f32(4)),
    *both(FUSE, TypeError, "s must", s=f64(4)),
    *both(FUSE, TypeError, "s must", s=i32(4)),
    *both(FUSE, TypeError, "s must", s=u8(4).view(E8M0)),
    # --- mxfp8_marlin_process_scales (§2.7) ---
    bad("mxfp8_marlin_process_scales", ValueError, "ms must be 2-D", ms=f32(64)),
    bad("mxfp8_marlin_process_scales", ValueError, "ms must be 2-D", ms=f32(2, 2, 64)),
    bad("mxfp8_marlin_process_scales", ValueError, r"size_n=32 must be a multiple of 64 \(ms has shape", ms=f32(2, 32)),
    bad("mxfp8_marlin_process_scales", ValueError, "ms must not be empty", ms=f32(0, 64)),
    bad("mxfp8_marlin_process_scales", ValueError, "ms must hold exact powers of two", ms=f32(1, 64, v=3.0)),
    bad("mxfp8_marlin_process_scales", ValueError, "ms must hold exact powers of two", ms=f32(1, 64, v=-2.0)),
    bad("mxfp8_marlin_process_scales", ValueError, "ms must hold exact powers of two", ms=f32(1, 64, v=-np.inf)),
    bad("mxfp8_marlin_process_scales", ValueError, "ms must hold exact powers of two", ms=f64(1, 64) * 2.0**-130),
    bad("mxfp8_marlin_process_scales", ValueError, "ms must hold exact powers of two", ms=f64(1, 64) * 2.0**128),
    bad("mxfp8_marlin_process_scales", TypeError, "ms must have dtype", ms=i32(2, 64)),
    bad("mxfp8_marlin_process_scales", TypeError, "ms must have dtype", ms=u8(2, 64)),
    bad("mxfp8_marlin_unprocess_scales", TypeError, "e8m0 must have dtype", e8m0=f32(2, 64)),
    bad("mxfp8_marlin_unprocess_scales", ValueError, "e8m0 must be 2-D", e8m0=u8(64)),
    bad("mxfp8_marlin_unprocess_scales", ValueError, r"size_n=32 .*e8m0 has shape", e8m0=u8(2, 32)),
    bad("mxfp8_marlin_unprocess_scales", ValueError, "e8m0 must not be empty", e8m0=u8(0, 64)),
    *[bad("mxfp8_marlin_unprocess_scales", ValueError, "dtype", dtype=d) for d in ("int8", None, 3, "float8")],
    # --- scale schemes (§2.8 step 4, §2.9 step 3, §2.10) ---
    bad("convert_fp8_scales", TypeError, "scale must have dtype", scale=f64(64)),
    bad("convert_fp8_scales", TypeError, "scale must have dtype", scale=i32(64)),
    bad("convert_fp8_scales", TypeError, "scale must have dtype", scale=u8(64)),
    bad("convert_fp8_scales", ValueError, "scale must not be empty", scale=f32(0)),
    bad("convert_fp8_scales", ValueError, "size_n=64 must be a multiple of .*numel.*3", scale=f32(3)),
    bad("convert_fp8_scales", ValueError, "size_n=64 must be a multiple of .*numel.*128", scale=f32(128)),
    bad("convert_fp8_scales", ValueError, "size_n=0", size_n=0),
    bad("convert_fp8_scales", ValueError, "size_k=-1", size_k=-1),
    *[bad("convert_fp8_scales", ValueError, "orig_dtype", orig_dtype=d) for d in ("float32", None, "int8")],
    bad("convert_fp8_scales", ValueError, r"weight_block_size must be \[block_n, block_k\]", weight_block_size=[128]),
    bad("convert_fp8_scales", ValueError, r"weight_block_size must be \[block_n, block_k\]", weight_block_size=128),
    bad("convert_fp8_scales", ValueError, r"weight_block_size must be \[block_n, block_k\]", weight_block_size="128"),
    bad("convert_fp8_scales", ValueError, "block_k=0 must be positive", weight_block_size=[128, 0]),
    bad("convert_fp8_scales", ValueError, "block_n=-128 must be positive", weight_block_size=[-128, 128]),
    bad("convert_fp8_scales", ValueError, r"scale .*\(1, 1\)", scale=f32(2, 2), weight_block_size=[128, 128]),
    bad("convert_fp8_scales", ValueError, r"scale (must be 2-D|.*\(1, 1\))", scale=f32(64),
        weight_block_size=[128, 128]),
    bad("convert_fp8_scales", ValueError, r"scale .*\(1, 2\)", scale=f32(1, 1), weight_block_size=[128, 64],
        size_k_first=False),
    bad("convert_fp8_scales", ValueError, r"sum\(logical_widths\)=48 must equal size_n=64", scale=f32(2),
        logical_widths=[32, 16]),
    bad("convert_fp8_scales", ValueError, r"logical_widths\[1\]=0 must be positive", scale=f32(2),
        logical_widths=[64, 0]),
    bad("convert_fp8_scales", TypeError, "logical_widths", scale=f32(2), logical_widths=32),
    bad("convert_fp8_scales", TypeError, "logical_widths", scale=f32(2), logical_widths="ab"),
    bad("convert_fp8_scales", TypeError, r"logical_widths\[0\]", scale=f32(2), logical_widths=[32.0, 32.0]),
    bad("convert_fp8_scales", TypeError, "size_k_first", size_k_first=None),
    bad("convert_fp8_moe_scales", ValueError, "num_experts=0 must be positive", num_experts=0),
    bad("convert_fp8_moe_scales", TypeError, "num_experts", num_experts=None),
    bad("convert_fp8_moe_scales", ValueError, "scale numel=3|scale.numel\\(\\)=3", scale=f32(3)),
    bad("convert_fp8_moe_scales", ValueError, "numel.*258", scale=f32(258)),
    bad("convert_fp8_moe_scales", TypeError, "scale must have dtype", scale=f64(2)),
    bad("convert_fp8_moe_scales", ValueError, "scale must not be empty", scale=f32(0)),
    bad("convert_fp8_moe_scales", ValueError, "orig_dtype", orig_dtype="fp8"),
    bad("convert_fp8_moe_scales", ValueError, r"scale .*\(2, 1, 1\)", scale=f32(2, 1, 2), weight_block_size=[128, 128]),
    bad("convert_fp8_moe_scales", ValueError, "weight_block_size", weight_block_size=[128, 128, 128]),
    bad("convert_fp8_moe_scales", ValueError, "size_n=0", size_n=0),
    bad("convert_fp8_moe_scales", ValueError, "size_k=-1", size_k=-1),
    bad("mxfp8_scales_to_float", TypeError, "scale_u8", scale_u8=f32(4)),
    bad("mxfp8_scales_to_float", TypeError, "scale_u8", scale_u8=i32(4)),
    bad("mxfp8_scales_to_float", TypeError, "scale_u8", scale_u8=fp8(4)),
    *[bad("mxfp8_scales_to_float", ValueError, "intermediate_dtype", intermediate_dtype=d)
      for d in ("int8", "float64", None, 3)],
    # --- padding (§2.11) ---
    *[bad("marlin_padded_nk", ValueError, f"{k}={v}", **{k: v}) for k, v in
      (("size_n", 0), ("size_k", 0), ("size_n", -64), ("group_size", 0), ("group_size", -2))],
    bad("marlin_padded_nk", TypeError, "group_size", group_size=None),
    *[bad("marlin_moe_padded_intermediate", ValueError, f"{k}={v}", **{k: v}) for k, v in
      (("size_n", 0), ("group_size", 0), ("group_size", -3))],
    bad("marlin_pad_qweight", TypeError, "qweight must have dtype", qweight=f32(2, 3)),
    bad("marlin_pad_qweight", ValueError, "qweight must be 2-D", qweight=i32(6)),
    bad("marlin_pad_qweight", ValueError, r"qweight.*\(2, 4\)", qweight=i32(2, 4)),
    bad("marlin_pad_qweight", ValueError, r"qweight.*\(0, 3\)", qweight=i32(0, 3)),
    bad("marlin_pad_qweight", ValueError, r"qweight.*size_k=9", size_k=9),
    bad("marlin_pad_qweight", ValueError, "padded_n=2 must be >= size_n=3", padded_n=2),
    bad("marlin_pad_qweight", ValueError, "padded_k=4 must be >= size_k=8", padded_k=4),
    bad("marlin_pad_qweight", ValueError, "padded_k=130", padded_k=130),
    bad("marlin_pad_qweight", ValueError, "size_n=0", size_n=0),
    bad("marlin_pad_scales", ValueError, r"scales must have one row per group.*G=1, fewer than 2", scales=f16(1, 3)),
    bad("marlin_pad_scales", ValueError, r"scales must have one row per group.*G=3, more than 2", scales=f16(3, 3)),
    bad("marlin_pad_scales", ValueError, "scales must have one row per group.*G=2, more than 1", group_size=-1),
    bad("marlin_pad_scales", ValueError, r"scales must .*\(3,\)", scales=f16(3)),
    bad("marlin_pad_scales", ValueError, r"scales must .*size_n=3.*\(2, 4\)", scales=f16(2, 4)),
    bad("marlin_pad_scales", ValueError, "padded_k=320 must be a multiple of group_size=128", padded_k=320),
    bad("marlin_pad_scales", ValueError, "padded_k=128 must be >= size_k=192", padded_k=128),
    bad("marlin_pad_scales", ValueError, "padded_n=2 must be >= size_n=3", padded_n=2),
    bad("marlin_pad_scales", ValueError, "group_size=0", group_size=0),
    bad("marlin_pad_scales", ValueError, "size_k=0", size_k=0),
    bad("marlin_pad_dim", ValueError, r"x.*size=3", x=np.array(1.0, np.float16)),
    bad("marlin_pad_dim", ValueError, r"x.*size=3", x=f16(2, 4)),
    bad("marlin_pad_dim", ValueError, "padded=2 must be >= size=3", padded=2),
    bad("marlin_pad_dim", ValueError, "size=0", x=f16(2, 0), size=0),
    bad("marlin_unpad_output", ValueError, "output.*padded_n=5", output=f16(2, 4)),
    bad("marlin_unpad_output", ValueError, "output.*padded_n=5", output=np.array(1.0, np.float16)),
    bad("marlin_unpad_output", ValueError, "padded_n=2 must be >= size_n=3", padded_n=2),
    bad("marlin_unpad_output", ValueError, "size_n=0", size_n=0),
    bad("marlin_repacked_nk", ValueError, "qweight must be at least 2-D", qweight=i32(512)),
    bad("marlin_repacked_nk", ValueError, "num_bits=3", num_bits=3),
    bad("marlin_repacked_nk", ValueError, "qweight columns=3", qweight=i32(8, 3)),
    bad("marlin_repacked_nk", TypeError, "qweight must have dtype", qweight=f32(8, 512)),
    # --- layout (§2.3.1, §2.14) ---
    bad("locate", ValueError, "k=-1 must be >= 0", k=-1),
    bad("locate", ValueError, r"n=64 must be in \[0, size_n=64\)", n=64),
    bad("locate", ValueError, r"n=-1 must be in \[0, size_n=64\)", n=-1),
    bad("locate", ValueError, "size_n=96 must be a multiple of 64", size_n=96),
    bad("locate", ValueError, "size_n=0 must be positive", size_n=0),
    bad("locate", ValueError, r"num_bits=16 must be one of \[4, 8\]", num_bits=16),
    bad("locate", TypeError, "num_bits", num_bits=True),
    bad("locate_scale", ValueError, "n=-1 must be >= 0", n=-1),
    bad("locate_scale", TypeError, "grouped must be a bool", grouped="yes"),
    bad("locate_scale", TypeError, "grouped must be a bool", grouped=None),
    bad("locate_scale", ValueError, "mx=True requires grouped=True", grouped=False, mx=True),
    bad("show_tile", ValueError, r"num_bits=3 must be one of \[4, 8\]", num_bits=3),
    bad("show_tile", ValueError, "cell='bytes' must be 'fragment' or 'storage'", cell="bytes"),
    bad("show_tile", ValueError, r"k=16 must be in \[0, 16\)", k_rows=(16,)),
    bad("show_tile", ValueError, r"k=-1 must be in \[0, 16\)", k_rows=(-1,)),
    bad("show_tile", ValueError, r"n=64 must be in \[0, 64\)", n_cols=(64,)),
    bad("show_tile", ValueError, r"n=-1 must be in \[0, 64\)", n_cols=(-1,)),
    bad("show_tile", ValueError, "k_rows must not be empty", k_rows=()),
    bad("show_tile", TypeError, "k must be an integer", k_rows=(1.5,)),
    bad("show_tile", TypeError, "k_rows must be a sequence", k_rows=5),
    bad("show_tile", TypeError, "n_cols must be a sequence", n_cols="0"),
]

# NumPy-only inputs (torch has no byte order and no string dtype): marlin_fast never sees them
REF_ONLY: list[Bad] = ref_only([
    bad("unpack_fp8_from_int32", TypeError, r"packed must have native byte order, got big-endian int32 \(>i4\)",
        packed=big_endian(i32(4, 64))),
    *both(REPACK, TypeError, r"b_q_weight must have native byte order, got big-endian int32 \(>i4\)",
          b_q_weight=big_endian(i32(4, 64))),
    bad("gptq_marlin_unrepack", TypeError, "marlin_q_weight must have native byte order.*big-endian",
        marlin_q_weight=big_endian(i32(1, 256))),
    bad("encode_e4m3", TypeError, "values must be real numbers", values=np.array(["a"])),
    bad("round_to_dtype", TypeError, "x must be real numbers.*>f8", x=big_endian(f64(4))),
    bad("marlin_repacked_nk", TypeError, "qweight must have native byte order", qweight=big_endian(i32(8, 512))),
])


# --- generated families: every array as a list, every integer as a float, every flag as a string --------

def generated(valid: dict) -> list[Bad]:
    cases = []
    for fn, make in valid.items():
        for name, value in make().items():
            if isinstance(value, np.ndarray):
                cases.append(bad(fn, TypeError, rf"\b{name}\b", **{name: value.tolist()}))
            elif isinstance(value, bool):
                cases.append(bad(fn, TypeError, rf"{name} must be a bool, got 'False'", **{name: "False"}))
            elif isinstance(value, int):
                cases.append(bad(fn, TypeError, rf"\b{name}\b.* must be an integer", **{name: value + 0.5}))
    return [c for c in cases if (c.fn, *c.changes) != ("one_hot_expected", "hot")]  # any int sequence is a valid hot


ALL_CASES = CASES + REF_ONLY + generated(VALID)


# --- the harness (test_bad_input_pipelines.py uses it too) ----------------------------------------------

def _callable(package: str, fn: str):
    """The function under test, NumPy in and out (None where the package lacks it), and its name there."""
    if package == "ref":
        return getattr(marlin_ref, fn, None), fn
    name = FAST_NAMES.get(fn, fn)
    function = getattr(fast, name, None) if fast is not None else None
    return (None if function is None else torch_adapter(function)), name


def _exists(package: str, fn: str) -> bool:
    if package == "ref":
        return hasattr(marlin_ref, fn)
    return fast is None or hasattr(fast, FAST_NAMES.get(fn, fn))   # without torch: reported as a skip


def params(cases: list[Bad]) -> list:
    """(package, case) for every package that has the case's function."""
    return [pytest.param(p, case, id=f"{p}-{case}") for case in cases for p in case.packages if _exists(p, case.fn)]


def _snapshot(kwargs: dict) -> dict:
    return {k: (v.dtype, v.shape, v.tobytes()) for k, v in kwargs.items() if isinstance(v, np.ndarray)}


# "w must have shape (4, 64) ([size_k/16, 16·size_n/pf]), got (4, 128)": the numbers alone do not say which rule
SHAPE_WITHOUT_RULE = re.compile(r"must have shape \([0-9, ]*\), got")


def assert_rejects(package: str, case: Bad) -> None:
    """The call raises case.exc, its message starts with the function's name and matches case.match, and no
    input changed."""
    function, name = _callable(package, case.fn)
    if function is None:
        pytest.skip("marlin_fast (torch) is not importable")
    kwargs = case.kwargs()
    before = _snapshot(kwargs)
    with pytest.raises(case.exc) as info:
        function(**kwargs)
    message = str(info.value)
    assert message.startswith(f"{name}: "), f"the message must start with the function's name: {message!r}"
    assert re.search(case.match, message), f"{case.match!r} not in {message!r}"
    assert not SHAPE_WITHOUT_RULE.search(message), f"a shape refusal must state the shape's rule: {message!r}"
    assert _snapshot(kwargs) == before, "an input was mutated"


@pytest.mark.parametrize("package, case", params(ALL_CASES))
def test_rejects_invalid_input(package, case):
    assert_rejects(package, case)


@pytest.mark.parametrize("package, fn", [(p, fn) for fn in VALID for p in ("ref", "fast") if _exists(p, fn)])
def test_valid_call_succeeds(package, fn):
    # Every case is one change away from this call, so it fails for the reason it names.
    function, _ = _callable(package, fn)
    if function is None:
        pytest.skip("marlin_fast (torch) is not importable")
    function(**VALID[fn]())


def _public_functions(module) -> set[str]:
    return {n for n in module.__all__ if inspect.isfunction(getattr(module, n))}


def test_every_public_function_has_cases():
    # Adding a public function to either package's __all__ without battery cases fails here.
    from test_bad_input_pipelines import PIPELINE_CASES   # that module imports this one: import it late

    cases = ALL_CASES + PIPELINE_CASES
    assert _public_functions(marlin_ref) - {c.fn for c in cases if "ref" in c.packages} == set()
    if fast is not None:
        covered = {FAST_NAMES.get(c.fn, c.fn) for c in cases if "fast" in c.packages}
        assert _public_functions(fast) - covered == set()
