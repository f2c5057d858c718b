"""bench/fault_locate.py's parent (no GPU): children stand in as scripted results of subprocess.run. A child that
dies in a case names that case and the next child starts after it; one that hangs is named like one that faults;
a case over the bound is named; a child that dies before its first case is not a kernel fault."""

import importlib.util
import subprocess
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "bench" / "fault_locate.py"
_spec = importlib.util.spec_from_file_location("fault_locate", _PATH)
fault_locate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fault_locate)

CONFIGS = [0, 6]
N_CASES = len(fault_locate.cases(CONFIGS))


def scripted_children(monkeypatch, faults=(), hangs=(), over=(), dead_on_arrival=False):
    """Replace subprocess.run: a child from case `start` runs cases until the first fault or hang at or after it."""
    starts = []

    def run(argv, **kwargs):
        if argv[0] == "compute-sanitizer":
            return subprocess.CompletedProcess(argv, 1, "========= Illegal instruction\n", "")
        start = int(argv[argv.index("--from") + 1])
        starts.append(start)
        if dead_on_arrival:
            return subprocess.CompletedProcess(argv, 1, "", "ImportError: no marlin_fast")
        lines = []
        for i in range(start, N_CASES):
            lines.append(f"begin {i}")
            if i in faults:
                return subprocess.CompletedProcess(argv, 1, "\n".join(lines), "AcceleratorError: illegal instruction")
            if i in hangs:
                raise subprocess.TimeoutExpired(argv, kwargs["timeout"], output="\n".join(lines).encode())
            result = "2.000 of the bound OVER THE BOUND" if i in over else "0.1 of the bound"
            lines.append(f"case {i} config=0: {result}")
        return subprocess.CompletedProcess(argv, 0, "\n".join(lines), "")

    monkeypatch.setattr(fault_locate.subprocess, "run", run)
    return starts


def test_every_case_passing_runs_one_child_and_exits_0(monkeypatch, capsys):
    starts = scripted_children(monkeypatch)
    assert fault_locate.parent(CONFIGS) == 0
    assert starts == [0]
    assert capsys.readouterr().out.count("of the bound") == N_CASES


def test_each_fault_and_hang_is_named_and_the_next_child_starts_after_it(monkeypatch, capsys):
    starts = scripted_children(monkeypatch, faults=(3, 40), hangs=(10,))
    assert fault_locate.parent(CONFIGS) == 1
    assert starts == [0, 4, 11, 41]
    out = capsys.readouterr().out
    assert [line.split()[2] for line in out.splitlines() if line.startswith("FAULT")] == ["3", "10", "40"]
    assert "hung" in out and "Illegal instruction" in out          # the first fault, under compute-sanitizer
    assert out.count("of the bound") == N_CASES - 3


def test_a_case_over_the_bound_fails_the_run_without_a_fault(monkeypatch, capsys):
    scripted_children(monkeypatch, over=(7,))
    assert fault_locate.parent(CONFIGS) == 1
    assert "over the bound: 1 cases" in capsys.readouterr().out


def test_a_child_that_dies_before_its_first_case_is_not_a_kernel_fault(monkeypatch, capsys):
    starts = scripted_children(monkeypatch, dead_on_arrival=True)
    assert fault_locate.parent(CONFIGS) == 2
    assert starts == [0] and "ImportError" in capsys.readouterr().out
