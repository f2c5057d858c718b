"""Count the Hypothesis examples each test really executed, across pytest-xdist workers.

A green run proves little if the laws ran on three examples, so CI puts a floor on this number, and the compliance
report shows it per cell. Hypothesis looks up ``test.hypothesis.inner_test`` on every call of a ``@given`` test, so
wrapping that attribute counts every example (generated, replayed from the database or explicit) without touching
the test.

Each xdist worker sends its counts to the controller through ``config.workeroutput``; the controller sums them.
"""

from __future__ import annotations

import functools
import json
from collections import Counter

import pytest

_WORKER_KEY = "marlin_example_counts"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_COUNTS] = Counter()


_COUNTS = pytest.StashKey[Counter]()


def example_counts(config: pytest.Config) -> Counter:
    """Examples executed so far, by test node id (summed over workers on the controller)."""
    return config.stash[_COUNTS]


_current_nodeid: list[str] = [""]  # parametrized items share one inner test, so the wrapper reads this


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    handle = getattr(getattr(item, "obj", None), "hypothesis", None)
    if handle is None:
        return
    _current_nodeid[0] = item.nodeid
    if getattr(handle.inner_test, "_marlin_counted", False):
        return
    counts, inner = example_counts(item.config), handle.inner_test

    @functools.wraps(inner)
    def counted(*args, **kwargs):
        counts[_current_nodeid[0]] += 1
        return inner(*args, **kwargs)

    counted._marlin_counted = True
    handle.inner_test = counted


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workeroutput"):  # an xdist worker: hand the counts to the controller
        config.workeroutput[_WORKER_KEY] = json.dumps(example_counts(config))
        return
    path = config.getoption("--marlin-count-examples")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{sum(example_counts(config).values())}\n")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # xdist controller: a worker finished
    output = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
    if output:
        example_counts(node.config).update(json.loads(output))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if hasattr(config, "workeroutput"):
        return
    counts = example_counts(config)
    if counts:
        terminalreporter.write_line(
            f"marlin: {sum(counts.values())} Hypothesis examples executed in {len(counts)} property tests"
        )
