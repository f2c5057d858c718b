"""The laws: what must hold between a backend, the oracle and the registry rows. All tolerances live here.

Each law is `law(backend, row, case)`: it builds the row's inputs from the case, calls operations only
through `run_op` (which also enforces that inputs are never mutated), and raises AssertionError with a
report from `properties.reporting.report`. `check(name, ...)` runs a law and adds the one-line reproduction;
`python -m properties.laws LAW ROW 'CASE-JSON' --backend NAME [--load X]` replays one case of any law (the GEMM
laws' too) without Hypothesis.

Layout and pipeline outputs are compared bit for bit (no tolerance at all). The only tolerance is the GEMM
bound of `marlin_ref.marlin_gemm.marlin_gemm_error_bound` (spec §3.6), used by `assert_within_gemm_bound`.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from properties.reporting import report
from properties.seam.backends import Backend, NotProvided, get_backend, oracle
from properties.reporting.cells import note_cell
from properties.seam.loading import load_all
from properties.reporting.report import assert_bit_exact, assert_fields_bit_exact
from properties.cases.transforms import Transform, by_name, gptq_pack, gptq_unpack, perm_for


# --- calling through the seam --------------------------------------------------------------------

def _arrays(value, path="") -> list:
    if isinstance(value, np.ndarray):
        return [(path, value)]
    if isinstance(value, dict):
        return [a for k, v in value.items() for a in _arrays(v, f"{path}.{k}" if path else k)]
    if isinstance(value, (list, tuple)):
        return [a for i, v in enumerate(value) for a in _arrays(v, f"{path}[{i}]")]
    return []


def run_op(backend: Backend, op: str, kwargs: dict):
    """backend.op(**kwargs), and the law "inputs are never mutated": every input array keeps its bytes."""
    __tracebackhide__ = True
    fn = backend.op(op)
    before = [(path, a, a.copy()) for path, a in _arrays(kwargs)]
    out = fn(**kwargs)
    for path, a, copy in before:
        assert_bit_exact(a, copy, where=f"{op} on backend {backend.name!r} mutated its input {path} "
                                        "(inputs are never mutated)")
    return out


# The one relaxation of bit-exactness: operations that *decode* e8m0 code 255 into a float may pick any
# NaN (torch 2.13 gives 0x7F800001 in float32, ml_dtypes 0x7FC00000). A NaN must still meet a NaN, and
# the pipelines re-encode every NaN to code 255, so no layout or prepared tensor is affected (§1, §2.7).
NAN_PAYLOAD_FREE = frozenset({"mxfp8_scales_to_float", "mxfp8_marlin_unprocess_scales"})


def _compare(got, want, *, where: str, row: Transform, case: dict) -> None:
    __tracebackhide__ = True
    if hasattr(want, "_fields"):
        assert_fields_bit_exact(got, want, where=where, layouts=row.layout(case, want))
    else:
        assert_bit_exact(got, want, where=where, layout=row.layout(case, want),
                         nan_payloads=row.op not in NAN_PAYLOAD_FREE)


# --- the laws -----------------------------------------------------------------------------------

def matches_oracle(backend: Backend, row: Transform, case: dict) -> None:
    """backend(x) == oracle(x), bit for bit, for every transform and pipeline."""
    __tracebackhide__ = True
    got = run_op(backend, row.op, row.build(case))
    want = run_op(oracle(), row.op, row.build(case))
    _compare(got, want, where=f"{row.name} on {backend.name!r} vs oracle", row=row, case=case)


def roundtrip(backend: Backend, row: Transform, case: dict) -> None:
    """inverse(forward(x)) == x (for the repack with a perm: the permuted input, §2.3)."""
    __tracebackhide__ = True
    kwargs = row.build(case)
    out = run_op(backend, row.op, kwargs)
    back = run_op(backend, row.inverse, row.inverse_args(case, kwargs, out))
    assert_bit_exact(back, row.restore(case, kwargs), where=f"{row.inverse}({row.op}(x)) != x on {backend.name!r}")


def inputs_never_mutated(backend: Backend, row: Transform, case: dict) -> None:
    """Calling the operation leaves every input array byte for byte as it was (run_op checks it)."""
    __tracebackhide__ = True
    run_op(backend, row.op, row.build(case))


def _slots(words: np.ndarray, num_bits: int) -> np.ndarray:
    """Flat bytes (8-bit) or nibbles (4-bit, low nibble first) of little-endian int32 words."""
    b = np.ascontiguousarray(words).reshape(-1).view(np.uint8)                # [4 * words]
    return b if num_bits == 8 else np.stack([b & 0xF, b >> 4], axis=1).reshape(-1)   # [8 * words]


def repack_is_a_permutation(backend: Backend, row: Transform, case: dict) -> None:
    """The repack moves bytes (nibbles): the multiset of input values equals that of the output."""
    __tracebackhide__ = True
    kwargs = row.build(case)
    out, bits = run_op(backend, row.op, kwargs), kwargs["num_bits"]
    got = np.bincount(_slots(out, bits), minlength=256)
    want = np.bincount(_slots(kwargs["b_q_weight"], bits), minlength=256)
    if not np.array_equal(got, want):
        values = np.flatnonzero(got != want)[:report.SHOWN]
        counts = ", ".join(f"0x{v:02x}: {got[v]} vs {want[v]}" for v in values)
        raise AssertionError(f"{row.name} on {backend.name!r}: the output is not a permutation of the input "
                             f"values; counts (output vs input) differ for {counts}")


def repack_moves_one_byte(backend: Backend, row: Transform, case: dict) -> None:
    """Changing the weight at (k, n) = case["probe"] changes exactly one output byte (nibble), the one at
    locate(k, n) (§2.3.1, §6.2)."""
    __tracebackhide__ = True
    from marlin_ref.layout import locate

    kwargs = {**row.build(case), "perm": None}
    bits, (k, n) = kwargs["num_bits"], case["probe"]
    codes = gptq_unpack(kwargs["b_q_weight"], bits)
    codes[k, n] ^= (1 << bits) - 1
    changed = {**kwargs, "b_q_weight": gptq_pack(codes, bits)}
    before, after = run_op(backend, row.op, kwargs), run_op(backend, row.op, changed)
    diff = np.flatnonzero(_slots(before, bits) != _slots(after, bits))
    want = locate(k, n, size_n=kwargs["size_n"], num_bits=bits).byte_offset
    if diff.tolist() != [want]:
        layout = report.MarlinWeight(kwargs["size_k"], kwargs["size_n"], bits)
        where = "; ".join(layout._where(int(d)) for d in diff[:report.SHOWN])
        raise AssertionError(f"{row.name} on {backend.name!r}: flipping W[{k}, {n}] changed {diff.size} output "
                             f"{'bytes' if bits == 8 else 'nibbles'} {diff[:report.SHOWN].tolist()}, want exactly "
                             f"[{want}] ({layout._where(want)}); changed: {where or 'nothing'}")


def perm_equals_permuted_rows(backend: Backend, row: Transform, case: dict) -> None:
    """repack(pack(W), perm) == repack(pack(W[perm]), None) (act-order, §2.3.1)."""
    __tracebackhide__ = True
    kwargs = {**row.build(case)}
    perm, bits = perm_for({**case, "perm": "random"}), kwargs["num_bits"]
    with_perm = run_op(backend, row.op, {**kwargs, "perm": perm})
    rows_first = {**kwargs, "perm": None, "b_q_weight": gptq_pack(gptq_unpack(kwargs["b_q_weight"], bits)[perm], bits)}
    _compare(with_perm, run_op(backend, row.op, rows_first), row=row, case=case,
             where=f"{row.name} on {backend.name!r}: repack(W, perm) vs repack(W[perm])")


def _same(backend, row, case, kwargs_a, kwargs_b, what):
    __tracebackhide__ = True
    _compare(run_op(backend, row.op, kwargs_a), run_op(backend, row.op, kwargs_b), row=row, case=case,
             where=f"{row.name} on {backend.name!r}: {what}")


def _scale_key(row: Transform) -> str:
    return "w13_scale" if "moe" in row.op else ("scale" if row.op.startswith("convert") else "weight_scale")


def _expanded_scale(row, case, kwargs, repeats):
    """The channel-wise scale equal to kwargs' scale with each entry repeated `repeats` times along N."""
    key = _scale_key(row)
    s = kwargs[key]
    if "moe" in row.op:
        e = case["experts"]
        return key, np.repeat(s.reshape(e, -1), repeats, axis=1)              # [E, size_n]
    return key, np.repeat(s.reshape(-1), repeats)                              # [N]


def tensor_equals_channel(backend: Backend, row: Transform, case: dict) -> None:
    """A tensor-wise scale s gives the same result as the channel-wise scale [s] * N (§2.8, §2.9)."""
    kwargs = row.build(case)
    size_n = 2 * case["intermediate"] if "moe" in row.op else case["size_n"]
    key, channel = _expanded_scale(row, case, kwargs, size_n)
    _same(backend, row, case, kwargs, {**kwargs, key: channel}, "tensor-wise vs channel-wise repeated")


def shard_equals_channel(backend: Backend, row: Transform, case: dict) -> None:
    """Per-shard scales (equal shards, or logical_widths) equal channel-wise scales repeated per shard."""
    kwargs = row.build(case)
    if case.get("logical_widths") and case["scheme"] == "shard_widths":
        repeats = case["logical_widths"]
    elif "moe" in row.op:
        repeats = case["intermediate"]                    # gate | up, n columns each (§5)
    else:
        repeats = case["size_n"] // case["shards"]
    key, channel = _expanded_scale(row, case, kwargs, repeats)
    _same(backend, row, case, kwargs, {**kwargs, key: channel}, "per-shard vs channel-wise repeated")


def size_k_first_transposes(backend: Backend, row: Transform, case: dict) -> None:
    """f(W [K, N], size_k_first=True) == f(Wᵀ [N, K], size_k_first=False), N == K included (§2.2,
    §6.1 item 6); block scales are given k-major resp. n-major. For the pack, the False result is
    [N, K/4] and is transposed first."""
    kwargs = row.build({**case, "size_k_first": True})
    key = "fp8" if row.op == "pack_fp8_to_int32" else "weight"
    flipped = {**kwargs, key: np.ascontiguousarray(kwargs[key].T), "size_k_first": False}   # W [N, K]
    if case.get("scheme") == "block":   # k-major [⌈K/bk⌉, ⌈N/bn⌉] -> n-major [⌈N/bn⌉, ⌈K/bk⌉]
        flipped["weight_scale"] = np.ascontiguousarray(kwargs["weight_scale"].T)
    a, b = run_op(backend, row.op, kwargs), run_op(backend, row.op, flipped)
    if row.op == "pack_fp8_to_int32":
        b = np.ascontiguousarray(b.T)                                           # [N, K/4] -> [K/4, N]
    _compare(a, b, row=row, case={**case, "size_k_first": True},
             where=f"{row.name} on {backend.name!r}: size_k_first=True on W vs False on Wᵀ")


def moe_equals_per_expert(backend: Backend, row: Transform, case: dict) -> None:
    """Stacking experts in the MoE prep equals preparing each expert as a dense layer (§5: expert e's
    data is exactly the dense format). Needs aligned cases (no padding differences)."""
    kwargs = row.build(case)
    moe = run_op(backend, row.op, kwargs)
    mx = "mxfp8" in row.op
    for e in range(case["experts"]):
        for w in ("w13", "w2"):
            if mx:
                dense = run_op(backend, "prepare_mxfp8_layer_for_marlin", {
                    "weight": kwargs[w][e], "weight_scale": np.asarray(kwargs[f"{w}_scale"][e]),
                    "intermediate_dtype": kwargs["intermediate_dtype"]})
            else:
                dense = run_op(backend, "prepare_fp8_layer_for_marlin", {
                    "weight": kwargs[w][e], "weight_scale": np.asarray(kwargs[f"{w}_scale"][e]), "size_k_first": False,
                    "orig_dtype": kwargs["orig_dtype"], "weight_block_size": kwargs["weight_block_size"],
                    "bias": None if kwargs[f"{w}_bias"] is None else kwargs[f"{w}_bias"][e]})
            layouts = row.layout(case, moe)
            for field, dense_field in (("qweight", "qweight"), ("scales", "scales"), ("bias", "bias")):
                got = getattr(moe, f"{w}_{field}")
                want = getattr(dense, dense_field)
                got = None if got is None else got[e]
                assert_bit_exact(got, want, where=f"{row.name} on {backend.name!r}: expert {e} {w}_{field} vs "
                                 f"dense prep of expert {e}", layout=_expert_layout(layouts[f"{w}_{field}"]))


def _expert_layout(layout):
    if isinstance(layout, report.MarlinWeight):
        return report.MarlinWeight(layout.size_k, layout.size_n, layout.num_bits)
    return layout


LAWS = {f.__name__: f for f in (matches_oracle, roundtrip, inputs_never_mutated, repack_is_a_permutation,
                                 repack_moves_one_byte, perm_equals_permuted_rows, tensor_equals_channel,
                                 shard_equals_channel, size_k_first_transposes, moe_equals_per_expert)}


def case_sizes(case: dict) -> dict:
    """The sizes of a case that a backend's limits speak of (properties.seam.capabilities.LIMIT_KEYS)."""
    sizes = {"size_k": case.get("size_k", case.get("hidden")), "size_n": case.get("size_n", case.get("intermediate")),
             "rows": case.get("rows"), "experts": case.get("experts")}
    return {key: value for key, value in sizes.items() if value is not None}


def within_limits(backend: Backend, row: Transform, case: dict) -> None:
    """A case beyond the backend's declared limits is never sent to it: Hypothesis draws another (reject), a replay
    outside Hypothesis is "not provided"."""
    capability = backend.capabilities.get(row.op)
    if capability is None or not capability.limits or capability.admits(**case_sizes(case)):
        return
    from hypothesis import reject
    from hypothesis.control import currently_in_test_context

    if currently_in_test_context():
        reject()
    raise NotProvided(backend.name, row.op, f"the case {case_sizes(case)} is beyond its limits {capability.limits}")


def run_counted(run, backend: Backend, row: Transform, case: dict, repro: str):
    """run(backend, row, case), its outcome counted for the compliance report (properties.reporting.cells.note_cell;
    a no-op outside a recorded test) and `repro` attached to a failure as the one-line reproduction. A case beyond
    the backend's limits is not run (within_limits)."""
    __tracebackhide__ = True
    within_limits(backend, row, case)
    classes = tag_shape_classes(row, case)
    try:
        result = run(backend, row, case)
    except NotProvided:
        note_cell(backend.name, row, case, "not provided", classes)
        raise
    except Exception as exc:
        note_cell(backend.name, row, case, "failed", classes)
        exc.add_note(f"Reproduce: {repro}")
        raise
    note_cell(backend.name, row, case, "passed", classes)
    return result


def tag_shape_classes(row: Transform, case: dict) -> list[str]:
    """The case's shape classes (properties.cases.shape_classes), each a Hypothesis event inside a test."""
    from hypothesis import event
    from hypothesis.control import currently_in_test_context

    from properties.cases.shape_classes import classes_of
    from properties.reporting.cells import cell_of

    classes = classes_of(cell_of(row.op, case, transform=row.name), case)
    if currently_in_test_context():
        for name in classes:
            event(f"shape class: {name}")
    return classes


def check(law: str, backend: Backend, row: Transform, case: dict) -> None:
    """Run one law on one case; a failure gets the one-line reproduction as a note."""
    __tracebackhide__ = True
    run_counted(LAWS[law], backend, row, case, report.repro_command(law, row.name, case, backend.name))


# each has LAWS, check and row_named
LAW_MODULES = ("properties.laws", "properties.cases.gemm_cases", "properties.cases.moe_gemm_cases",
               "properties.cases.linear_cases", "properties.cases.model_shapes")


def row_named(name: str) -> Transform:
    return by_name(name)


def law_of(law: str, transform: str):
    """(check function, registry row) of a law of any law module, by the law's and the row's names."""
    import importlib

    known = []
    for module in map(importlib.import_module, LAW_MODULES):
        if law in module.LAWS:
            return module.check, module.row_named(transform)
        known += sorted(module.LAWS)
    raise ValueError(f"law_of: law={law!r} is not one of {known}")


def replay(law: str, transform: str, case, backend: str | None = None):
    """Replay one case (a dict or its JSON) outside pytest; raises like the test did."""
    case = json.loads(case) if isinstance(case, str) else case
    run, row = law_of(law, transform)
    return run(law, get_backend(backend), row, case)


# --- the GEMM tolerance (§3.6) -------------------------------------------------------------------

def assert_within_gemm_bound(out, a, w_eff, dtype, *, bias=None, channel_scales=None, where: str) -> None:
    """|out - a @ w_eff (+ bias)| <= marlin_gemm_error_bound element-wise; where the bound is infinite
    (overflow, non-finite reference) the output must match the reference's class (inf sign / NaN); where
    the fp32 accumulator may overflow in some order (fp32_accumulator_may_overflow), a non-finite output
    is also accepted."""
    __tracebackhide__ = True
    from marlin_ref.marlin_gemm import fp32_accumulator_may_overflow, ieee_matmul, marlin_gemm_error_bound

    bound = marlin_gemm_error_bound(a, w_eff, dtype, bias, channel_scales=channel_scales)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = ieee_matmul(a.astype(np.float64), w_eff.astype(np.float64))
        if bias is not None:
            ref = ref + np.asarray(bias, np.float64)
        got = np.asarray(out).astype(np.float64)
        err = np.abs(got - ref)
        # where the bound is infinite, compare by class: NaN -> NaN, ±inf -> itself, overflow -> same sign
        same_class = np.where(np.isnan(ref), np.isnan(got),
                              np.where(np.isinf(ref), got == ref, ~np.isnan(got) & (np.sign(got) == np.sign(ref))))
        bad = np.where(np.isfinite(bound), ~(err <= bound), ~same_class)
        order_dependent = fp32_accumulator_may_overflow(a, w_eff, channel_scales=channel_scales)
        bad &= ~(order_dependent & ~np.isfinite(got))
    if bad.any():
        idx = np.argwhere(bad)[:report.SHOWN]
        shown = "; ".join(f"out[{i}, {j}] = {got[i, j]!r}, ref {ref[i, j]!r}, |err| {err[i, j]:.3g} > bound "
                          f"{bound[i, j]:.3g}" for i, j in idx)
        raise AssertionError(f"{where}: {int(bad.sum())} of {bad.size} outputs outside the §3.6 bound: {shown}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m properties.laws", description=replay.__doc__)
    parser.add_argument("law", help="a law of properties.laws or of the GEMM laws (properties.cases.gemm_cases)")
    parser.add_argument("transform")
    parser.add_argument("case", help="the case as JSON")
    parser.add_argument("--backend", default=None)
    parser.add_argument("--load", action="append", default=[], metavar="PATH_OR_MODULE",
                        help="load a library or module first (as --marlin-load does)")
    args = parser.parse_args(argv)
    load_all(args.load)
    replay(args.law, args.transform, args.case, args.backend)
    print(f"{args.law} holds for {args.transform} on {args.case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
