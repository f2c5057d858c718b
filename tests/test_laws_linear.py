"""The end-to-end law (properties.cases.linear_cases): the backend's prepare, then the backend's linear layer, equal
the checkpoint's mathematics: one-hot rows bit for bit, normal rows within the §3.6 bound; every scheme (tensor,
per-shard, channel, block incl. ragged, MXFP8), K padded and N sliced, bias present and absent, once per cell."""

import pytest
from hypothesis import given, strategies as st

from properties.cases.gemm_cases import NORMAL, ONE_HOT
from properties.cases.linear_cases import LINEAR_ROWS, check
from properties.cases.transforms import cell_ids, cells_of
from properties.pytest_plugin import examples

LINEAR = cells_of(LINEAR_ROWS)


@pytest.mark.parametrize("row, cell", LINEAR, ids=cell_ids(LINEAR))
@given(data=st.data())
@examples(0.5)
def test_linear_one_hot_is_exact(backend, row, cell, data):
    # apply(one-hot x, prepare(W, s, b)) reads RT(W_eff[k, n]) (+ b[n]) back, bit for bit.
    check("linear_one_hot_is_exact", backend, row, data.draw(row.cases_in(cell, activations=ONE_HOT), label="case"))


@pytest.mark.parametrize("row, cell", LINEAR, ids=cell_ids(LINEAR))
@given(data=st.data())
@examples(0.5)
def test_linear_within_bound(backend, row, cell, data):
    # apply(x, prepare(W, s, b)) is within marlin_gemm_error_bound of x · dequant(W, s) + b.
    check("linear_within_bound", backend, row, data.draw(row.cases_in(cell, activations=NORMAL), label="case"))
