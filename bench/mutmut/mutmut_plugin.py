"""pytest plugin of the mutmut benchmark (bench/mutmut/run.sh): a derandomized Hypothesis profile `mutmut`.

Loaded with `-p bench.mutmut.mutmut_plugin` (setup.cfg [mutmut] pytest_add_cli_args). It registers the profile
`mutmut` and loads it after the suite's own plugin has chosen `dev`/`ci` (trylast), so every mutant sees the same
examples as the baseline run: derandomized (the examples are a function of the test, not of the clock or of an
example database), no database, no deadline. MARLIN_MUTMUT_EXAMPLES sets max_examples (default 10, the `dev`
budget). The suite itself is not edited: properties.pytest_plugin keeps a profile the project loaded itself.
"""

from __future__ import annotations

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
