"""pytest plugin of the mutmut benchmark (bench/mutmut/run.sh): a derandomized Hypothesis profile `mutmut`.

Loaded with `-p bench.mutmut.mutmut_plugin` (setup.cfg [mutmut] pytest_add_cli_args). It registers the profile
`mutmut` and loads it after the suite's own plugin has chosen `dev`/`ci` (trylast), so every mutant sees the same
examples as the baseline run: derandomized (the examples are a function of the test, not of the clock or of an
example database), no database, no deadline. MARLIN_MUTMUT_EXAMPLES sets max_examples (default 10, the `dev`
budget). The suite itself is not edited: properties.pytest_plugin keeps a profile the project loaded itself.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("MARLIN_MUTMUT_EXAMPLES", "10"))

settings.register_profile("mutmut", max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                          print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.hookimpl(trylast=True)   # after properties.pytest_plugin (tryfirst) and Hypothesis' --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("mutmut")


def pytest_report_header(config: pytest.Config) -> str:
    return f"mutmut benchmark: hypothesis profile 'mutmut' (max_examples={EXAMPLES}, derandomized)"


STATS = "mutmut-stats.json"   # mutmut's per-test durations from its stats run, in mutants/ (the cwd of every run)


@pytest.hookimpl(trylast=True)   # after the project's conftest.py has put the laws first
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """While mutmut tests a mutant, run its tests fastest first (by mutmut's stats run). The same tests run and
    -x stops at the first failure, so verdicts do not change; a mutant that only a bad-input case (a few ms)
    kills no longer waits for every law that reaches its function (seconds each). mutmut's fork runner sorts
    this way itself; its fork server (process_isolation = forkserver, which torch needs) does not."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    try:
        with open(STATS, encoding="utf-8") as f:
            duration = json.load(f)["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    items.sort(key=lambda item: duration.get(item.nodeid, 0.0))   # stable: ties keep the suite's order
