"""Every law on the smallest case of every cell (properties.cases.smallest), one test per family of laws: the run's
first tests (conftest.py), so a bug that shows on a cell's smallest case stops `pytest -x` in seconds. A cell the
backend does not provide is passed over here (its own law tests say "not provided")."""

import pytest

from properties.cases.smallest import FAMILIES, smallest_checks
from properties.seam.backends import NotProvided


@pytest.mark.marlin_cell("(smallest cases)")
@pytest.mark.parametrize("family", FAMILIES)
def test_every_law_holds_on_the_smallest_case_of_every_cell(backend, family):
    checked = 0
    for check, law, row, cell, case in smallest_checks(family):
        if backend.gap(cell):
            continue
        try:
            check(law, backend, row, case)
        except NotProvided:
            continue
        checked += 1
    assert checked or not any(backend.gap(cell) is None for *_, cell, _ in smallest_checks(family))
