"""Scale and bias laws (spec §2.4-§2.7, §2.8 step 4, §2.9 step 3, §2.11): the permutations, the
exponent-bias fusion, the e8m0 processing, the scheme conversions and the padding helpers."""

import pytest
from hypothesis import given, strategies as st

from properties.laws import check
from properties.pytest_plugin import examples
from properties.cases.transforms import rows

SCALES = rows("scales") + rows("helper")


@pytest.mark.parametrize("row", SCALES, ids=str)
@given(data=st.data())
@examples(1.0)
def test_matches_oracle(backend, row, data):
    # backend(x) == oracle(x), bit for bit (decoded NaNs: any payload, see laws.NAN_PAYLOAD_FREE).
    check("matches_oracle", backend, row, data.draw(row.cases(), label="case"))


@pytest.mark.parametrize("row", rows("scales", invertible=True), ids=str)
@given(data=st.data())
@examples(1.0)
def test_roundtrip(backend, row, data):
    # inverse(forward(x)) == x for every scale/bias transform, where the inverse is exact.
    check("roundtrip", backend, row, data.draw((row.roundtrip_cases or row.cases)(), label="case"))
