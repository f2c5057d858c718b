"""The strategies reach every shape class (properties.cases.shape_classes) in at least MIN_SHARE of the examples of
each cell it concerns, as the `ci` profile draws them: a law that exists is a law that meets its shapes."""

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from properties.cases.gemm_cases import GEMM_ROWS
from properties.cases.linear_cases import LINEAR_ROWS
from properties.cases.shape_classes import BY_NAME, CLASSES, MIN_SHARE, classes_for, classes_of
from properties.cases.transforms import TRANSFORMS, cell_ids, cells_of
from properties.pytest_plugin import PROFILE_EXAMPLES

CONCERNED = cells_of(TRANSFORMS + GEMM_ROWS + LINEAR_ROWS, lambda cell: bool(classes_for(cell)))
CI_DRAWS = settings(max_examples=PROFILE_EXAMPLES["ci"], derandomize=True, database=None, deadline=None,
                    phases=[Phase.generate], suppress_health_check=[HealthCheck.too_slow])


def draw_classes(row, cell) -> tuple[int, dict]:
    """(examples drawn, {class: examples in it}) of one cell under the ci profile's budget."""
    seen = {"examples": 0, **dict.fromkeys(classes_for(cell), 0)}

    @CI_DRAWS
    @given(case=row.cases_in(cell))
    def draw(case):
        seen["examples"] += 1
        for name in classes_of(cell, case):
            seen[name] += 1

    draw()
    total = seen.pop("examples")
    return total, seen


@pytest.mark.parametrize("row, cell", CONCERNED, ids=cell_ids(CONCERNED))
def test_every_shape_class_reaches_its_share(row, cell):
    total, reached = draw_classes(row, cell)
    short = {name: f"{n}/{total}" for name, n in reached.items() if n < MIN_SHARE * total}
    assert not short, f"{row.name} [{cell.label()}]: shape classes under {MIN_SHARE:.0%} of the ci draws: {short}"


def test_every_class_concerns_some_cell():
    concerned = {name for _, cell in CONCERNED for name in classes_for(cell)}
    assert concerned == set(BY_NAME), set(BY_NAME) - concerned
    assert len(CLASSES) >= 10


def test_the_share_test_has_teeth():
    # the old block strategy (N a whole number of 64-column tiles) met "ragged block, 2+ block columns" almost never
    from properties.cases import strategies as S
    from properties.seam.capabilities import Cell

    cell = Cell("convert_fp8_scales", "block", "float16")
    row = next(r for r, c in CONCERNED if c == cell)

    class Old:
        name, cells = row.name, row.cells
        cases_in = staticmethod(lambda c: S.fp8_layer_cases(schemes=("block",), dtypes=("float16",), aligned=True))

    total, reached = draw_classes(Old, cell)
    assert reached["ragged block, 2+ block columns"] < MIN_SHARE * total
