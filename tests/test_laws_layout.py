"""Layout laws of the weight path (spec §2.2, §2.3, §6.2), one parametrized body per law over TRANSFORMS.

The backend under test comes from --marlin-backend (properties.seam.backends); the oracle is marlin_ref.
"""

import pytest
from hypothesis import given, strategies as st

from properties.laws import check
from properties.pytest_plugin import examples
from properties.cases.strategies import with_probe
from properties.cases.transforms import rows

LAYOUT = rows("layout")
REPACK = rows("layout", op="gptq_marlin_repack")


@pytest.mark.parametrize("row", LAYOUT, ids=str)
@given(data=st.data())
@examples(1.0)
def test_matches_oracle(backend, row, data):
    # backend(x) == oracle(x), bit for bit (pack, unpack, repack, unrepack; 8 and 4 bit).
    check("matches_oracle", backend, row, data.draw(row.cases(), label="case"))


@pytest.mark.parametrize("row", rows("layout", invertible=True), ids=str)
@given(data=st.data())
@examples(1.0)
def test_roundtrip(backend, row, data):
    # inverse(forward(x)) == x: unpack∘pack, pack∘unpack, unrepack∘repack, repack∘unrepack.
    check("roundtrip", backend, row, data.draw((row.roundtrip_cases or row.cases)(), label="case"))


@pytest.mark.parametrize("row", REPACK, ids=str)
@given(data=st.data())
@examples(1.0)
def test_repack_is_a_permutation(backend, row, data):
    # The repack moves bytes (nibbles) and never creates, drops or changes one.
    check("repack_is_a_permutation", backend, row, data.draw(row.cases(), label="case"))


@pytest.mark.parametrize("row", REPACK, ids=str)
@given(data=st.data())
@examples(1.0)
def test_repack_moves_one_byte(backend, row, data):
    # Changing W[k, n] changes exactly one output byte (nibble): the one at locate(k, n).
    check("repack_moves_one_byte", backend, row, data.draw(with_probe(row.cases()), label="case"))


@pytest.mark.parametrize("row", REPACK, ids=str)
@given(data=st.data())
@examples(1.0)
def test_perm_equals_permuted_rows(backend, row, data):
    # repack(pack(W), perm) == repack(pack(W[perm]), no perm) (act-order).
    check("perm_equals_permuted_rows", backend, row, data.draw(row.cases(), label="case"))
