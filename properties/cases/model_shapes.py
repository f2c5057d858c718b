"""The GEMM at real model shapes, with a sampled oracle: where Marlin's tile configurations and split-K live (§4.2).

Real Marlin bugs live where real models run: many k-tiles per thread block, split-K and stripe partitioning, M past
8, 16, 48 and 64 where the kernels change configuration, N of tens of thousands. A case draws (K, N) from model
dimensions (4096, 5120, 8192, 14336, 28672, also divided by tensor-parallel degrees 2-8; at most MAX_DIM) and M from
classes on both sides of every branch (1, <= 8, <= 16, <= 48, <= 64, up to MAX_ROWS). The float64 reference of a
whole 1024 x 8192 x 8192 output is far too slow per example, and needless: the oracle checks a drawn sample of
SAMPLED_ROWS rows and SAMPLED_COLUMNS columns, at a cost linear in the sampled outputs (marlin_ref's
dequantize_marlin_weight(columns=...) gathers only those columns' bytes).

Inputs are built for the kernel directly: any int32 pattern is a valid Marlin weight, so the weight is random words
[K/16, 4N]; scales are drawn logical and permuted, fused or processed by the oracle (§2.4-§2.7); the bias likewise.
Laws (`LAWS`): one-hot rows bit for bit, normal rows within marlin_gemm_error_bound, both on the sample.
These run in the GPU tier (tests/gpu/test_gpu_gemm_model_shapes.py), on a backend whose GEMM runs on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import marlin_ref as mr
from marlin_ref.layout import MX_BLOCK, TILE_K
from marlin_ref.marlin_gemm import dequantize_marlin_weight, one_hot_expected
from properties.cases import gemm_cases as G
from properties.cases import strategies as S
from properties.cases import transforms as T
from properties.laws import assert_within_gemm_bound, run_counted, run_op
from properties.reporting import report
from properties.seam.backends import Backend

MODEL_DIMS = (4096, 5120, 8192, 14336, 28672)
TP_DEGREES = (1, 2, 4, 8)
MAX_DIM = 16384
MAX_ROWS = 4096
M_CLASSES = ((1, 1), (2, 8), (9, 16), (17, 48), (49, 64), (65, 256), (257, MAX_ROWS))   # both sides of each branch
MAX_NORMAL_ELEMENTS = 1 << 25           # M·K of normal activations drawn on the host (seconds, not minutes)
SAMPLED_ROWS, SAMPLED_COLUMNS = 16, 64
SALT_WEIGHT, SALT_SAMPLE = 21, 22


def model_dims(multiple: int) -> list[int]:
    return sorted({d // tp for d in MODEL_DIMS for tp in TP_DEGREES
                   if d % tp == 0 and (d // tp) % multiple == 0 and d // tp <= MAX_DIM})


def k_edges(size_k: int) -> np.ndarray:
    """The k at the edges of the first and last k-tiles and of K cut into 2, 3, 4 or 8 tile-aligned shares: where
    a split-K or stripe bound that is one tile off drops or doubles a row of W (§4.2).

    >>> k_edges(512).tolist()
    [0, 15, 16, 63, 64, 127, 128, 175, 176, 191, 192, 255, 256, 319, 320, 335, 336, 383, 384, 447, 448, 495, 496, 511]
    """
    edges = {0, TILE_K - 1, TILE_K, size_k - TILE_K - 1, size_k - TILE_K, size_k - 1}
    for parts in (2, 3, 4, 8):
        for i in range(1, parts):
            cut = round(size_k * i / parts / TILE_K) * TILE_K
            edges |= {cut - 1, cut}
    return np.array(sorted(e for e in edges if 0 <= e < size_k))


@st.composite
def model_gemm_cases(draw, *, activations=G.ONE_HOT[:1], schemes=G.SCHEMES, dtypes=S.ACTIVATION_DTYPES,
                     bias=S.BIAS) -> dict:
    """A model-sized GEMM; shrinks towards the smallest model dims and M = 1."""
    scheme = draw(st.sampled_from(schemes), label="scheme")
    size_k = draw(st.sampled_from(model_dims(G.K_UNIT)), label="size_k")
    size_n = draw(st.sampled_from(model_dims(S.TILE_N)), label="size_n")
    lo, hi = draw(st.sampled_from(M_CLASSES), label="m_class")
    kind = draw(st.sampled_from(activations), label="activations")
    if kind == "normal":
        hi = max(lo, min(hi, MAX_NORMAL_ELEMENTS // size_k))
    rows = draw(st.integers(lo, hi), label="rows")
    case = {"scheme": scheme, "dtype": "bfloat16" if scheme == "mx" else draw(st.sampled_from(dtypes), label="dtype"),
            "size_k": size_k, "size_n": size_n, "activations": kind, "rows": rows}
    if kind == "normal":
        case["act_exponent"] = draw(st.sampled_from(G.ACT_EXPONENTS[:2]), label="act_exponent")
    return {**case, "bias": draw(st.sampled_from(bias), label="bias"),
            "specials": draw(st.sampled_from(tuple(G.MX_PLANTS)), label="specials"), "seed": draw(S.seeds(), label="seed")}


@dataclass(frozen=True)
class ModelGemm:
    kwargs: dict                    # marlin_gemm's keyword arguments (NumPy)
    rows: np.ndarray                # the sampled rows and columns
    columns: np.ndarray
    hot: np.ndarray | None          # one-hot rows: the k of each row
    bias: np.ndarray | None         # logical [N]
    channel: np.ndarray | None      # logical channel-wise S [N]


def build_model_gemm(case: dict) -> ModelGemm:
    """Random Marlin words, oracle-permuted scales and bias, activations, and the sample the oracle checks."""
    k, n, scheme, name = case["size_k"], case["size_n"], case["scheme"], case["dtype"]
    dtype = mr.as_activation_dtype(name)
    rng = T.rng_for(case, SALT_WEIGHT)
    qweight = rng.integers(0, 2**32, (k // 16, 4 * n), dtype=np.uint32).view(np.int32)        # [K/16, 4N]
    channel = None
    if scheme == "mx":
        codes = G.mx_scale_codes(case, (k // MX_BLOCK, n))                                  # [K/32, N] logical
        floats = mr.decode_e8m0(codes).astype(np.float32)
        scales = mr.mxfp8_marlin_process_scales(mr.marlin_permute_scales(floats, k, n, MX_BLOCK))
    else:
        groups = 1 if scheme == "channel" else k // G.FP8_GROUP
        lo, hi = G.GEMM_SCALE_EXPONENTS          # too many for distinct values: random in the GEMM's range
        s = mr.round_to_dtype(2.0 ** T.rng_for(case, 1).uniform(lo, hi + 1, (groups, n)), dtype).astype(dtype)
        scales = mr.fp8_fused_exponent_bias_into_scales(
            mr.marlin_permute_scales(s, k, n, -1 if scheme == "channel" else G.FP8_GROUP))
        channel = s.astype(np.float64)[0] if scheme == "channel" else None
    bias = None
    if case["bias"]:
        bias = mr.round_to_dtype(T.rng_for(case, G.SALT_BIAS).standard_normal(n), dtype).astype(dtype)   # [N]
    a, hot = G.activations_of(case, dtype)                                                 # [M, K]
    sample = T.rng_for(case, SALT_SAMPLE)
    rows = np.sort(sample.choice(case["rows"], min(SAMPLED_ROWS, case["rows"]), replace=False))
    columns = np.sort(sample.choice(n, min(SAMPLED_COLUMNS, n), replace=False))
    if hot is not None:         # half the sampled one-hot rows read a k at a k-tile or k-share edge
        edge_rows = rows[::2]
        a[edge_rows, hot[edge_rows]] = 0
        hot[edge_rows] = sample.choice(k_edges(k), edge_rows.size)
        a[edge_rows, hot[edge_rows]] = 1
    kwargs = {"a": a, "b_q_weight": qweight, "b_scales": scales,
              "b_bias": None if bias is None else mr.marlin_permute_bias(bias), "size_n": n, "size_k": k}
    return ModelGemm(kwargs, rows, columns, hot, bias, channel)


def _sampled_output(backend: Backend, case: dict, built: ModelGemm, where: str) -> np.ndarray:
    __tracebackhide__ = True
    out = run_op(backend, G.OP, built.kwargs)
    dtype = mr.as_activation_dtype(case["dtype"])
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != (case["rows"], case["size_n"]):
        got = f"{out.dtype}{list(out.shape)}" if isinstance(out, np.ndarray) else type(out).__name__
        raise AssertionError(f"{where}: got {got}, want {dtype}{[case['rows'], case['size_n']]}")
    return out[np.ix_(built.rows, built.columns)]                                           # [R, C]


def _w_eff(case: dict, built: ModelGemm) -> np.ndarray:
    return dequantize_marlin_weight(built.kwargs["b_q_weight"], built.kwargs["b_scales"], case["size_k"],
                                    case["size_n"], dtype=case["dtype"], columns=built.columns)        # [K, C]


def model_shape_one_hot_is_exact(backend: Backend, row: T.Transform, case: dict) -> None:
    """One-hot rows at a model shape: the sampled outputs equal RT(W_eff[hot, n]) (+ b[n]) bit for bit."""
    __tracebackhide__ = True
    built = build_model_gemm(case)
    where = f"marlin_gemm on {backend.name!r}, M={case['rows']} K={case['size_k']} N={case['size_n']}, one-hot"
    got = _sampled_output(backend, case, built, where).astype(np.float64)
    bias = None if built.bias is None else built.bias[built.columns]
    want = one_hot_expected(_w_eff(case, built), case["dtype"], hot=built.hot[built.rows], bias=bias).astype(np.float64)
    report.assert_values_equal(
        got, want, where=where, what="sampled outputs differ",
        locate=lambda i, j: f"out[{built.rows[i]}, {built.columns[j]}] (W[k={built.hot[built.rows[i]]}])")


def model_shape_within_bound(backend: Backend, row: T.Transform, case: dict) -> None:
    """Normal rows at a model shape: the sampled outputs within marlin_gemm_error_bound (§3.6)."""
    __tracebackhide__ = True
    built = build_model_gemm(case)
    where = f"marlin_gemm on {backend.name!r}, M={case['rows']} K={case['size_k']} N={case['size_n']}, normal rows"
    got = _sampled_output(backend, case, built, where)
    pick = lambda v: None if v is None else v[built.columns]                               # noqa: E731
    assert_within_gemm_bound(got, built.kwargs["a"][built.rows], _w_eff(case, built), case["dtype"],
                             bias=pick(built.bias), channel_scales=pick(built.channel), where=where)


LAWS = {f.__name__: f for f in (model_shape_one_hot_is_exact, model_shape_within_bound)}
MODEL_ROW = T.Transform("marlin_gemm[model shapes]", G.OP, "gemm", model_gemm_cases,
                        lambda case: build_model_gemm(case).kwargs, cells=G.GEMM_CELLS, restrict=G.GEMM_ROW.restrict)
MODEL_ROWS = [MODEL_ROW]


def row_named(name: str) -> T.Transform:
    if name != MODEL_ROW.name:
        raise ValueError(f"model_shapes: transform={name!r} of a model-shape law must be {MODEL_ROW.name!r}")
    return MODEL_ROW


def check(law: str, backend: Backend, row: T.Transform, case: dict):
    """Run one model-shape law on one case (counted in the compliance table; a failure notes its replay command)."""
    __tracebackhide__ = True
    return run_counted(LAWS[law], backend, row, case, report.repro_command(law, row.name, case, backend.name))
