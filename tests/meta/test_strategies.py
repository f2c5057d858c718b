"""The strategies only produce valid inputs, reach the cases that matter, and shrink to the smallest.

Valid = the oracle accepts the built inputs without an error (its checks are the contract's), the case
is plain JSON, and building is deterministic. Reachable = hypothesis.find meets each interesting case.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings, strategies as st

from properties.cases import strategies as S
from properties.cases import transforms as T
from properties.seam.backends import oracle
from properties.laws import run_op
from properties.pytest_plugin import examples

FIND = settings(database=None, max_examples=3000, suppress_health_check=list(HealthCheck), deadline=None)


@pytest.mark.parametrize("row", T.TRANSFORMS, ids=str)
@given(data=st.data())
@examples(0.5)
def test_cases_are_valid_json_and_the_oracle_accepts_them(row, data):
    case = data.draw((row.roundtrip_cases or row.cases)() if data.draw(st.booleans(), label="rt") else row.cases(),
                     label="case")
    assert json.loads(json.dumps(case)) == case
    first, second = row.build(case), row.build(case)
    for key, value in first.items():
        if isinstance(value, np.ndarray):
            assert value.tobytes() == second[key].tobytes(), f"{key} is not deterministic"
            assert value.flags.writeable and value.flags.c_contiguous
    run_op(oracle(), row.op, first)   # raises on an invalid input; also checks nothing is mutated


@given(case=S.repack_cases())
@examples(0.5)
def test_repack_shapes_are_tile_multiples(case):
    assert case["size_k"] % 16 == 0 and case["size_n"] % 64 == 0
    assert case["size_k"] * case["size_n"] <= S.MAX_ELEMENTS


@given(case=S.fp8_layer_cases())
@examples(0.5)
def test_fp8_scale_schemes_are_well_formed(case):
    scale = T.fp8_scale(case, case["size_n"], case["size_k"])
    assert scale.ndim == case["scale_rank"]
    if case["scheme"] == "block":   # K whole blocks of 128, N a multiple of 16 in at most 3 block columns
        assert case["size_k"] % S.FP8_BLOCK_K == 0 and case["size_n"] % 16 == 0
        assert 0 < case["size_n"] <= 3 * case["block_n"]
    if case["scheme"] == "tensor":
        assert scale.size == 1
    elif case["scheme"] == "shard_widths":
        widths = case["logical_widths"]
        assert sum(widths) == case["size_n"] and len(set(widths)) > 1 and scale.size == len(widths)
    else:
        assert scale.size == 1 or np.unique(scale.astype(np.float32)).size > 1, "scales must never be all equal"


@given(case=S.fp8_layer_cases(), salt=st.integers(0, 9))
@examples(0.5)
def test_bias_and_scales_are_distinct(case, salt):
    bias = T.distinct(T.rng_for(case, salt), case["size_n"], case["orig_dtype"], T.BIAS_EXPONENTS, signed=True)
    assert np.unique(bias.astype(np.float32)).size == case["size_n"]


def test_fp8_contents_carry_special_and_planted_codes():
    case = {"seed": 1, "specials": "many", "plants": [[5, 0x7F], [6, 0x80]]}
    codes = T.fp8_codes(case, (16, 64))
    assert codes.reshape(-1)[5] == 0x7F and codes.reshape(-1)[6] == 0x80
    assert set(S.FP8_SPECIAL_CODES) <= set(codes.reshape(-1).tolist())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_e8m0_codes_hold_every_boundary_code_the_dtype_can_carry(dtype):
    codes = T.e8m0_codes({"seed": 0}, (4, 64), dtype)
    lo, hi = S.E8M0_FP16_RANGE if dtype == "float16" else (0, 255)
    assert codes.min() >= lo and codes.max() <= hi
    assert {c for c in S.E8M0_BOUNDARY_CODES if lo <= c <= hi} <= set(codes.reshape(-1).tolist())


def test_model_dims_are_legal_and_bounded():
    dims = find(st.lists(S.model_dims(multiple=64, other=128), min_size=1), lambda d: len(set(d)) > 3, settings=FIND)
    assert all(d % 64 == 0 and d * 128 <= S.MAX_ELEMENTS for d in dims)


def test_bounds_are_checked_when_the_strategy_is_built():
    with pytest.raises(ValueError, match="max_k_tiles=0 must be >= 1"):
        S.repack_shapes(max_k_tiles=0)
    with pytest.raises(ValueError, match="multiple_k=24 must be a multiple of 16"):
        S.repack_shapes(multiple_k=24)


# the smallest case of each strategy (shortlex shrinking goes here when nothing else matters)
SMALLEST = [
    (S.repack_cases(), {"size_k": 16, "size_n": 64, "perm": "none", "seed": 0, "plants": []}),
    (S.fp8_layer_cases(), {"size_k": 128, "size_n": 64, "scheme": "channel", "bias": False}),
    (S.fp8_moe_cases(), {"experts": 1, "hidden": 128, "intermediate": 64, "scheme": "channel"}),
    (S.mxfp8_layer_cases(), {"size_k": 128, "size_n": 64, "extra_rows": 0, "intermediate_dtype": "bfloat16"}),
    (S.mxfp8_moe_cases(), {"experts": 1, "hidden": 128, "intermediate": 64}),
    (S.scale_grid_cases(), {"size_n": 64, "group_size": -1, "groups": 1}),
    (S.pack_cases(), {"size_k": 4, "size_n": 1}),
]


@pytest.mark.parametrize(("strategy", "smallest"), SMALLEST,
                         ids=["repack", "fp8_layer", "fp8_moe", "mxfp8_layer", "mxfp8_moe", "scale_grid", "pack"])
def test_shrinks_to_the_smallest_legal_case(strategy, smallest):
    case = find(strategy, lambda c: True, settings=FIND)
    assert {k: case[k] for k in smallest} == smallest


# interesting cases each strategy must reach (spec §2.4 edge, §2.8, §2.10, §6.1 items 6, 11, 12, 13)
REACHABLE = [
    ("square N == K repack", S.repack_cases(), lambda c: c["size_k"] == c["size_n"]),
    ("model dim along N", S.repack_cases(),
     lambda c: c["size_n"] >= 512 and c["size_n"] in {d // tp for d in S.MODEL_DIMS for tp in S.TP_DEGREES}),
    ("random act-order perm", S.repack_cases(), lambda c: c["perm"] == "random"),
    ("ragged block N % block_n != 0", S.fp8_layer_cases(schemes=("block",)),
     lambda c: c["size_n"] % c["block_n"] != 0),
    ("block_n != block_k, ragged", S.fp8_layer_cases(schemes=("block",)),
     lambda c: c["block_n"] == 256 and c["size_n"] % 256 != 0),
    ("MoE block_n 64", S.fp8_moe_cases(schemes=("block",)), lambda c: c["block_n"] == 64),
    ("block with K == block_k (single permutation)", S.fp8_layer_cases(schemes=("block",)),
     lambda c: c["size_k"] == 128),
    ("rank-0 tensor scale", S.fp8_layer_cases(schemes=("tensor",)), lambda c: c["scale_rank"] == 0),
    ("rank-2 channel scale", S.fp8_layer_cases(schemes=("channel",)), lambda c: c["scale_rank"] == 2),
    ("three unequal shard widths", S.fp8_layer_cases(schemes=("shard_widths",)),
     lambda c: len(c["logical_widths"]) == 3),
    ("padded K and N", S.fp8_layer_cases(), lambda c: c["size_k"] % 64 and c["size_n"] % 64),
    ("square prepare", S.fp8_layer_cases(), lambda c: c["size_k"] == c["size_n"]),
    ("fp16 with fp32 checkpoint scales", S.fp8_layer_cases(),
     lambda c: c["orig_dtype"] == "float16" and c["scale_dtype"] == "float32"),
    ("MoE padded per shard", S.fp8_moe_cases(), lambda c: c["intermediate"] % 64 != 0),
    ("MoE block scales, 3 experts", S.fp8_moe_cases(), lambda c: c["scheme"] == "block" and c["experts"] == 3),
    ("MX oversized scale, fp16 intermediate", S.mxfp8_layer_cases(),
     lambda c: c["extra_rows"] and c["extra_cols"] and c["intermediate_dtype"] == "float16"),
    ("grouped scales", S.scale_grid_cases(), lambda c: c["groups"] > 1),
    ("group_size == K", S.scale_grid_cases(), lambda c: c["group_size"] == c["size_k"]),
    ("extreme fused scales in bf16", S.fused_scale_cases(), lambda c: c["magnitudes"] == "extreme"
                                                                       and c["dtype"] == "bfloat16"),
]


@pytest.mark.parametrize(("what", "strategy", "predicate"), REACHABLE, ids=[r[0] for r in REACHABLE])
def test_reaches(what, strategy, predicate):
    assert find(strategy, predicate, settings=FIND)

