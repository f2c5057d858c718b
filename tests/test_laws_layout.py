"""Layout laws of the weight path (spec §2.2, §2.3, §6.2), one parametrized body per law over TRANSFORMS' cells.

The backend under test comes from --marlin-backend (properties.seam.backends); the oracle is marlin_ref. Each law
runs once per cell (properties.seam.capabilities), so every cell has the profile's whole example budget, and a
cell the backend does not provide is "not provided" before a single example is drawn.
"""

import pytest
from hypothesis import given, strategies as st

from properties.cases.strategies import with_probe
from properties.cases.transforms import cell_ids, cells_of, rows
from properties.laws import check
from properties.pytest_plugin import examples

LAYOUT = cells_of(rows("layout"))
ROUNDTRIP = cells_of(rows("layout", invertible=True))
REPACK = cells_of(rows("layout", op="gptq_marlin_repack"))
REPACK_NO_PERM = cells_of(rows("layout", op="gptq_marlin_repack"), lambda cell: cell.feature != "perm")
REPACK_PERM = cells_of(rows("layout", op="gptq_marlin_repack"), lambda cell: cell.feature == "perm")


@pytest.mark.parametrize("row, cell", LAYOUT, ids=cell_ids(LAYOUT))
@given(data=st.data())
@examples(1.0)
def test_matches_oracle(backend, row, cell, data):
    # backend(x) == oracle(x), bit for bit (pack, unpack, repack, unrepack; 8 and 4 bit).
    check("matches_oracle", backend, row, data.draw(row.cases_in(cell), label="case"))


@pytest.mark.parametrize("row, cell", ROUNDTRIP, ids=cell_ids(ROUNDTRIP))
@given(data=st.data())
@examples(1.0)
def test_roundtrip(backend, row, cell, data):
    # inverse(forward(x)) == x: unpack∘pack, pack∘unpack, unrepack∘repack, repack∘unrepack.
    check("roundtrip", backend, row, data.draw(row.cases_in(cell, roundtrip=True), label="case"))


@pytest.mark.parametrize("row, cell", REPACK, ids=cell_ids(REPACK))
@given(data=st.data())
@examples(1.0)
def test_repack_is_a_permutation(backend, row, cell, data):
    # The repack moves bytes (nibbles) and never creates, drops or changes one.
    check("repack_is_a_permutation", backend, row, data.draw(row.cases_in(cell), label="case"))


@pytest.mark.parametrize("row, cell", REPACK_NO_PERM, ids=cell_ids(REPACK_NO_PERM))
@given(data=st.data())
@examples(1.0)
def test_repack_moves_one_byte(backend, row, cell, data):
    # Changing W[k, n] changes exactly one output byte (nibble): the one at locate(k, n).
    check("repack_moves_one_byte", backend, row, data.draw(with_probe(row.cases_in(cell)), label="case"))


@pytest.mark.parametrize("row, cell", REPACK_PERM, ids=cell_ids(REPACK_PERM))
@given(data=st.data())
@examples(1.0)
def test_perm_equals_permuted_rows(backend, row, cell, data):
    # repack(pack(W), perm) == repack(pack(W[perm]), no perm) (act-order).
    check("perm_equals_permuted_rows", backend, row, data.draw(row.cases_in(cell), label="case"))
