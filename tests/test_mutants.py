"""The suite tests itself: every mutant of properties.strength.mutants must be killed by the property laws.

The catalogue tests are fast and in-process. `test_mutant_is_killed` runs each mutant in its own pytest
subprocess (properties.strength.kill_matrix, `-x`, only the laws of the operations it replaces, profile ci),
two at a time (MARLIN_MUTANT_JOBS), or one per worker under pytest-xdist. The full mutant x law matrix
is what the CLI does: `python -m properties.strength.kill_matrix --out bench/results/kill_matrix`.
"""

from __future__ import annotations

import concurrent.futures
import os

import numpy as np
import pytest

from marlin_ref.layout import locate
from properties.strength import mutations as mu
from properties.seam.backends import OPERATIONS, get_backend
from properties.cases.gemm_cases import GEMM_ROWS
from properties.cases.linear_cases import LINEAR_ROWS
from properties.strength.kill_matrix import parse_failure, run_mutant
from properties.strength.mutants import MUTANTS, mutant_backend
from properties.cases.transforms import by_name, rows

# Known survivors and shrinking gaps, each caused by a strategy (strict: fixing the strategy turns the
# xfail into a failure, which is the reminder to delete the entry).
SURVIVORS = {}
SHRINK_GAPS = {}


def test_catalogue_is_complete():
    # At least 22 mutants, each citing the spec and a real bug, replacing only contract operations.
    assert len(MUTANTS) >= 22
    for m in MUTANTS.values():
        assert m.spec.startswith("§") and m.reference and m.summary, m.name
        assert m.operations and set(m.operations) <= set(OPERATIONS), m.name
        assert set(m.minimal or {}) <= set(m.operations), m.name


def test_mutant_scheme_resolves():
    # "mutant:<name>[@base]" names a backend whose replaced ops are exactly the mutant's.
    b = get_backend("mutant:interleave8_identity@ref")
    assert b.name == "mutant:interleave8_identity"
    assert b.op("gptq_marlin_repack") is not get_backend("ref").op("gptq_marlin_repack")
    assert b.op("marlin_permute_bias") is get_backend("ref").op("marlin_permute_bias")
    with pytest.raises(ValueError, match="mutant 'no_such_bug' is not one of"):
        mutant_backend("no_such_bug")


@pytest.mark.parametrize("bits", [8, 4])
def test_correct_slot_table_is_the_spec_closed_form(bits):
    # slot_offsets (no bug) == marlin_ref.layout.locate for every (k, n) of a 2x2-tile weight.
    table = mu.slot_offsets(32, 128, bits)
    want = [[locate(k, n, size_n=128, num_bits=bits).byte_offset for n in range(128)] for k in range(32)]
    assert np.array_equal(table, np.array(want))


def test_slot_tables_hand_examples():
    # §2.3.4: (7, 5) -> int32 column 184 byte 2 (offset 4*184 + 2); the interleave bug swaps the
    # byte slots of rows 1 and 8 (natural order 0, 1, 8, 9); warp-major puts (0, 16) (block j=1) at
    # word 64 instead of word 2.
    assert mu.slot_offsets(16, 64)[7, 5] == 4 * 184 + 2
    assert (mu.slot_offsets(16, 64, 8, "interleave")[1, 0], mu.slot_offsets(16, 64, 8, "interleave")[8, 0]) == (1, 2)
    assert mu.slot_offsets(16, 64, 8, "word_index")[0, 16] == 4 * 64
    assert mu.slot_offsets(16, 128, 8, "tile_n_reversed")[0, 0] == 1024
    assert mu.slot_offsets(32, 128, 8, "tile_k_major")[16, 0] == 1024


@pytest.mark.parametrize("bug", mu.LAYOUT_BUGS)
@pytest.mark.parametrize("bits", [8, 4])
def test_layout_bugs_are_permutations(bug, bits):
    # Each planted layout is still a bijection (a layout bug moves values, never loses one).
    table = mu.slot_offsets(32, 128, bits, bug)
    assert np.array_equal(np.sort(table.ravel()), np.arange(32 * 128))


def test_parse_failure_reads_the_reproduce_note():
    text = ("E       AssertionError: x\nE       Reproduce: python -m properties.laws matches_oracle "
            "'gptq_marlin_repack[8bit]' '{\"size_k\":16,\"size_n\":64}' --backend 'mutant:x'\n")
    assert parse_failure(text) == ({"size_k": 16, "size_n": 64}, None)


class _KillRuns:
    """Mutant runs started on first use: all of them, two at a time, in a plain run; only the one a
    test asks for under pytest-xdist (whose workers already run in parallel and each see every test)."""

    def __init__(self):
        self.jobs = int(os.environ.get("MARLIN_MUTANT_JOBS", "2"))
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs)
        self.futures = {}

    def _submit(self, name):
        self.futures[name] = self.pool.submit(run_mutant, name, relevant=True, stop_first=True)

    def __getitem__(self, name):
        if not self.futures and not os.environ.get("PYTEST_XDIST_WORKER"):
            for other in MUTANTS:
                self._submit(other)
        if name not in self.futures:
            self._submit(name)
        return self.futures[name].result()


@pytest.fixture(scope="module")
def kill_results():
    runs = _KillRuns()
    yield runs
    runs.pool.shutdown(cancel_futures=True)


def _known(table, name, reason_prefix):
    if name in table:
        return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=f"{reason_prefix}: {table[name]}"))]
    return [name]


CPU_MUTANTS = [n for n in MUTANTS if not MUTANTS[n].gpu_only]   # the GPU-only ones: bench/gpu_suite.sh (gpu)


@pytest.mark.parametrize("name", [p for n in CPU_MUTANTS for p in _known(SURVIVORS, n, "known survivor")])
def test_mutant_is_killed(kill_results, name):
    # At least one law fails on the mutant (its own pytest subprocess, ci profile).
    r = kill_results[name]
    assert r.tests, f"{name}: the law run produced no records (exit {r.returncode}):\n{r.output_tail}"
    assert r.killed, f"{name} survived the laws of {r.operations}:\n{r.output_tail}"


@pytest.mark.parametrize("name", [p for n in CPU_MUTANTS if MUTANTS[n].minimal and n not in SURVIVORS
                                  for p in _known(SHRINK_GAPS, n, "shrinking gap")])
def test_kill_shrinks_to_the_smallest_case(kill_results, name):
    # The shrunk case of the kill is the smallest case that can show the bug (e.g. K=16, N=64).
    r = kill_results[name]
    assert r.killed
    assert not r.shrinking, f"{name}: strategy does not shrink to the smallest case: {r.shrinking}"


def test_every_replaced_operation_has_a_law_row():
    # A mutant of an operation no law row exercises could never be killed.
    covered = {row.op for row in rows() + GEMM_ROWS + LINEAR_ROWS}
    for m in MUTANTS.values():
        assert set(m.operations) & covered, m.name
    assert by_name("gptq_marlin_repack[8bit]").op == "gptq_marlin_repack"
