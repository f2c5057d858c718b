"""The mutants of the GEMM (§3.1, §3.2, §2.5) and of the linear layer on a prepared layer (§2.11, §2.13).

Registered in properties.strength.mutants.MUTANTS like the layout and pipeline mutants (that module imports this one).
"""

from __future__ import annotations

import numpy as np

from marlin_ref.formats import (BF16, E4M3_NAN_CODE, E8M0, E8M0_NAN_CODE, KERNEL_E4M3_NAN_VALUE, decode_e4m3,
                                exponent_bias_of, round_to_dtype)
from marlin_ref.layout import MX_BLOCK, SINGLE_PERM_CHUNK
from marlin_ref.marlin_gemm import ieee_matmul
from marlin_ref.padding import marlin_repacked_nk
from properties.seam.backends import Backend
from properties.strength import mutations as mu
from properties.strength.mutants import _before, _bind, _mutant, _named, _unbias

# --- the GEMM (§3.1, §3.2, §2.5) ---------------------------------------------------------------------
# Each replaces marlin_gemm of the wrapped backend, whose GEMM still computes everything the bug leaves
# alone (so `mutant:<name>@cuda` breaks the CUDA kernel's result): inputs rewritten before the call, or
# the bug's difference applied to the base's output in float64 and rounded as the kernel rounds.

GEMM = ("marlin_gemm",)
_GEMM_SMALLEST = {"size_k": 128, "size_n": 64}          # (K, N) = (128, 64): the smallest kernel shape (§4.2)


def _gemm_scheme(args) -> str | None:
    """"channel", "group128" or "mx", as the kernel reads b_scales (§4.1); None if it is not a 2-D array."""
    s = args["b_scales"]
    if not isinstance(s, np.ndarray) or s.ndim != 2:
        return None
    if s.dtype in (np.dtype(np.uint8), E8M0):
        return "mx"
    return "channel" if s.shape[0] == 1 else "group128"


def _gemm_weight(args) -> np.ndarray:
    """u = dec(W) [K, N] float64 of a (valid) Marlin weight, NaN codes as ±480 (§3.1)."""
    return decode_e4m3(mu.decode(args["b_q_weight"]), nan_as=KERNEL_E4M3_NAN_VALUE)


def _gemm_groups(args, values: np.ndarray) -> np.ndarray:
    """A logical [G, N] grid repeated over the K/G rows of k of each group: [K, N]."""
    return np.repeat(values, args["size_k"] // values.shape[0], axis=0)


def _gemm_after(base: Backend, fix):
    """marlin_gemm of the base without the bias, fix(out as float64, args) -> float64, rounded to the
    dtype, then the logical bias added in the dtype: RT(RT(acc) + b) as the kernel does (§3.2)."""
    def call(*a, **kw):
        args = _bind("marlin_gemm", a, kw)
        if args is None:
            return base.op("marlin_gemm")(*a, **kw)
        out = base.op("marlin_gemm")(**{**args, "b_bias": None})       # the base validates the inputs
        with np.errstate(invalid="ignore", over="ignore"):
            value = round_to_dtype(fix(out.astype(np.float64), args), out.dtype)
            if args["b_bias"] is not None:
                bias = mu.unpermute_chunks(args["b_bias"], mu.scale_order(False)).astype(np.float64)
                value = round_to_dtype(value + bias, out.dtype)
        return value.astype(out.dtype)
    return _named("marlin_gemm", call)


@_mutant("gemm_bias_logical_order", "marlin_gemm gets the bias in logical order (un-permuted before the call)",
         "§2.5, §3.2, §6.1 item 14", "sglang PR #35020 (b_bias order mismatch between the prep and the kernel)",
         GEMM, {"marlin_gemm": {**_GEMM_SMALLEST, "bias": True}})
def _gemm_bias_logical(base):
    def change(args):
        b = args["b_bias"]
        if isinstance(b, np.ndarray) and b.ndim == 1 and b.size % SINGLE_PERM_CHUNK == 0:
            b = mu.unpermute_chunks(b, mu.scale_order(False))
        return {**args, "b_bias": b}
    return {"marlin_gemm": _before(base, "marlin_gemm", change)}


@_mutant("gemm_exponent_bias_missing", "channel-wise path: the fused scale's 2^β cancelled (out 2^-β too small)",
         "§2.6, §3.2 (A), §6.1 item 9", "cf. vLLM PR #18026 (2^β not fused in the MoE prep); here the GEMM lacks it",
         GEMM, {"marlin_gemm": {**_GEMM_SMALLEST, "scheme": "channel"}})
def _gemm_beta_missing(base):
    def change(args):
        s = args["b_scales"]
        return {**args, "b_scales": _unbias(s)} if _gemm_scheme(args) == "channel" else args
    return {"marlin_gemm": _before(base, "marlin_gemm", change)}


@_mutant("gemm_exponent_bias_twice", "channel-wise path: 2^β applied twice (out 2^β too large)",
         "§2.6, §3.2 (A), §6.1 item 9", "§6.1 item 9 ('applied exactly once'): non-skip dequant on fused scales",
         GEMM, {"marlin_gemm": {**_GEMM_SMALLEST, "scheme": "channel"}})
def _gemm_beta_twice(base):
    def fix(out, args):
        if _gemm_scheme(args) != "channel":
            return out
        return np.ldexp(out, exponent_bias_of(args["a"].dtype))
    return {"marlin_gemm": _gemm_after(base, fix)}


@_mutant("gemm_group_scale_after_mma", "group-128 scales applied to the fp32 accumulator, B = u (no RT(u·S_g))",
         "§3.2 (B), §3.7", "natural mistake: the channel-wise order used for groups (§3.7: the two paths differ)",
         GEMM, {"marlin_gemm": {"scheme": "group128", "size_k": 256, "size_n": 64}})
def _gemm_group_after(base):
    def fix(out, args):
        if _gemm_scheme(args) != "group128":
            return out
        dtype = args["a"].dtype
        k, s = args["size_k"], args["b_scales"]
        logical = mu.to_logical(s, k, k // s.shape[0]).astype(np.float64) * 2.0 ** -exponent_bias_of(dtype)
        w = _gemm_weight(args) * _gemm_groups(args, logical)                            # u·S_g, unrounded
        with np.errstate(invalid="ignore"):
            return out + ieee_matmul(args["a"].astype(np.float64), w - round_to_dtype(w, dtype))
    return {"marlin_gemm": _gemm_after(base, fix)}


@_mutant("gemm_e8m0_value_decode", "MXFP8 scales decoded by value: byte 0 -> 2^-127 (not 0), 255 -> NaN (not +inf)",
         "§3.1, §3.4, §1", "natural mistake: torch's float8_e8m0fnu cast instead of the kernel's bit trick",
         GEMM, {"marlin_gemm": {**_GEMM_SMALLEST, "scheme": "mx"}})
def _gemm_e8m0_value(base):
    def fix(out, args):
        if _gemm_scheme(args) != "mx":
            return out
        k, s = args["size_k"], args["b_scales"]
        codes = _gemm_groups(args, mu.to_logical(s.view(np.uint8), k, MX_BLOCK, mx=True))    # [K, N] bytes
        u = _gemm_weight(args)
        tiny = np.where(codes == 0, round_to_dtype(u * 2.0 ** -127, BF16), 0.0)          # what byte 0 adds
        with np.errstate(invalid="ignore"):
            out = out + ieee_matmul(args["a"].astype(np.float64), tiny)
        return np.where((codes == E8M0_NAN_CODE).any(axis=0), np.nan, out)            # x·NaN is NaN for every x
    return {"marlin_gemm": _gemm_after(base, fix)}


@_mutant("gemm_nan_codes_propagate", "e4m3 NaN codes (0x7F/0xFF) propagate as NaN instead of reading as ±480",
         "§3.1, §3.4", "natural mistake: a value-based fp8 dequant (torch's cast) instead of the bit trick",
         GEMM, {"marlin_gemm": {**_GEMM_SMALLEST, "scheme": "channel"}})
def _gemm_nan_codes(base):
    def fix(out, args):
        codes = mu.decode(args["b_q_weight"])
        return np.where(((codes & 0x7F) == E4M3_NAN_CODE).any(axis=0), np.nan, out)   # x·NaN is NaN for every x
    return {"marlin_gemm": _gemm_after(base, fix)}


# --- bugs of a kernel's tiling: only at model shapes, so only the GPU tier's model-shape laws can see them ----------

LARGE_K, ONE_M_BLOCK = 4096, 64


@_mutant("gemm_drops_last_k_tile_at_large_k", "at K >= 4096 (many k-tiles per thread block) the last 16-row k-tile "
         "is never accumulated", "§3.3, §4.2", "a stripe/split-K bound off by one tile (the kind of bug vLLM's "
         "stream-K rewrite risked)", GEMM, gpu_only=True)
def _gemm_drops_last_k_tile(base):
    def change(args):
        if args["size_k"] < LARGE_K or not isinstance(args["a"], np.ndarray):
            return args
        a = args["a"].copy()
        a[:, -16:] = 0                                      # the last k-tile contributes nothing
        return {**args, "a": a}
    return {"marlin_gemm": _before(base, "marlin_gemm", change)}


@_mutant("gemm_rows_beyond_64_shifted", "for M > 64 the rows after the first 64-row block are written one row "
         "late (row 64 + r gets row 63 + r)", "§4.2", "an m-block offset off by one in a kernel's second "
         "thread_m_blocks configuration", GEMM, gpu_only=True)
def _gemm_rows_shifted(base):
    def call(*a, **kw):
        out = base.op("marlin_gemm")(*a, **kw)
        if out.shape[0] <= ONE_M_BLOCK:
            return out
        shifted = out.copy()
        shifted[ONE_M_BLOCK:] = out[ONE_M_BLOCK - 1:-1]
        return shifted
    return {"marlin_gemm": _named("marlin_gemm", call)}


# --- the linear layer (§2.13): the backend's apply_fp8_marlin_linear, one step wrong --------------------------

LINEAR = ("apply_fp8_marlin_linear",)


@_mutant("linear_bias_added_after_in_logical_order", "the linear layer runs the GEMM without its bias and adds "
         "the prepared bias, which is in kernel order, to the output in logical order",
         "§2.5, §2.13, §6.1 item 14", "sglang PR #35020 (the FP8 Marlin bias permuted for the kernel, then added "
         "after the GEMM)", LINEAR, {"apply_fp8_marlin_linear": {"bias": True}})
def _linear_bias_after(base):
    def call(input, weight, weight_scale, *, size_n, size_k, bias=None):
        y = base.op("apply_fp8_marlin_linear")(input, weight, weight_scale, size_n=size_n, size_k=size_k)
        if bias is None:
            return y
        with np.errstate(over="ignore", invalid="ignore"):
            return round_to_dtype(y.astype(np.float64) + bias[:size_n].astype(np.float64), y.dtype).astype(y.dtype)
    return {"apply_fp8_marlin_linear": _named("apply_fp8_marlin_linear", call)}


@_mutant("linear_wrong_n_slice", "the linear layer keeps the last size_n output columns of the padded GEMM "
         "instead of the first", "§2.11, §2.13", "the N slice of vLLM's apply_*_marlin_linear (marlin_unpad_output) "
         "taken from the wrong end", LINEAR, {"apply_fp8_marlin_linear": {"size_n": 48}})
def _linear_wrong_slice(base):
    def call(input, weight, weight_scale, *, size_n, size_k, bias=None):
        padded_n, _ = marlin_repacked_nk(weight, 8)
        y = base.op("apply_fp8_marlin_linear")(input, weight, weight_scale, size_n=padded_n, size_k=size_k,
                                               bias=bias)                                  # [..., padded_n]
        return np.ascontiguousarray(y[..., padded_n - size_n:])                            # [..., N]
    return {"apply_fp8_marlin_linear": _named("apply_fp8_marlin_linear", call)}
