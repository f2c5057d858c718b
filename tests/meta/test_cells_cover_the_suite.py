"""Every test of the backend under test in this suite names its compliance cell, and every cell's strategy draws
only cases of that cell: so the table counts each test where it belongs and its totals are pytest's."""

from hypothesis import given, settings, strategies as st

from properties.cases.gemm_cases import GEMM_ROWS
from properties.cases.transforms import TRANSFORMS, cells_of
from properties.pytest_plugin import examples
from properties.reporting.cells import cell_of
from properties.reporting.compliance import item_cell, uses_backend

ROWS = cells_of(TRANSFORMS + GEMM_ROWS)


def test_every_test_of_the_backend_names_its_cell(request):
    items = request.session.items
    lacking = [item.nodeid for item in items if uses_backend(item) and item_cell(item) is None]
    assert not lacking, f"tests of the backend under test without a cell parameter or marlin_cell marker: {lacking}"


@given(data=st.data())
@settings(examples(0.5), deadline=None)
def test_a_cells_strategy_draws_only_that_cell(data):
    row, cell = data.draw(st.sampled_from(ROWS), label="row, cell")
    case = data.draw(row.cases_in(cell), label="case")
    assert cell_of(row.op, case, transform=row.name) == cell
