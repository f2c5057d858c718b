"""Equivalences between inputs that must prepare identically (spec §2.2, §2.8, §2.9, §5, §6.1 items 6, 12)."""

import pytest
from hypothesis import given, strategies as st

from properties.cases import strategies as S
from properties.laws import check
from properties.pytest_plugin import examples
from properties.cases.transforms import by_name

DENSE, MOE = by_name("prepare_fp8_layer_for_marlin"), by_name("prepare_fp8_moe_layer_for_marlin")
CONVERT = by_name("convert_fp8_scales")

SHARDS = ("shard_equal", "shard_widths")

# (law, row, the cases the law applies to, what the cases are)
CASES = [
    ("tensor_equals_channel", DENSE, S.fp8_layer_cases(schemes=("tensor",)), "tensor"),
    ("tensor_equals_channel", CONVERT, S.fp8_layer_cases(schemes=("tensor",)), "tensor"),
    ("tensor_equals_channel", MOE, S.fp8_moe_cases(schemes=("tensor",)), "tensor"),
    ("shard_equals_channel", DENSE, S.fp8_layer_cases(schemes=SHARDS), "shards"),
    ("shard_equals_channel", CONVERT, S.fp8_layer_cases(schemes=SHARDS), "shards"),
    ("shard_equals_channel", MOE, S.fp8_moe_cases(schemes=("shard_equal",)), "gate-up"),
    ("size_k_first_transposes", by_name("pack_fp8_to_int32"), S.pack_cases(), "any"),
    ("size_k_first_transposes", DENSE, S.fp8_layer_cases(), "any"),
    ("size_k_first_transposes", DENSE, S.fp8_layer_cases(square=True), "square"),
    ("moe_equals_per_expert", MOE, S.fp8_moe_cases(aligned=True), "aligned"),
    ("moe_equals_per_expert", by_name("prepare_mxfp8_moe_layer_for_marlin"), S.mxfp8_moe_cases(aligned=True),
     "aligned"),
]


@pytest.mark.parametrize(("law", "row", "cases"), [c[:3] for c in CASES],
                         ids=[f"{law}-{row}-{what}" for law, row, _, what in CASES])
@given(data=st.data())
@examples(1.0)
def test_equivalence(backend, law, row, cases, data):
    # Two spellings of the same layer give the same bytes (the law's docstring says which).
    check(law, backend, row, data.draw(cases, label="case"))
