"""The end-to-end law: the backend's prepare, then the backend's linear layer, against the checkpoint's mathematics.

    apply(x, prepare(W, s, b)) ≈ x · dequant(W, s) + b        (spec §2.8-§2.11, §2.13, §3.6)

Nothing of the oracle sits between the two calls: the backend prepares the checkpoint (its weight, its scales in any
scheme, its bias) and its `apply_fp8_marlin_linear` / `apply_mxfp8_marlin_linear` runs the prepared layer on
activations [..., K], padding K and slicing N. So a bias permuted for the kernel but added after the GEMM in logical
order, a wrong N slice, a K padded with garbage or a prepared layer the GEMM misreads all show here, even when each
piece alone passes its own law. The expectation is the oracle's: W_eff = the oracle's dequantisation of the oracle's
prepared layer, cut to [K, N], and the logical bias.

A case is a prepare case (properties.cases.strategies.fp8_layer_cases / mxfp8_layer_cases: every scheme, padding,
bias, size_k_first) plus activations like the GEMM's (properties.cases.gemm_cases): "one_hot" rows or the
"identity" (each output is one product: bit for bit) or "normal" rows (within marlin_gemm_error_bound), and "lead",
the leading dimensions of the input ([M] or [B, M/B]). Checkpoint scales are drawn in the GEMM's range (outputs
stay finite; the bound is for finite arithmetic).

Laws (`LAWS`), replayed like every law: `python -m properties.laws linear_one_hot_is_exact
apply_fp8_marlin_linear '{...}' --backend NAME`.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from marlin_ref.fp8_fused_exponent_bias_into_scales import fp8_unfuse_exponent_bias_from_scales
from marlin_ref.marlin_gemm import dequantize_marlin_weight, one_hot_expected
from marlin_ref.marlin_permute_scales import marlin_unpermute_scales
from marlin_ref.formats import as_activation_dtype
from properties.cases import gemm_cases as G
from properties.cases import strategies as S
from properties.cases import transforms as T
from properties.laws import assert_within_gemm_bound, run_counted, run_op
from properties.reporting import report
from properties.seam.backends import Backend, oracle

FP8, MX = "apply_fp8_marlin_linear", "apply_mxfp8_marlin_linear"
PREPARE = {FP8: "prepare_fp8_layer_for_marlin", MX: "prepare_mxfp8_layer_for_marlin"}
MAX_ROWS = 12


@st.composite
def linear_cases(draw, *, op: str = FP8, activations=G.ONE_HOT, **cell) -> dict:
    """A prepare case of `op`'s pipeline and the activations that go through the layer."""
    layer = draw(S.mxfp8_layer_cases(**cell) if op == MX else S.fp8_layer_cases(**cell), label="layer")
    kind = draw(st.sampled_from(activations), label="activations")
    rows = draw(st.integers(1, MAX_ROWS), label="rows")
    lead = [rows] if draw(st.booleans(), label="flat") or rows % 2 else [2, rows // 2]
    case = {**layer, "activations": kind, "rows": layer["size_k"] if kind == "identity" else rows,
            "lead": [layer["size_k"]] if kind == "identity" else lead}
    if kind == "normal":
        case["act_exponent"] = draw(st.sampled_from(G.ACT_EXPONENTS[:2]), label="act_exponent")
    return case


def checkpoint(op: str, case: dict) -> dict:
    """The prepare call's keyword arguments, with scales in the GEMM's range (finite outputs)."""
    if op == MX:
        kwargs = T.by_name(PREPARE[op]).build(case)
        rows, cols = kwargs["weight_scale"].shape
        codes = G.mx_scale_codes({**case, "specials": "some"}, (rows, cols))                 # typical + boundary codes
        return {**kwargs, "weight_scale": codes.view(T.E8M0) if case["scale_codes"] == "e8m0" else codes}
    kwargs = T.by_name(PREPARE[op]).build(case)
    return {**kwargs, "weight_scale": T.fp8_scale(case, case["size_n"], case["size_k"],
                                                  exponents=G.GEMM_SCALE_EXPONENTS)}


def activation_dtype(op: str, case: dict) -> np.dtype:
    return as_activation_dtype("bfloat16" if op == MX else case["orig_dtype"])


def expectation(op: str, case: dict, kwargs: dict):
    """(W_eff [K, N], logical bias or None, channel-wise S [N] or None) from the oracle's prepared layer."""
    layer = run_op(oracle(), PREPARE[op], kwargs)
    dtype = activation_dtype(op, case)
    w_eff = dequantize_marlin_weight(layer.qweight, layer.scales, layer.padded_k, layer.padded_n, dtype=dtype)
    w_eff = w_eff[:case["size_k"], :case["size_n"]]                                     # [K, N]
    channel = None
    if op == FP8 and layer.scales.shape[0] == 1:     # channel-wise: the bound's floor needs S (§3.6)
        s = marlin_unpermute_scales(fp8_unfuse_exponent_bias_from_scales(layer.scales), layer.padded_k,
                                    layer.padded_n, -1)
        channel = s.astype(np.float64)[0, :case["size_n"]]
    bias = kwargs.get("bias")
    return w_eff, None if bias is None else bias.astype(dtype), channel


def through_the_backend(backend: Backend, row: T.Transform, case: dict):
    """(x [..., K], y [..., N] as float64 [M, N], kwargs): the backend's prepare, then the backend's linear layer."""
    kwargs = checkpoint(row.op, case)
    layer = run_op(backend, PREPARE[row.op], kwargs)
    dtype = activation_dtype(row.op, case)
    x, hot = G.activations_of(case, dtype)                                                 # [M, K]
    x = x.reshape(*case["lead"], case["size_k"])                                        # [..., K]
    y = run_op(backend, row.op, {"input": x, "weight": layer.qweight, "weight_scale": layer.scales,
                                  "size_n": case["size_n"], "size_k": case["size_k"], "bias": layer.bias})
    where = f"{row.op} on {backend.name!r} after its {PREPARE[row.op]}"
    want = (*case["lead"], case["size_n"])
    if not isinstance(y, np.ndarray) or y.dtype != dtype or y.shape != want:
        got = f"{y.dtype}{list(y.shape)}" if isinstance(y, np.ndarray) else type(y).__name__
        raise AssertionError(f"{where}: got {got}, want {dtype}{list(want)}")
    return x.reshape(-1, case["size_k"]), y.reshape(-1, case["size_n"]), hot, kwargs, where


def linear_one_hot_is_exact(backend: Backend, row: T.Transform, case: dict) -> None:
    """One-hot rows read the effective weight back bit for bit: y[m, n] = RT(W_eff[hot[m], n]) (+ b[n])."""
    __tracebackhide__ = True
    _, y, hot, kwargs, where = through_the_backend(backend, row, case)
    w_eff, bias, _ = expectation(row.op, case, kwargs)
    want = one_hot_expected(w_eff, activation_dtype(row.op, case), hot=hot, bias=bias).astype(np.float64)
    got = y.astype(np.float64)
    report.assert_values_equal(
        got, want, where=f"{where}, one-hot rows",
        what=f"outputs differ from RT(W_eff[hot, n]){' + b' if bias is not None else ''}",
        locate=lambda m, n: f"y[{m}, {n}] (W[k={hot[m]}, n={n}]{' + bias' if bias is not None else ''})")


def linear_within_bound(backend: Backend, row: T.Transform, case: dict) -> None:
    """Normal rows: |y - x·W_eff (+ b)| <= marlin_gemm_error_bound (§3.6)."""
    __tracebackhide__ = True
    x, y, _, kwargs, where = through_the_backend(backend, row, case)
    w_eff, bias, channel = expectation(row.op, case, kwargs)
    assert_within_gemm_bound(y, x, w_eff, activation_dtype(row.op, case), bias=bias, channel_scales=channel,
                             where=f"{where}, normal rows x 2^{case['act_exponent']}")


LAWS = {f.__name__: f for f in (linear_one_hot_is_exact, linear_within_bound)}
LINEAR_ROWS = [
    T.Transform(FP8, FP8, "linear", lambda **kw: linear_cases(op=FP8, **kw), lambda case: checkpoint(FP8, case),
                cells=T.grid(FP8, S.FP8_SCHEMES, S.ACTIVATION_DTYPES, T.BIAS_FEATURE),
                restrict=lambda cell: {"schemes": (cell.scheme,), "dtypes": (cell.dtype,),
                                       "bias": (cell.feature == "bias",)}),
    T.Transform(MX, MX, "linear", lambda **kw: linear_cases(op=MX, **kw), lambda case: checkpoint(MX, case),
                cells=T.grid(MX, ("mx",), S.MX_INTERMEDIATE_DTYPES, T.BIAS_FEATURE),
                restrict=lambda cell: {"dtypes": (cell.dtype,), "bias": (cell.feature == "bias",)}),
]
_BY_NAME = {row.name: row for row in LINEAR_ROWS}


def row_named(name: str) -> T.Transform:
    if name not in _BY_NAME:
        raise ValueError(f"linear_cases: transform={name!r} of a linear law must be one of {sorted(_BY_NAME)}")
    return _BY_NAME[name]


def check(law: str, backend: Backend, row: T.Transform, case: dict):
    """Run one linear law on one case (counted in the compliance table; a failure notes its replay command)."""
    __tracebackhide__ = True
    return run_counted(LAWS[law], backend, row, case, report.repro_command(law, row.name, case, backend.name))
