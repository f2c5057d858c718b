"""The smallest case of every law on every cell: a verdict in seconds, before the full search.

Hypothesis' first example of a strategy is its simplest (the all-zero choice sequence), and every strategy here
shrinks to the smallest legal shape of its cell, so `hypothesis.find` with one example gives that case at once.
`smallest_checks(family)` lists (check, law, row, cell, case) for a family of laws, in the order the law files run
them; tests/test_laws_smallest.py runs each family as one test, first in the default run (conftest.py orders the
tests: these, then the laws' full searches, then the slower tiers), so `pytest -x` stops at a law failure seconds
after it starts. Most planted bugs already show on a cell's smallest case; the full search finds the rest.

    >>> [(law, row.name, cell.label()) for _, law, row, cell, _ in smallest_checks("layout")][:2]
    [('matches_oracle', 'pack_fp8_to_int32', 'float8_e4m3fn'), ('roundtrip', 'pack_fp8_to_int32', 'float8_e4m3fn')]
"""

from __future__ import annotations

import functools

from hypothesis import HealthCheck, Phase, find, settings

from properties import laws
from properties.cases import gemm_cases, linear_cases, moe_gemm_cases
from properties.cases.strategies import with_probe
from properties.cases.transforms import rows

FAMILIES = ("layout", "scales", "prepare", "gemm", "moe_gemm", "linear")
_FIRST = settings(max_examples=1, database=None, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck))


def _plan(family: str) -> list[tuple]:
    """(check, law, row, cell, strategy) of every law test of a family, as the law files parametrize them."""
    plan = []
    if family in ("layout", "scales"):
        chosen = rows("layout") if family == "layout" else rows("scales") + rows("helper")
        for row in chosen:
            for cell in row.cells:
                plan.append((laws.check, "matches_oracle", row, cell, row.cases_in(cell)))
                if row.inverse:
                    plan.append((laws.check, "roundtrip", row, cell, row.cases_in(cell, roundtrip=True)))
                if row.op == "gptq_marlin_repack":
                    plan.append((laws.check, "repack_is_a_permutation", row, cell, row.cases_in(cell)))
                    if cell.feature == "perm":
                        plan.append((laws.check, "perm_equals_permuted_rows", row, cell, row.cases_in(cell)))
                    else:
                        plan.append((laws.check, "repack_moves_one_byte", row, cell, with_probe(row.cases_in(cell))))
    elif family == "prepare":
        plan = [(laws.check, "matches_oracle", row, cell, row.cases_in(cell))
                for row in rows("prepare") for cell in row.cells]
    elif family == "gemm":
        plan = [(gemm_cases.check, law, row, cell, row.cases_in(cell, activations=acts))
                for row in gemm_cases.GEMM_ROWS for cell in row.cells
                for law, acts in (("gemm_one_hot_is_exact", gemm_cases.ONE_HOT),
                                  ("gemm_within_bound", gemm_cases.NORMAL))]
    elif family == "moe_gemm":
        plan = [(moe_gemm_cases.check, law, row, cell, row.cases_in(cell, activations=acts))
                for row in moe_gemm_cases.MOE_GEMM_ROWS for cell in row.cells
                for law, acts in (("moe_one_hot_is_exact", gemm_cases.ONE_HOT),
                                  ("moe_within_bound", gemm_cases.NORMAL),
                                  ("moe_expert_alone_equals_dense", gemm_cases.ONE_HOT))]
    elif family == "linear":
        plan = [(linear_cases.check, law, row, cell, row.cases_in(cell, activations=acts))
                for row in linear_cases.LINEAR_ROWS for cell in row.cells
                for law, acts in (("linear_one_hot_is_exact", gemm_cases.ONE_HOT),
                                  ("linear_within_bound", gemm_cases.NORMAL))]
    else:
        raise ValueError(f"smallest_checks: family={family!r} must be one of {FAMILIES}")
    return plan


@functools.cache
def smallest_checks(family: str) -> tuple[tuple, ...]:
    """(check, law, row, cell, case) with each law test's smallest case, for one family of laws."""
    return tuple((check, law, row, cell, find(strategy, lambda case: True, settings=_FIRST))
                 for check, law, row, cell, strategy in _plan(family))
