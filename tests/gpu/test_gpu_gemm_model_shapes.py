"""GPU tier, the GEMM at real model shapes on the backend under test (properties.cases.model_shapes): K and N from
model dimensions up to 16384 (also divided by tensor-parallel degrees), M from 1 to 4096 on both sides of every
kernel branch, many k-tiles per block and split-K; the oracle checks a drawn sample of rows and columns, one-hot
rows bit for bit and normal rows within the §3.6 bound. A few examples a cell: each moves hundreds of megabytes."""

import pytest
from hypothesis import given, strategies as st

from properties.cases.gemm_cases import NORMAL
from properties.cases.model_shapes import MODEL_ROWS, check
from properties.cases.transforms import cell_ids, cells_of
from properties.pytest_plugin import examples

MODEL = cells_of(MODEL_ROWS)


@pytest.mark.parametrize("row, cell", MODEL, ids=cell_ids(MODEL))
@given(data=st.data())
@examples(0.15)
def test_model_shape_one_hot_is_exact(device_backend, row, cell, data):
    check("model_shape_one_hot_is_exact", device_backend, row, data.draw(row.cases_in(cell), label="case"))


@pytest.mark.parametrize("row, cell", MODEL, ids=cell_ids(MODEL))
@given(data=st.data())
@examples(0.15)
def test_model_shape_within_bound(device_backend, row, cell, data):
    check("model_shape_within_bound", device_backend, row,
          data.draw(row.cases_in(cell, activations=NORMAL), label="case"))
