"""The four prepare pipelines (spec §2.8-§2.10): dense and MoE, FP8 and MXFP8, equal the oracle field
by field and bit for bit, over every scale scheme, padding, bias and intermediate dtype."""

import pytest
from hypothesis import given, strategies as st

from properties.laws import check
from properties.pytest_plugin import examples
from properties.cases.transforms import rows


@pytest.mark.parametrize("row", rows("prepare"), ids=str)
@given(data=st.data())
@examples(1.0)
def test_matches_oracle(backend, row, data):
    # prepare_*(x) on the backend == on the oracle: qweight, scales, bias and the size fields.
    check("matches_oracle", backend, row, data.draw(row.cases(), label="case"))
