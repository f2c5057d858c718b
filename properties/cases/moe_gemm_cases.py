"""The MoE GEMM through the seam (spec §5): `marlin_moe_gemm` over stacked experts, its cases and its laws.

    marlin_moe_gemm(a [M, K], b_q_weight [E, K/16, 4N], b_scales [E, G, N], b_bias [E, N] | None, *,
                    topk_ids [M, top_k], topk_weights [M, top_k] | None, size_n, size_k, mul_topk_weights)
        -> [M·top_k, N]: row m·top_k + j is a[m] through expert topk_ids[m, j] (its bias added after rounding), times
           RT(topk_weights[m, j]) after that when mul_topk_weights; a slot routed to no expert (-1) is +0

Each expert's data is exactly the dense format (§5), built like the GEMM's (properties.cases.gemm_cases: the oracle
prepares every expert from its own seed). A case is a GEMM case plus "experts" (1..4), "top_k" (1..2), "routing"
("spread": top_k distinct experts a token, "one_expert": every token to one expert, "some_unrouted": some slots -1)
and "router_weights" (mul_topk_weights). Laws (`LAWS`):

    moe_one_hot_is_exact           one-hot rows equal marlin_moe_gemm_reference value for value: each expert's
                                   RT(W_eff[hot, n]), the bias after rounding, the router weight after the bias,
                                   +0 for unrouted slots
    moe_within_bound               normal rows: each routed row within marlin_gemm_error_bound of a[m]·W_eff[e]
                                   (+ b[e]); unrouted rows +0
    moe_expert_alone_equals_dense  every token to one expert, top-1: the backend's MoE GEMM equals the backend's own
                                   dense GEMM on that expert's tensors (one-hot rows, so both are exact)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from marlin_ref.formats import as_activation_dtype
from marlin_ref.marlin_gemm import marlin_moe_gemm_reference
from properties.cases import gemm_cases as G
from properties.cases import transforms as T
from properties.laws import assert_within_gemm_bound, run_counted, run_op
from properties.reporting import report
from properties.seam.backends import Backend

OP = "marlin_moe_gemm"
MAX_EXPERTS, MAX_TOKENS = 4, 12
ROUTINGS = ("spread", "one_expert", "some_unrouted")
SALT_ROUTE, SALT_WEIGHTS = 11, 12


@st.composite
def moe_gemm_cases(draw, *, activations=G.ONE_HOT, routings=ROUTINGS, **cell) -> dict:
    """A GEMM case of every expert's shape, and the routing of M tokens to E experts; shrinks to one expert, top-1."""
    case = draw(G.gemm_cases(activations=activations, **cell), label="gemm")
    experts = draw(st.integers(1, MAX_EXPERTS), label="experts")
    top_k = min(experts, draw(st.integers(1, 2), label="top_k"))
    tokens = case["size_k"] if case["activations"] == "identity" else draw(st.integers(1, MAX_TOKENS), label="tokens")
    return {**case, "rows": tokens, "experts": experts, "top_k": top_k,
            "routing": draw(st.sampled_from(routings), label="routing"),
            "router_weights": draw(st.booleans(), label="router_weights")}


@dataclass(frozen=True)
class MoeInputs:
    kwargs: dict                  # marlin_moe_gemm's keyword arguments (NumPy)
    experts: list                 # each expert's GemmInputs (w_eff, bias, channel scales)
    hot: np.ndarray | None        # the k of each one-hot token


def routing(case: dict) -> np.ndarray:
    """topk_ids int32 [M, top_k]."""
    rng = T.rng_for(case, SALT_ROUTE)
    m, e, top_k = case["rows"], case["experts"], case["top_k"]
    if case["routing"] == "one_expert":
        return np.full((m, top_k), rng.integers(e), np.int32) if top_k == 1 else \
            np.stack([rng.permutation(e)[:top_k]] * m).astype(np.int32)
    ids = np.stack([rng.permutation(e)[:top_k] for _ in range(m)]).astype(np.int32)   # distinct experts a token
    if case["routing"] == "some_unrouted":
        ids[rng.random(ids.shape) < 0.4] = -1                                      # routed to another rank
    return ids


def build_moe(case: dict) -> MoeInputs:
    """Every expert prepared by the oracle from its own seed; the tokens' activations; the routing."""
    experts = [G.build_gemm({**case, "seed": (case["seed"] * 7919 + e) % 2**32, "rows": case["rows"]})
               for e in range(case["experts"])]
    a, hot = G.activations_of(case, as_activation_dtype(case["dtype"]))
    stack = lambda key: np.stack([x.kwargs[key] for x in experts])                       # noqa: E731 - [E, ...]
    ids = routing(case)
    weights = T.rng_for(case, SALT_WEIGHTS).uniform(0.25, 1.0, ids.shape).astype(np.float32)
    kwargs = {"a": a, "b_q_weight": stack("b_q_weight"), "b_scales": stack("b_scales"),
              "b_bias": None if experts[0].kwargs["b_bias"] is None else stack("b_bias"), "topk_ids": ids,
              "topk_weights": weights, "size_n": case["size_n"], "size_k": case["size_k"],
              "mul_topk_weights": case["router_weights"]}
    return MoeInputs(kwargs, experts, hot)


def _output(backend: Backend, case: dict, kwargs: dict, where: str) -> np.ndarray:
    __tracebackhide__ = True
    out = run_op(backend, OP, kwargs)
    dtype = as_activation_dtype(case["dtype"])
    want = (case["rows"] * case["top_k"], case["size_n"])
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != want:
        got = f"{out.dtype}{list(out.shape)}" if isinstance(out, np.ndarray) else type(out).__name__
        raise AssertionError(f"{where}: got {got}, want {dtype}{list(want)}")
    return out.astype(np.float64)


def _differ(got: np.ndarray, want: np.ndarray, ids: np.ndarray, where: str) -> None:
    __tracebackhide__ = True
    top_k = ids.shape[1]
    report.assert_values_equal(
        got, want, where=where, what="outputs differ",
        locate=lambda r, n: f"row {r} (token {r // top_k}, expert {ids.reshape(-1)[r]}), n={n}")


def moe_one_hot_is_exact(backend: Backend, row: T.Transform, case: dict) -> None:
    """One-hot tokens: the MoE GEMM equals marlin_moe_gemm_reference value for value."""
    __tracebackhide__ = True
    built = build_moe(case)
    where = f"{OP} on {backend.name!r}, one-hot tokens, {case['experts']} experts, top-{case['top_k']}"
    got = _output(backend, case, built.kwargs, where)
    want = marlin_moe_gemm_reference(**built.kwargs).astype(np.float64)
    _differ(got, want, built.kwargs["topk_ids"], where)


def moe_within_bound(backend: Backend, row: T.Transform, case: dict) -> None:
    """Normal tokens (no router weights): each routed row within the §3.6 bound of its expert, unrouted rows +0."""
    __tracebackhide__ = True
    built = build_moe({**case, "router_weights": False})
    kwargs, ids = built.kwargs, built.kwargs["topk_ids"].reshape(-1)
    where = f"{OP} on {backend.name!r}, normal tokens x 2^{case['act_exponent']}"
    got = _output(backend, case, kwargs, where)
    a = np.repeat(kwargs["a"], case["top_k"], axis=0)                                    # [M·top_k, K]
    unrouted = np.flatnonzero(ids < 0)
    if (got[unrouted] != 0).any():
        raise AssertionError(f"{where}: rows {unrouted.tolist()} routed to no expert are not all +0")
    for e, expert in enumerate(built.experts):
        rows = np.flatnonzero(ids == e)
        if rows.size:
            assert_within_gemm_bound(got[rows].astype(kwargs["a"].dtype), a[rows], expert.w_eff,
                                     kwargs["a"].dtype, bias=expert.bias, channel_scales=expert.channel_scales,
                                     where=f"{where}, expert {e} rows {rows.tolist()[:8]}")


def moe_expert_alone_equals_dense(backend: Backend, row: T.Transform, case: dict) -> None:
    """Every token to one expert, top-1: the MoE GEMM equals the backend's dense GEMM on that expert's tensors."""
    __tracebackhide__ = True
    built = build_moe({**case, "routing": "one_expert", "top_k": 1})
    kwargs = built.kwargs
    e = int(kwargs["topk_ids"][0, 0])
    where = f"{OP} on {backend.name!r}: every token to expert {e} of {case['experts']}, vs its marlin_gemm"
    got = _output(backend, {**case, "top_k": 1}, kwargs, where)
    dense = run_op(backend, "marlin_gemm", {**built.experts[e].kwargs, "a": kwargs["a"]}).astype(np.float64)
    if kwargs["mul_topk_weights"]:     # the router weight after the bias, rounded like the kernel (§5)
        from marlin_ref.formats import round_to_dtype
        dtype = kwargs["a"].dtype
        dense = round_to_dtype(dense * round_to_dtype(kwargs["topk_weights"].astype(np.float64), dtype), dtype)
    _differ(got, dense, kwargs["topk_ids"], where)


LAWS = {f.__name__: f for f in (moe_one_hot_is_exact, moe_within_bound, moe_expert_alone_equals_dense)}
MOE_GEMM_ROW = T.Transform(OP, OP, "moe_gemm", moe_gemm_cases, lambda case: build_moe(case).kwargs,
                           cells=tuple(cell._replace(op=OP) for cell in G.GEMM_CELLS), restrict=G.GEMM_ROW.restrict)
MOE_GEMM_ROWS = [MOE_GEMM_ROW]


def row_named(name: str) -> T.Transform:
    if name != OP:
        raise ValueError(f"moe_gemm_cases: transform={name!r} of an MoE GEMM law must be {OP!r}")
    return MOE_GEMM_ROW


def check(law: str, backend: Backend, row: T.Transform, case: dict):
    """Run one MoE GEMM law on one case (counted in the compliance table; a failure notes its replay command)."""
    __tracebackhide__ = True
    return run_counted(LAWS[law], backend, row, case, report.repro_command(law, row.name, case, backend.name))
