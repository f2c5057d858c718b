"""Laws and checks that kill the survivors of the mutmut benchmark (bench/mutmut/run.sh, bench/results/mutmut.md).

mutmut planted its own bugs in marlin_fast; the ones the suite let through showed where the laws' inputs never go.
Each test names the gap it closes (and bench/results/mutmut.md the mutants). Laws of the contract run on the
backend under test (the `backend` fixture) against the oracle, each named by its compliance cell (a marlin_cell
marker: a cell the backend lacks is "not provided") and counted example by example into it (run_counted, which also
keeps a case beyond the backend's limits from being sent). Refusals check our error contract (docs/design.md,
"Errors": the message starts with the function's name and names the argument), which another implementation's
messages need not follow, so they run on marlin_fast (`ours`) and the oracle only, and no external kernel is ever
sent a case it would reject. The formats and padding helpers that marlin_fast exports outside the contract are
compared with marlin_ref's functions of the same names directly, as tests/test_bad_input.py does.
"""

from __future__ import annotations

import importlib
import re

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from marlin_ref import formats as ref_formats
from marlin_ref import padding as ref_padding
from properties.cases import linear_cases as L
from properties.cases.transforms import by_name
from properties.laws import run_counted, run_op
from properties.pytest_plugin import examples
from properties.reporting.report import Layout, assert_bit_exact, assert_fields_bit_exact
from properties.seam.backends import get_backend, oracle, torch_adapter
from properties.seam.capabilities import Cell

E4M3, E8M0, BF16 = (np.dtype(d) for d in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e8m0fnu, ml_dtypes.bfloat16))
BIAS_DTYPES = (np.dtype(np.float16), BF16, np.dtype(np.float32))   # what the pipelines accept for a bias (§2.8)


def same_as_oracle(backend, op: str, kwargs: dict, where: str) -> None:
    """backend.op(**kwargs) == oracle.op(**kwargs), bit for bit (a NamedTuple field by field)."""
    __tracebackhide__ = True
    got, want = run_op(backend, op, kwargs), run_op(oracle(), op, kwargs)
    if hasattr(want, "_fields"):
        assert_fields_bit_exact(got, want, where=where, layouts={f: Layout() for f in want._fields})
    else:
        assert_bit_exact(got, want, where=where)


def same_as_oracle_counted(backend, row, case: dict, kwargs: dict, where: str) -> None:
    """same_as_oracle on kwargs built from `case` of `row`, counted into the case's compliance cell."""
    __tracebackhide__ = True
    run_counted(lambda b, r, c: same_as_oracle(b, r.op, kwargs, where), backend, row, case,
                f"tests/test_mutation_survivors.py: {where}")


def drawn(data, cell: Cell) -> tuple:
    """(row, case, its keyword arguments) for a case drawn from one cell of a transform row."""
    row = by_name(cell.op)
    case = data.draw(row.cases_in(cell), label="case")
    return row, case, row.build(case)


@pytest.fixture(scope="module")
def ours():
    """marlin_fast on CPU tensors: the implementation whose error messages follow our contract."""
    return get_backend("torch")


def on_cell(*cell: str):
    """pytest.param(Cell, marked as that compliance cell)."""
    return pytest.param(Cell(*cell), marks=pytest.mark.marlin_cell(*cell), id="-".join(cell[:1] + cell[1:]))


def raises_naming(fn, exc, name: str, op: str, **kwargs) -> str:
    """fn(**kwargs) raises `exc` with a message "<op>: <name>..." (design.md, "Errors": the message starts with the
    function's name and names the argument)."""
    __tracebackhide__ = True
    with pytest.raises(exc) as info:
        fn(**kwargs)
    message = str(info.value)
    assert re.match(rf"{re.escape(op)}: {re.escape(name)}(?![A-Za-z0-9_])", message), \
        f"{op}: the message must start with '{op}: {name}': {message!r}"
    return message


# --- defaults: a keyword left out means the contract's default -------------------------------------------------
# Gap: the rows always pass every keyword, so a wrong default (size_k_first=False, dtype="float64") never shows.

DEFAULTS = [("size_k_first", True, on_cell("convert_fp8_scales", "block", "bfloat16")),
            ("size_k_first", True, on_cell("prepare_fp8_layer_for_marlin", "block", "bfloat16")),
            ("dtype", "float32", on_cell("mxfp8_marlin_unprocess_scales", "mx", "float32")),
            ("intermediate_dtype", "bfloat16", on_cell("prepare_mxfp8_layer_for_marlin", "mx", "bfloat16"))]


@pytest.mark.parametrize("keyword, default, cell", [pytest.param(k, d, *c.values, marks=c.marks, id=f"{c.id}-{k}")
                                                    for k, d, c in DEFAULTS])
@given(data=st.data())
@examples(0.5)
def test_a_keyword_left_out_takes_the_contract_default(backend, keyword, default, cell, data):
    row, case, kwargs = drawn(data, cell)
    assume(kwargs[keyword] == default)
    del kwargs[keyword]
    same_as_oracle_counted(backend, row, case, kwargs, f"{row.op} without {keyword}= (default {default!r})")


# --- a bias of another dtype than the layer's --------------------------------------------------------------------
# Gap: the rows build every bias in the layer's own dtype (orig_dtype, bf16 for MXFP8), so a pipeline that forgets
# to cast the bias to the output dtype passes. The pipelines take float16, bfloat16 and float32 biases.

BIAS_CELLS = [(("bias",), on_cell("prepare_fp8_layer_for_marlin", "channel", "float16", "bias")),
              (("w13_bias", "w2_bias"), on_cell("prepare_fp8_moe_layer_for_marlin", "channel", "bfloat16", "bias")),
              (("bias",), on_cell("prepare_mxfp8_layer_for_marlin", "mx", "bfloat16", "bias"))]


@pytest.mark.parametrize("keys, cell", [pytest.param(k, *c.values, marks=c.marks, id=c.id) for k, c in BIAS_CELLS])
@pytest.mark.parametrize("bias_dtype", BIAS_DTYPES, ids=str)
@given(data=st.data())
@examples(0.3)
def test_a_bias_of_any_accepted_dtype_is_cast_like_the_oracle(backend, keys, cell, bias_dtype, data):
    row, case, kwargs = drawn(data, cell)
    kwargs.update({k: kwargs[k].astype(np.float64).astype(bias_dtype) for k in keys})
    same_as_oracle_counted(backend, row, case, kwargs, f"{row.op} with {bias_dtype} biases")


# --- dtype arguments: a name that is no dtype is refused under the argument's name --------------------------------
# Gap: the bad-input battery has no unknown dtype name for these arguments, so the argument's name in the message
# is never checked.

DTYPE_ARGUMENTS = [("convert_fp8_scales", "orig_dtype"), ("convert_fp8_moe_scales[w13]", "orig_dtype"),
                   ("mxfp8_scales_to_float", "intermediate_dtype"), ("mxfp8_marlin_unprocess_scales", "dtype"),
                   ("prepare_fp8_layer_for_marlin", "orig_dtype"), ("prepare_fp8_moe_layer_for_marlin", "orig_dtype"),
                   ("prepare_mxfp8_layer_for_marlin", "intermediate_dtype"),
                   ("prepare_mxfp8_moe_layer_for_marlin", "intermediate_dtype")]


@pytest.mark.parametrize("name, argument", DTYPE_ARGUMENTS, ids=[f"{n}-{a}" for n, a in DTYPE_ARGUMENTS])
@pytest.mark.parametrize("value", ["float7", "int8"])
def test_a_bad_dtype_name_is_refused_under_the_argument_name(ours, name, argument, value):
    row = by_name(name)
    from hypothesis import find
    kwargs = row.build(find(row.cases(), lambda case: True))     # the smallest valid case
    for b in (ours, oracle()):
        raises_naming(b.op(row.op), ValueError, argument, row.op, **{**kwargs, argument: value})


# --- the linear layer: the leading shape of the input is free, [K] included ---------------------------------------
# Gap: linear_cases draws inputs [M, K] and [2, M/2, K], never a plain vector [K].

@pytest.mark.parametrize("cell", [on_cell(L.FP8, "channel", "bfloat16"), on_cell(L.MX, "mx", "bfloat16")])
@given(data=st.data())
@examples(0.5)       # these cells' share of the floor when this file runs alone (pytest plugin: thin cells)
def test_linear_on_a_vector_is_its_row(backend, cell, data):
    op, row = cell.op, L.row_named(cell.op)

    def vector_is_its_row(backend, row, case):
        layer = run_op(backend, L.PREPARE[op], L.checkpoint(op, case))
        x, _ = L.G.activations_of(case, L.activation_dtype(op, case))              # [M, K]
        args = {"weight": layer.qweight, "weight_scale": layer.scales, "size_n": case["size_n"],
                "size_k": case["size_k"], "bias": layer.bias}
        rows = run_op(backend, op, {**args, "input": x[:1]})                        # [1, N]
        vector = run_op(backend, op, {**args, "input": np.ascontiguousarray(x[0])})  # [N]
        assert_bit_exact(vector, rows[0], where=f"{op}(x[0]) vs {op}(x[:1])[0] on {backend.name!r}")

    case = data.draw(row.cases_in(cell), label="case")
    run_counted(vector_is_its_row, backend, row, case, f"tests/test_mutation_survivors.py: {op} on a vector")


@pytest.mark.parametrize("op", [L.FP8, L.MX])
def test_linear_refuses_a_float32_input_under_its_name(ours, op):
    row = L.row_named(op)
    from hypothesis import find
    case = find(row.cases(), lambda case: True)
    layer = run_op(oracle(), L.PREPARE[op], L.checkpoint(op, case))
    args = {"weight": layer.qweight, "weight_scale": layer.scales, "size_n": case["size_n"],
            "size_k": case["size_k"], "bias": layer.bias,
            "input": np.zeros((2, case["size_k"]), np.float32)}
    for b in (ours, oracle()):
        with pytest.raises((TypeError, ValueError)) as info:
            b.op(op)(**args)
        assert str(info.value).startswith(f"{op}: input"), str(info.value)


# --- MXFP8 scale processing: the e8m0 range's lower end, and one bad entry -----------------------------------------
# Gap: the bad-input battery has no scale just below 2^-127 and no grid with a single bad entry.

@pytest.mark.parametrize("bad", [2.0 ** -128, 2.0 ** -129, 3.0, 2.0 ** 128], ids=["2^-128", "2^-129", "3", "2^128"])
@pytest.mark.parametrize("where", [(0, 0), (1, 63)])
def test_process_scales_refuses_one_value_outside_e8m0(ours, bad, where):
    ms = np.full((2, 64), 2.0 ** -127, np.float64)
    ms[where] = bad
    for b in (ours, oracle()):
        raises_naming(b.op("mxfp8_marlin_process_scales"), ValueError, "ms", "mxfp8_marlin_process_scales",
                      ms=ms)


@pytest.mark.marlin_cell("mxfp8_marlin_process_scales", "mx", "float32")
def test_process_scales_keeps_the_ends_of_the_e8m0_range(backend):
    # codes 0 and 254: 2^-127 is a float32 subnormal, 2^127 the largest power of two float32 holds
    ms = np.array([[2.0 ** -127, 2.0 ** 127, 0.0, np.inf] * 16], np.float32)   # [1, 64]
    same_as_oracle(backend, "mxfp8_marlin_process_scales", {"ms": ms}, "mxfp8_marlin_process_scales at 2^±127")


# --- marlin_fast's own exports outside the contract: formats and padding helpers, against marlin_ref's ------------
# Gap: the laws reach these only through the pipelines, on finite in-range values and with the default keywords.

fast = importlib.import_module("marlin_fast")


def fast_call(name: str):
    return torch_adapter(getattr(fast, name))


ALL_CODES = np.arange(256, dtype=np.uint8)
SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 2.0 ** -9, -2.0 ** -9, 2.0 ** -10, 2.0 ** -11, 448.0, -448.0, 464.0,
                    -464.0, 465.0, -465.0, 480.0, 1e6, -1e6, np.inf, -np.inf, np.nan, -np.nan, 1 + 2 ** -4,
                    1 + 2 ** -4 + 2 ** -40, 1.5 - 2 ** -40, 3 * 2.0 ** -10, 2.0 ** -127, 2.0 ** 127, 2.0 ** 128],
                   np.float64)


@pytest.mark.parametrize("kwargs", [{}, {"nan_as": 480.0}, {"nan_as": None}], ids=["default", "480", "None"])
def test_decode_e4m3_every_code(kwargs):
    assert_bit_exact(fast_call("decode_e4m3")(ALL_CODES, **kwargs), ref_formats.decode_e4m3(ALL_CODES, **kwargs),
                     where=f"decode_e4m3(all codes, {kwargs})")


@pytest.mark.parametrize("kwargs", [{}, {"kernel_faithful": False}, {"kernel_faithful": True}],
                         ids=["default", "plain", "kernel"])
def test_decode_e8m0_every_code(kwargs):
    got, want = fast_call("decode_e8m0")(ALL_CODES, **kwargs), ref_formats.decode_e8m0(ALL_CODES, **kwargs)
    assert_bit_exact(got, want, where=f"decode_e8m0(all codes, {kwargs})", nan_payloads=False)


@pytest.mark.parametrize("kwargs", [{}, {"saturate": False}, {"saturate": True}], ids=["default", "nan", "saturate"])
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=16))
@examples(0.5)
def test_encode_e4m3_specials_and_any_float(kwargs, values):
    x = np.concatenate([SPECIAL, np.array(values, np.float64)])
    assert_bit_exact(fast_call("encode_e4m3")(x, **kwargs), ref_formats.encode_e4m3(x, **kwargs),
                     where=f"encode_e4m3({kwargs})")


@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=16))
@examples(0.5)
def test_encode_e8m0_specials_and_any_float(values):
    # float64 -> float32 first (torch's rule), which decides values such as 1.5 - 2^-40 (-> 1.5 -> code 128)
    x = np.concatenate([SPECIAL, np.array(values, np.float64)])
    assert_bit_exact(fast_call("encode_e8m0")(x), ref_formats.encode_e8m0(x), where="encode_e8m0")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=16))
@examples(0.5)
def test_round_to_dtype_specials_and_any_float(dtype, values):
    x = np.concatenate([SPECIAL, np.array(values, np.float64), np.array([65504.0, 65520.0, -65520.0])])
    assert_bit_exact(fast_call("round_to_dtype")(x, dtype), ref_formats.round_to_dtype(x, dtype),
                     where=f"round_to_dtype(x, {dtype})")


@pytest.mark.parametrize("num_bits", [4, 8])
@pytest.mark.parametrize("lead", [(), (3,)], ids=["2d", "3d"])
def test_marlin_repacked_nk_like_the_oracle(num_bits, lead):
    pack = 32 // num_bits
    # any N with 16·N a whole number of words, not only the GEMM's multiples of 64
    for k_tiles, n in [(1, 64), (3, 128), (8, 192), (2, 1), (1, 4), (5, 17), (2, 2)]:
        if 16 * n % pack:
            continue
        qweight = np.zeros((*lead, k_tiles, 16 * n // pack), np.int32)
        got = fast_call("marlin_repacked_nk")(qweight, num_bits)
        want = ref_padding.marlin_repacked_nk(qweight, num_bits)
        assert tuple(got) == tuple(want) and all(type(v) is int for v in got), (got, want)


@pytest.mark.parametrize("lead", [(), (2,), (2, 3)], ids=["1d", "2d", "3d"])
def test_marlin_unpad_output_like_the_oracle(lead):
    output = np.arange(np.prod(lead, dtype=int) * 128, dtype=np.float32).reshape(*lead, 128).astype(BF16)
    assert_bit_exact(fast_call("marlin_unpad_output")(output, 100, 128), ref_padding.marlin_unpad_output(output, 100, 128),
                     where=f"marlin_unpad_output({list(lead)} + [128])")


def test_the_linear_layers_carry_their_contract_names():
    # marlin_fast builds both layers with apply_with(gemm) while it is imported; their names are the contract's.
    for name in ("apply_fp8_marlin_linear", "apply_mxfp8_marlin_linear"):
        fn = getattr(fast, name)
        assert (fn.__name__, fn.__qualname__) == (name, name)


# --- the linear layer when padded K is an odd multiple of 64 -------------------------------------------------------
# Gap: the linear cases never pick the (ru(N, 128), ru(K, 64)) tile family with K % 128 != 0 after padding, where
# only channel-wise scales (G = 1) are valid.

ODD_K = [(128, 64), (128, 192), (256, 320)]     # (size_n, size_k): padded_k = 64, 192, 320


@pytest.mark.parametrize("size_n, size_k", ODD_K, ids=[f"n{n}-k{k}" for n, k in ODD_K])
@pytest.mark.parametrize("cell", [on_cell(L.FP8, scheme, "bfloat16") for scheme in ("channel", "tensor")])
def test_linear_one_hot_when_padded_k_is_an_odd_multiple_of_64(backend, size_n, size_k, cell):
    from hypothesis import find
    from properties.cases.gemm_cases import ONE_HOT
    row = L.row_named(L.FP8)
    case = find(row.cases_in(cell, activations=ONE_HOT), lambda case: True)
    case = {**case, "size_n": size_n, "size_k": size_k, "rows": min(case["rows"], size_k), "lead": [1]}
    assert ref_padding.marlin_padded_nk(size_n, size_k, -1)[1] % 128 == 64
    L.check("linear_one_hot_is_exact", backend, row, case)


@pytest.mark.parametrize("size_n, size_k", [(256, 320), (128, 448)], ids=["n256-k320", "n128-k448"])
def test_linear_refuses_group_scales_when_padded_k_is_no_multiple_of_128(ours, size_n, size_k):
    from hypothesis import find
    row = L.row_named(L.FP8)
    case = {**find(row.cases(schemes=("channel",)), lambda case: True), "size_n": size_n, "size_k": size_k}
    layer = run_op(oracle(), L.PREPARE[L.FP8], L.checkpoint(L.FP8, case))
    groups = layer.padded_k // 128                                          # a grid the kernel has no group for
    args = {"input": np.zeros((1, size_k), layer.scales.dtype), "weight": layer.qweight,
            "weight_scale": np.ones((groups, layer.padded_n), layer.scales.dtype), "size_n": size_n,
            "size_k": size_k, "bias": None}
    for b in (ours, oracle()):
        raises_naming(b.op(L.FP8), ValueError, "weight_scale", L.FP8, **args)


# --- formats on every accepted input dtype ---------------------------------------------------------------------------
# Gap: marlin_fast's encoders are reached only with float64 (and through the pipelines with float scales).

REAL_INPUTS = [np.float64, np.float32, np.float16, BF16, np.int64, np.int32, np.int8, np.uint8]


@pytest.mark.parametrize("dtype", REAL_INPUTS, ids=lambda d: np.dtype(d).name)
def test_encoders_take_every_real_dtype_like_the_oracle(dtype):
    x = np.array([0, 1, -1, 3, 100, -100, 127, 500, -500, 70000], np.float64)
    x = x[(x >= np.iinfo(dtype).min) & (x <= np.iinfo(dtype).max)] if np.dtype(dtype).kind in "iu" else x
    x = np.concatenate([x, SPECIAL]) if np.dtype(dtype).kind == "f" else x
    with np.errstate(over="ignore", invalid="ignore"):
        x = x.astype(dtype)
    for name, kwargs in [("encode_e4m3", {}), ("encode_e4m3", {"saturate": True}), ("encode_e8m0", {})]:
        assert_bit_exact(fast_call(name)(x, **kwargs), getattr(ref_formats, name)(x, **kwargs),
                         where=f"{name}({np.dtype(dtype).name} values, {kwargs})")
    for target in ("float16", "bfloat16"):
        assert_bit_exact(fast_call("round_to_dtype")(x, target), ref_formats.round_to_dtype(x, target),
                         where=f"round_to_dtype({np.dtype(dtype).name} values, {target})")


# --- block sizes the FP8 pipelines refuse, under their own names ---------------------------------------------------
# Gap: no bad weight_block_size reaches the MoE pipeline, and no block_k that only the padded intermediate size
# splits into several groups.

def _moe_block_args(block, k=256, n=512, experts=1):
    bn, bk = block
    fp8 = lambda *shape: np.zeros(shape, np.uint8).view(E4M3)                                # noqa: E731
    return {"w13": fp8(experts, 2 * n, k), "w2": fp8(experts, k, n),
            "w13_scale": np.ones((experts, -(-2 * n // bn), -(-k // bk)), np.float32),
            "w2_scale": np.ones((experts, -(-k // bn), -(-n // bk)), np.float32),
            "orig_dtype": "bfloat16", "weight_block_size": list(block)}


@pytest.mark.parametrize("bad", [[128], [128, 128, 1], "128", [0, 128], [128, -1]], ids=str)
def test_the_moe_pipeline_refuses_a_bad_block_size_under_its_name(ours, bad):
    op = "prepare_fp8_moe_layer_for_marlin"
    args = {**_moe_block_args((128, 128)), "weight_block_size": bad}
    for b in (ours, oracle()):
        with pytest.raises((TypeError, ValueError)) as info:
            b.op(op)(**args)
        assert str(info.value).startswith(f"{op}: "), str(info.value)


def test_the_moe_pipeline_refuses_block_k_that_splits_the_padded_intermediate(ours):
    # block_k = 256 = hidden: one group along k, but the padded intermediate (512) holds two: no FP8 kernel
    op = "prepare_fp8_moe_layer_for_marlin"
    for b in (ours, oracle()):
        with pytest.raises(ValueError) as info:
            b.op(op)(**_moe_block_args((128, 256)))
        assert str(info.value).startswith(f"{op}: "), str(info.value)


# --- the padding helpers on every accepted group size -----------------------------------------------------------
# Gap: the pipelines reach the padding helpers with group sizes of real kernels only (-1, 128, block_k), so a
# helper that treats a group of 1 or 2 as channel-wise, or picks the other tile family on a tie, passes.

def same_outcome(name: str, ref_fn, fast_fn, **kwargs) -> None:
    """fast(**kwargs) == ref(**kwargs) bit for bit, or both refuse with the same exception type under the name."""
    __tracebackhide__ = True
    try:
        want = ref_fn(**kwargs)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)) as info:
            fast_fn(**kwargs)
        assert str(info.value).startswith(f"{name}: "), str(info.value)
        return
    got = fast_fn(**kwargs)
    if isinstance(want, np.ndarray):
        assert_bit_exact(got, want, where=f"{name}({ {k: getattr(v, 'shape', v) for k, v in kwargs.items()} })")
    else:
        assert (tuple(got) == tuple(want)) if isinstance(want, tuple) else (got == want), (name, kwargs, got, want)


# every size class around the tiles (64, 128) and groups that split them oddly (3: lcm(128, 3) == 2·lcm(64, 3), where
# the two tile families tie on area and the smaller sum decides)
SIZES = (1, 17, 63, 64, 65, 100, 127, 128, 129, 192, 200, 256, 320)
GROUP_SIZES = (-1, 1, 2, 3, 4, 16, 32, 48, 64, 96, 128, 192, 256)


def test_padding_helpers_like_the_oracle_on_every_group_size():
    for size_n in SIZES:
        for group_size in GROUP_SIZES:
            same_outcome("marlin_moe_padded_intermediate", ref_padding.marlin_moe_padded_intermediate,
                         fast_call("marlin_moe_padded_intermediate"), size_n=size_n, group_size=group_size)
            for size_k in SIZES:
                same_outcome("marlin_padded_nk", ref_padding.marlin_padded_nk, fast_call("marlin_padded_nk"),
                             size_n=size_n, size_k=size_k, group_size=group_size)
                padded_n, padded_k = ref_padding.marlin_padded_nk(size_n, size_k, group_size)
                rows = 1 if group_size == -1 else -(-size_k // group_size)
                for off_by, dtype in ((0, np.float16), (-1, np.float16), (1, np.float16), (0, E8M0)):
                    # the right number of scale rows and not; raw e8m0 bytes, padded with the zero *byte*
                    scales = (np.arange((rows + off_by) * size_n) % 251).reshape(rows + off_by, size_n)
                    scales = scales.astype(np.uint8).view(E8M0) if dtype == E8M0 else scales.astype(dtype)
                    same_outcome("marlin_pad_scales", ref_padding.marlin_pad_scales, fast_call("marlin_pad_scales"),
                                 scales=scales, size_n=size_n, size_k=size_k, padded_n=padded_n, padded_k=padded_k,
                                 group_size=group_size)


@pytest.mark.parametrize("block_k", [1, 2, 64], ids=lambda b: f"block_k={b}")
def test_the_dense_pipeline_refuses_block_k_of_no_fp8_kernel(ours, block_k):
    # Gap: the block cases draw block_k 128 only; smaller blocks give several groups along K, and FP8 Marlin kernels
    # exist for one group or group 128 only (§4.2).
    op, size_n, size_k = "prepare_fp8_layer_for_marlin", 128, 256
    args = {"weight": np.zeros((size_k, size_n), np.uint8).view(E4M3),
            "weight_scale": np.ones((-(-size_k // block_k), 1), np.float32), "orig_dtype": "bfloat16",
            "size_k_first": True, "weight_block_size": [128, block_k]}
    for b in (ours, oracle()):
        with pytest.raises(ValueError) as info:
            b.op(op)(**args)
        assert str(info.value).startswith(f"{op}: block_k={block_k}"), str(info.value)


@pytest.mark.parametrize("spelling", ["float16", "bf16", np.float16, ml_dtypes.bfloat16, np.dtype("float16"),
                                      np.dtype(ml_dtypes.bfloat16)], ids=repr)
def test_activation_dtype_spellings_read_alike(spelling):
    # The oracle takes NumPy and ml_dtypes dtypes as well as names; marlin_fast must read each as the same dtype
    # (a NumPy dtype read as a name, or not read at all, is a refusal of a valid call).
    want = np.dtype(ref_formats.as_activation_dtype(spelling)).name                  # "float16" / "bfloat16"
    assert str(fast.as_activation_dtype(spelling)).removeprefix("torch.") == want
