"""Scale and bias laws (spec §2.4-§2.7, §2.8 step 4, §2.9 step 3, §2.11): the permutations, the exponent-bias
fusion, the e8m0 processing, the scheme conversions and the padding helpers, once per cell."""

import pytest
from hypothesis import given, strategies as st

from properties.cases.transforms import cell_ids, cells_of, rows
from properties.laws import check
from properties.pytest_plugin import examples

SCALES = cells_of(rows("scales") + rows("helper"))
ROUNDTRIP = cells_of(rows("scales", invertible=True))


@pytest.mark.parametrize("row, cell", SCALES, ids=cell_ids(SCALES))
@given(data=st.data())
@examples(1.0)
def test_matches_oracle(backend, row, cell, data):
    # backend(x) == oracle(x), bit for bit (decoded NaNs: any payload, see laws.NAN_PAYLOAD_FREE).
    check("matches_oracle", backend, row, data.draw(row.cases_in(cell), label="case"))


@pytest.mark.parametrize("row, cell", ROUNDTRIP, ids=cell_ids(ROUNDTRIP))
@given(data=st.data())
@examples(1.0)
def test_roundtrip(backend, row, cell, data):
    # inverse(forward(x)) == x for every scale/bias transform, where the inverse is exact.
    check("roundtrip", backend, row, data.draw(row.cases_in(cell, roundtrip=True), label="case"))
