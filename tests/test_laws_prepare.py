"""The four prepare pipelines (spec §2.8-§2.10): dense and MoE, FP8 and MXFP8, equal the oracle field by field and
bit for bit, over every scale scheme, padding, bias and intermediate dtype, once per cell."""

import pytest
from hypothesis import given, strategies as st

from properties.cases.transforms import cell_ids, cells_of, rows
from properties.laws import check
from properties.pytest_plugin import examples

PREPARE = cells_of(rows("prepare"))


@pytest.mark.parametrize("row, cell", PREPARE, ids=cell_ids(PREPARE))
@given(data=st.data())
@examples(1.0)
def test_matches_oracle(backend, row, cell, data):
    # prepare_*(x) on the backend == on the oracle: qweight, scales, bias and the size fields.
    check("matches_oracle", backend, row, data.draw(row.cases_in(cell), label="case"))
