"""GEMM cases and laws: `marlin_gemm` through the backend seam, on Marlin tensors the oracle prepared (spec §3).

A case is a small JSON dict, like every case of properties.cases.strategies:

    {"scheme": "channel" | "group128" | "mx", "dtype": "float16" | "bfloat16" (mx: bfloat16 only),
     "size_k": K, "size_n": N, "activations": "one_hot" | "identity" | "normal", "rows": M,
     "act_exponent": e (normal only), "bias": bool, "specials": "none" | "some" | "many", "seed": s}

Shapes are the ones the kernel runs (§4.2): K a multiple of 128 and N of 64, or K an odd multiple of
64 and N a multiple of 128; group 128 has K >= 256 (K = 128 is one group, i.e. the channel-wise path,
§2.4); MXFP8 has K/32 >= 2 groups. `build_gemm(case)` makes the
checkpoint tensors from the seed (random e4m3 bytes, NaN codes included, plus special codes at the
case's density; distinct scales; e8m0 codes with the boundary codes planted) and prepares them with the
ORACLE's pipelines (marlin_ref.prepare_*), so a law exercises the GEMM alone. Activations: one-hot rows
at random k ("one_hot", M rows), the identity ("identity", M = K: every W[k, n] is read out), or
normal values times 2^act_exponent rounded to dtype ("normal").

Laws (`LAWS`), run through `check` (counts the compliance cell, adds the one-line reproduction):

    gemm_one_hot_is_exact   one-hot rows read out one_hot_expected(W_eff) bit for bit (§3.6), zeros by
                            value (-0 reads out as +0, §3.4), NaN where NaN
    gemm_within_bound       |out - a @ W_eff (+ b)| <= marlin_gemm_error_bound (§3.6), through
                            properties.laws.assert_within_gemm_bound; returns the worst |err| / bound

A row of the output is NOT independent of M in the kernel (§3.3), so no law compares rows across batches.
Replay one case without Hypothesis:

    python -m properties.laws gemm_one_hot_is_exact marlin_gemm '{"scheme": "channel", ...}' --backend torch

    >>> case = {"scheme": "mx", "dtype": "bfloat16", "size_k": 64, "size_n": 128, "activations": "identity",
    ...         "rows": 64, "bias": True, "specials": "none", "seed": 0}
    >>> built = build_gemm(case)
    >>> built.kwargs["a"].shape, built.kwargs["b_scales"].shape, built.kwargs["b_scales"].dtype.name
    ((64, 64), (2, 128), 'float8_e8m0fnu')
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from marlin_ref.formats import as_activation_dtype, round_to_dtype
from marlin_ref.layout import MX_BLOCK, TILE_N, locate, locate_scale
from marlin_ref.marlin_gemm import (dequantize_marlin_weight, ieee_matmul, marlin_gemm_error_bound,
                                    one_hot_activations, one_hot_expected)
from marlin_ref.prepare_fp8_layer_for_marlin import prepare_fp8_layer_for_marlin
from marlin_ref.prepare_mxfp8_layer_for_marlin import prepare_mxfp8_layer_for_marlin
from properties.reporting import report
from properties.cases import strategies as S
from properties.cases import transforms as T
from properties.seam.backends import Backend
from properties.laws import assert_within_gemm_bound, run_counted, run_op

OP = "marlin_gemm"
SCHEMES = ("channel", "group128", "mx")
FP8_GROUP = 128                # the only grouped FP8 kernel (§4.2)
K_UNIT, NARROW_K, WIDE_N = 128, 64, 128   # §4.2: (K % 128, N % 64) or (K % 64, N % 128)
MAX_K_UNITS, MAX_N_TILES = 4, 4           # K <= 512 (640 for group 128), N <= 256 (512 narrow): milliseconds
MAX_ROWS = 24                             # both sides of the kernel's M <= 8 branch (§4.2)
GEMM_SCALE_EXPONENTS = (-8, 0)            # S in [2^-8, 2): outputs stay finite in fp16 for K <= 512
ACT_EXPONENTS = (0, -16, 6)               # normal activations x 2^e: typical, tiny (subnormal products), large
MX_TYPICAL_CODES = (120, 134)             # e8m0 background: 2^-7 .. 2^7
MX_PLANTS = {"none": 0, "some": 1, "many": 4}  # copies of every boundary e8m0 code (0, 255, 249, ...)
SALT_BIAS, SALT_MX, SALT_HOT, SALT_ACT = 4, 5, 6, 7


# --- cases --------------------------------------------------------------------------------------

ONE_HOT, NORMAL = ("one_hot", "identity"), ("normal",)   # the activations of the two laws


def contract_shape(draw, scheme: str, max_k_units: int = MAX_K_UNITS,
                   max_n_tiles: int = MAX_N_TILES) -> tuple[int, int]:
    """(K, N) of a GEMM every Marlin kernel takes (§4.2: K % 128 == 0 and N % 64 == 0, or K % 64 == 0 and
    N % 128 == 0; group-128 with at least two groups). Shrinks towards (128, 64)."""
    k_units = draw(st.integers(1, max_k_units), label="k_units")
    n_tiles = draw(st.integers(1, max_n_tiles), label="n_tiles")
    narrow = draw(st.booleans(), label="narrow_k")        # drawn for every scheme: equal-length choices
    grouped = scheme == "group128"                        # K = 128 would be one group: the channel path (§2.4)
    if narrow and not grouped:                            # K an odd multiple of 64 needs N % 128 == 0
        return K_UNIT * k_units - NARROW_K, WIDE_N * n_tiles
    return K_UNIT * (k_units + grouped), TILE_N * n_tiles


@st.composite
def gemm_cases(draw, *, activations=ONE_HOT, schemes=SCHEMES, dtypes=S.ACTIVATION_DTYPES, bias=S.BIAS) -> dict:
    """A GEMM the kernel runs. Shrinks towards channel-wise, (K, N) = (128, 64), one row, no bias,
    no special codes, seed 0: the smallest legal shape (§4.2). schemes/dtypes/bias restrict the cell."""
    scheme = draw(st.sampled_from(schemes), label="scheme")
    dtype = draw(st.sampled_from(dtypes), label="dtype")
    k, n = contract_shape(draw, scheme)
    kind = draw(st.sampled_from(activations), label="activations")
    rows = draw(st.integers(1, MAX_ROWS), label="rows")   # drawn for the identity too: equal-length choices
    case = {"scheme": scheme, "dtype": "bfloat16" if scheme == "mx" else dtype, "size_k": k, "size_n": n,
            "activations": kind, "rows": k if kind == "identity" else rows}
    if kind == "normal":
        case["act_exponent"] = draw(st.sampled_from(ACT_EXPONENTS), label="act_exponent")
    return {**case, "bias": draw(st.sampled_from(bias), label="bias"),
            "specials": draw(st.sampled_from(tuple(MX_PLANTS)), label="specials"),
            "seed": draw(S.seeds(), label="seed")}


def one_hot_cases(**cell) -> st.SearchStrategy[dict]:
    return gemm_cases(activations=ONE_HOT, **cell)


def random_cases(**cell) -> st.SearchStrategy[dict]:
    return gemm_cases(activations=NORMAL, **cell)


# --- building --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GemmInputs:
    kwargs: dict                         # marlin_gemm's keyword arguments (NumPy)
    w_eff: np.ndarray                    # float64 [K, N], the oracle's per-scheme weight (§3.6)
    bias: np.ndarray | None              # logical [N] in dtype
    channel_scales: np.ndarray | None    # logical S [N] (channel-wise only), for the bound's floor
    hot: np.ndarray | None               # int [M]: the k of each one-hot row


def mx_scale_codes(case: dict, shape: tuple) -> np.ndarray:
    """uint8 [N, K/32]: typical exponents, with every boundary code of §3.5 planted `MX_PLANTS` times."""
    rng = T.rng_for(case, SALT_MX)
    codes = rng.integers(MX_TYPICAL_CODES[0], MX_TYPICAL_CODES[1] + 1, shape).astype(np.uint8)
    plants = np.repeat(np.array(S.E8M0_BOUNDARY_CODES, np.uint8), MX_PLANTS[case["specials"]])
    flat = codes.reshape(-1)
    flat[rng.permutation(flat.size)[:plants.size]] = plants[:flat.size]
    return codes


def activations_of(case: dict, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray | None]:
    k, kind = case["size_k"], case["activations"]
    if kind == "identity":
        hot = np.arange(k)
    elif kind == "one_hot":
        hot = T.rng_for(case, SALT_HOT).choice(k, case["rows"], replace=case["rows"] > k)
    else:
        x = T.rng_for(case, SALT_ACT).standard_normal((case["rows"], k)) * 2.0 ** case["act_exponent"]
        return round_to_dtype(x, dtype).astype(dtype), None
    return one_hot_activations(hot, k, dtype), hot


def build_gemm(case: dict) -> GemmInputs:
    """The case's checkpoint prepared by the oracle, its activations, and what the laws expect."""
    k, n, scheme, name = case["size_k"], case["size_n"], case["scheme"], case["dtype"]
    dtype = as_activation_dtype(name)
    codes = T.fp8_codes({**case, "plants": []}, (k, n))                                # [K, N] uint8
    bias = (T.distinct(T.rng_for(case, SALT_BIAS), n, name, T.BIAS_EXPONENTS, signed=True)
            if case["bias"] else None)
    channel = None
    if scheme == "mx":
        layer = prepare_mxfp8_layer_for_marlin(np.ascontiguousarray(codes.T).view(T.E4M3),     # [N, K]
                                               mx_scale_codes(case, (n, k // MX_BLOCK)), bias=bias)
    else:
        groups = 1 if scheme == "channel" else k // FP8_GROUP
        s = T.distinct(T.rng_for(case, 1), groups * n, name, GEMM_SCALE_EXPONENTS)       # exact in dtype
        scale = s if scheme == "channel" else s.reshape(groups, n)                      # [N] or [K/128, N]
        layer = prepare_fp8_layer_for_marlin(codes.view(T.E4M3), scale.astype(np.float32), orig_dtype=name,
                                             weight_block_size=None if scheme == "channel" else [1, FP8_GROUP],
                                             bias=bias)
        channel = s.astype(np.float64) if scheme == "channel" else None
    if (layer.padded_k, layer.padded_n) != (k, n):
        raise ValueError(f"build_gemm: case {case} is not a kernel shape (padded to "
                         f"{layer.padded_k}x{layer.padded_n})")
    a, hot = activations_of(case, dtype)
    w_eff = dequantize_marlin_weight(layer.qweight, layer.scales, k, n, dtype=dtype)
    kwargs = {"a": a, "b_q_weight": layer.qweight, "b_scales": layer.scales, "b_bias": layer.bias,
              "size_n": n, "size_k": k}
    return GemmInputs(kwargs, w_eff, bias, channel, hot)


GEMM_CELLS = (*T.grid(OP, ("channel", "group128"), S.ACTIVATION_DTYPES, T.BIAS_FEATURE),
              *T.grid(OP, ("mx",), ("bfloat16",), T.BIAS_FEATURE))      # MXFP8 kernels: bf16 only (§4.2)
GEMM_ROW = T.Transform("marlin_gemm", OP, "gemm", gemm_cases, lambda case: build_gemm(case).kwargs,
                       cells=GEMM_CELLS, restrict=lambda cell: {"schemes": (cell.scheme,), "dtypes": (cell.dtype,),
                                                                "bias": (cell.feature == "bias",)})
GEMM_ROWS = [GEMM_ROW]


# --- laws ------------------------------------------------------------------------------------------

def _where(case: dict, m: int, n: int, k: int) -> str:
    """Where the one product of out[m, n] comes from: W[k, n] in the Marlin layout and its scale."""
    loc = locate(k, n, size_n=case["size_n"])
    group = {"channel": None, "group128": FP8_GROUP, "mx": MX_BLOCK}[case["scheme"]]
    scale = locate_scale(n, grouped=group is not None, mx=case["scheme"] == "mx")
    g = 0 if group is None else k // group
    return (f"out[{m}, {n}] <- W[k={k}, n={n}]: k-tile {loc.k_tile}, n-tile {loc.n_tile}, Marlin row {loc.row} "
            f"word {loc.word} byte {loc.slot} (lane {loc.lane}, register {loc.register}, half {loc.half}); "
            f"its scale at b_scales[{g}, {scale.offset}] (lanes {scale.lanes[0]}..{scale.lanes[-1]})")


def _check_output(out, case: dict, dtype: np.dtype, where: str) -> np.ndarray:
    """The output as float64, once it is an array of a's dtype and shape [M, N]."""
    __tracebackhide__ = True
    want = (case["rows"], case["size_n"])
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != want:
        got = f"{out.dtype}{list(out.shape)}" if isinstance(out, np.ndarray) else type(out).__name__
        raise AssertionError(f"{where}: got {got}, want {dtype}{list(want)}")
    return out.astype(np.float64)


def gemm_one_hot_is_exact(backend: Backend, row: T.Transform, case: dict) -> None:
    """out == one_hot_expected(W_eff, hot, bias) value for value: each output is one product (§3.6)."""
    __tracebackhide__ = True
    built = build_gemm(case)
    dtype = as_activation_dtype(case["dtype"])
    where = f"{OP} on {backend.name!r}, one-hot rows"
    got = _check_output(run_op(backend, OP, built.kwargs), case, dtype, where)
    want = one_hot_expected(built.w_eff, dtype, hot=built.hot, bias=built.bias).astype(np.float64)
    report.assert_values_equal(
        got, want, where=where,
        what=f"outputs differ from RT(W_eff[hot, n]){' (+ bias)' if built.bias is not None else ''}",
        locate=lambda m, n: _where(case, m, n, int(built.hot[m])))


def gemm_within_bound(backend: Backend, row: T.Transform, case: dict) -> float:
    """|out - a @ W_eff (+ b)| <= marlin_gemm_error_bound (§3.6); returns the worst finite |err| / bound."""
    __tracebackhide__ = True
    built = build_gemm(case)
    dtype, a = as_activation_dtype(case["dtype"]), built.kwargs["a"]
    where = f"{OP} on {backend.name!r}, normal activations x 2^{case['act_exponent']}"
    out = run_op(backend, OP, built.kwargs)
    got = _check_output(out, case, dtype, where)
    assert_within_gemm_bound(out, a, built.w_eff, dtype, bias=built.bias,
                             channel_scales=built.channel_scales, where=where)
    bound = marlin_gemm_error_bound(a, built.w_eff, dtype, built.bias, channel_scales=built.channel_scales)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        ref = ieee_matmul(a.astype(np.float64), built.w_eff)
        ref = ref if built.bias is None else ref + built.bias.astype(np.float64)
        ratio = np.abs(got - ref) / bound
    finite = np.isfinite(ratio)
    return float(ratio[finite].max()) if finite.any() else 0.0


LAWS = {f.__name__: f for f in (gemm_one_hot_is_exact, gemm_within_bound)}


def row_named(name: str) -> T.Transform:
    if name != GEMM_ROW.name:
        raise ValueError(f"gemm_cases: transform={name!r} of a GEMM law must be {GEMM_ROW.name!r}")
    return GEMM_ROW


def check(law: str, backend: Backend, row: T.Transform, case: dict):
    """Run one GEMM law on one case (like properties.laws.check): the compliance cell is counted and a
    failure gets the one-line reproduction as a note. Returns the law's result."""
    __tracebackhide__ = True
    return run_counted(LAWS[law], backend, row, case, report.repro_command(law, row.name, case, backend.name))
