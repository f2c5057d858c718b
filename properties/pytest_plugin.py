"""pytest plugin of marlin-ref (the suite): the backend under test and fixtures, Hypothesis profiles, a skip summary.

Active only where asked for (marlin_pytest, the always-loaded entry point, says how: this checkout's conftest.py,
`-p properties.pytest_plugin`, or any `--marlin-...` option); its command-line options are declared there.

* `--marlin-load PATH_OR_MODULE` (and env MARLIN_LOAD) loads the implementation first (properties.seam.loading),
  in the controller and in every xdist worker, right after the worker is pinned to its GPU.
* `--marlin-backend NAME` (else env MARLIN_BACKEND, else "torch") picks the implementation under test;
  fixtures `backend` (that one) and `oracle` (marlin_ref). See properties.seam.backends for the names.
* Hypothesis profiles `dev` (fast, the default), `ci` (derandomized, the default when env CI is set),
  `gpu` and `nightly`; pick one with Hypothesis' own `--hypothesis-profile NAME`. A profile the project loaded
  itself (other than Hypothesis' built-in "default" and "ci") stays loaded. Tests size their example counts
  relative to the profile with `examples(weight)`.
* Example database (dev, gpu, nightly): DirectoryBasedExampleDatabase in <rootdir>/.hypothesis/examples
  (git-ignored). It is safe for pytest-xdist workers: each example is one file, written to a temporary
  name and renamed into place, and readers skip files that vanish. `ci` is derandomized, which
  implies no database (a clean CI clone has nothing to replay).
* The terminal summary counts "not provided" skips per operation apart from other skips, prints the
  compliance table (properties.reporting.compliance, `--marlin-report=PATH`) and every failing law's shrunk case
  with the command that replays it (properties.reporting.replay, `--marlin-save-failures`).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

import marlin_pytest
from properties.reporting.compliance import not_provided_reason
from properties.seam import loading
from properties.seam.gpu_pinning import pin_worker_to_gpu
from properties.seam.backends import DEFAULT_BACKEND, ENV_VAR, OPERATIONS, check_backend_name, get_backend

pytest_plugins = ["properties.reporting.counters",  # --marlin-count-examples, the CI floor on examples run
                  "properties.reporting.compliance",       # the compliance table, --marlin-report
                  "properties.reporting.replay"]           # minimal failing cases, --marlin-save-failures

# examples per test at weight 1.0; the suite's CI budget is several thousand examples in < 10 min on 2 cores
PROFILE_EXAMPLES = {"dev": 10, "ci": 60, "gpu": 100, "nightly": 1000}
MIN_EXAMPLES = 3
HYPOTHESIS_BUILTIN_PROFILES = ("default", "ci")   # Hypothesis loads "ci" by itself when it detects a CI


def register_profiles(root: Path) -> None:
    database = DirectoryBasedExampleDatabase(root / ".hypothesis" / "examples")
    common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
    settings.register_profile("dev", max_examples=PROFILE_EXAMPLES["dev"], database=database, **common)
    settings.register_profile("ci", max_examples=PROFILE_EXAMPLES["ci"], derandomize=True, print_blob=True,
                              database=None, **common)
    settings.register_profile("gpu", max_examples=PROFILE_EXAMPLES["gpu"], database=database, **common)
    settings.register_profile("nightly", max_examples=PROFILE_EXAMPLES["nightly"], database=database,
                              print_blob=True, **common)


def default_profile(environ) -> str:
    """`ci` when the environment variable CI is set (to anything but ""), else `dev`."""
    return "ci" if environ.get("CI") else "dev"


def examples(weight: float = 1.0) -> settings:
    """@examples(0.5): half the current profile's max_examples (at least MIN_EXAMPLES); use it on
    slow tests so every profile keeps its proportions."""
    return settings(max_examples=max(MIN_EXAMPLES, round(settings.default.max_examples * weight)))


def backend_name(config: pytest.Config) -> str:
    return config.getoption("--marlin-backend") or os.environ.get(ENV_VAR) or DEFAULT_BACKEND


def pytest_addoption(parser: pytest.Parser) -> None:
    """The suite's options come from the entry point marlin_pytest; a checkout run without installing the package
    (a GPU runner with PYTHONPATH=., say) has no entry point, so the suite declares them too (each once)."""
    marlin_pytest.declare_options(parser)


@pytest.hookimpl(tryfirst=True)  # before Hypothesis' own pytest_configure loads --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    pin_worker_to_gpu()  # an xdist worker takes one GPU, before anything initialises CUDA
    try:                 # then the implementation under test, before its backend name resolves
        loading.load_all(loading.requested(config.getoption("--marlin-load")))
    except loading.LoadError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.addinivalue_line("markers", "marlin_backend: a test of the backend under test (set by the suite)")
    chosen = settings.get_current_profile_name()   # "default", Hypothesis' own "ci" (env CI), or the project's
    register_profiles(Path(config.rootpath))
    if chosen in HYPOTHESIS_BUILTIN_PROFILES:      # else a profile the project loaded itself stays loaded
        settings.load_profile(default_profile(os.environ))
    try:
        check_backend_name(backend_name(config))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of the backend under test `marlin_backend`: `-m marlin_backend` selects exactly the tests the
    compliance table counts, so pytest's totals and the table's can be compared."""
    from properties.reporting.compliance import uses_backend

    for item in items:
        if uses_backend(item):
            item.add_marker("marlin_backend")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test about a cell the backend under test does not provide is "not provided" before it draws anything
    (properties.seam.capabilities; the cell is the test's `cell` parameter or its marlin_cell marker)."""
    from properties.reporting.compliance import item_cell, uses_backend

    cell = item_cell(item)
    if cell is not None and cell.op in OPERATIONS and uses_backend(item):   # not a pseudo-cell such as the smallest
        get_backend(backend_name(item.config)).require_cell(cell)           # cases', which count their own checks


def pytest_report_header(config: pytest.Config) -> str:
    name = backend_name(config)
    try:
        b = get_backend(name)
    except Exception as exc:  # noqa: BLE001 - the header reports it; the tests then fail on it
        return f"marlin backend: {name} (cannot be built: {type(exc).__name__}: {exc})"
    loaded = f"; loaded {', '.join(loading.LOADED)}" if loading.LOADED else ""
    return f"marlin backend: {b.name} ({b.version}); provides {len(b.provides)} operations{loaded}"


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest):
    """The Backend under test (--marlin-backend)."""
    return get_backend(backend_name(request.config))


@pytest.fixture(scope="session")
def oracle():
    """marlin_ref as a Backend."""
    return get_backend("ref")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    reasons = Counter(r for r in map(not_provided_reason, terminalreporter.stats.get("skipped", [])) if r)
    if not reasons:
        return
    terminalreporter.section("marlin: not provided by the backend under test")
    for reason, count in sorted(reasons.items()):
        terminalreporter.write_line(f"{count:5d} test(s): {reason}")
    terminalreporter.write_line(f"{sum(reasons.values()):5d} test(s) not provided in all "
                                "(skipped, not passed)")
