"""Every saved failing case (tests/regressions/*.json) replays against the backend under test, forever.

A file is written by `--marlin-save-failures` (properties.reporting.replay): the law, the registry row and the
shrunk case that failed on some backend. Replaying it needs no Hypothesis search, so a bug once found
stays tested on every backend. The seed corpus holds cases found on planted mutants
(mutant:interleave8_identity, mutant:bias_not_permuted): they hold on a correct backend and fail on
their mutant (tests/test_replay.py checks both). `--marlin-regressions-dir DIR` replays another directory.
"""

import pytest

from properties.reporting import replay
from properties.reporting.cells import cell_of


def _cell(path):
    """The compliance cell of a saved case (so the table counts it, and a backend lacking it is not provided)."""
    record = replay.load(path)
    _, row = replay.law_of(record["law"], record["transform"])
    return cell_of(row.op, record["case"], transform=row.name)


def pytest_generate_tests(metafunc):
    if "regression" in metafunc.fixturenames:
        paths = replay.files(replay.regressions_dir(metafunc.config))
        metafunc.parametrize("regression", [pytest.param(p, marks=pytest.mark.marlin_cell(*_cell(p))) for p in paths],
                             ids=[p.stem for p in paths])


def test_corpus_is_not_empty(request):
    # A regression directory without cases would make this module a silent no-op.
    directory = replay.regressions_dir(request.config)
    assert replay.files(directory), f"no <law>-<hash>.json regression files in {directory}"


def test_regression_replays(backend, regression):
    # The saved law holds on the saved case (raises with the law's message and a Reproduce note if not).
    replay.replay_file(regression, backend)
