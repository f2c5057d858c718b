"""Equivalences between inputs that must prepare identically (spec §2.2, §2.8, §2.9, §5, §6.1 items 6, 12), once
per cell of the law's row."""

import pytest
from hypothesis import given, strategies as st

from properties.cases.transforms import by_name
from properties.laws import check
from properties.pytest_plugin import examples

DENSE, MOE = by_name("prepare_fp8_layer_for_marlin"), by_name("prepare_fp8_moe_layer_for_marlin")
CONVERT, MX_MOE = by_name("convert_fp8_scales"), by_name("prepare_mxfp8_moe_layer_for_marlin")
SHARDS = ("shard_equal", "shard_widths")
ANY = lambda cell: True                                                                  # noqa: E731

# (law, row, the cells it applies to, the variant of the row's cases, what the cases are)
LAWS = [
    ("tensor_equals_channel", DENSE, lambda cell: cell.scheme == "tensor", {}, "tensor"),
    ("tensor_equals_channel", CONVERT, lambda cell: cell.scheme == "tensor", {}, "tensor"),
    ("tensor_equals_channel", MOE, lambda cell: cell.scheme.split("/")[0] == "tensor", {}, "tensor"),
    ("shard_equals_channel", DENSE, lambda cell: cell.scheme in SHARDS, {}, "shards"),
    ("shard_equals_channel", CONVERT, lambda cell: cell.scheme in SHARDS, {}, "shards"),
    ("shard_equals_channel", MOE, lambda cell: cell.scheme.split("/")[0] == "shard_equal", {}, "gate-up"),
    ("size_k_first_transposes", by_name("pack_fp8_to_int32"), ANY, {}, "any"),
    ("size_k_first_transposes", DENSE, ANY, {}, "any"),
    ("size_k_first_transposes", DENSE, ANY, {"square": True}, "square"),
    ("moe_equals_per_expert", MOE, ANY, {"aligned": True}, "aligned"),
    ("moe_equals_per_expert", MX_MOE, ANY, {"aligned": True}, "aligned"),
]
PARAMS = [(law, row, cell, variant) for law, row, where, variant, _ in LAWS for cell in row.cells if where(cell)]
IDS = [f"{law}-{row}-{cell.label()}-{what}" for law, row, where, _, what in LAWS for cell in row.cells if where(cell)]


@pytest.mark.parametrize(("law", "row", "cell", "variant"), PARAMS, ids=IDS)
@given(data=st.data())
@examples(1.0)
def test_equivalence(backend, law, row, cell, variant, data):
    # Two spellings of the same layer give the same bytes (the law's docstring says which).
    check(law, backend, row, data.draw(row.cases_in(cell, **variant), label="case"))
