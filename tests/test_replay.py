"""Minimal failing cases that replay (properties.reporting.replay): a law failure carries its case as JSON and one
command; the command reproduces it; --marlin-save-failures writes the file; tests/test_regressions.py
replays it. The seed corpus in tests/regressions holds on correct backends and fails on its mutants."""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from properties.reporting import replay
from properties.seam.backends import get_backend
from properties.laws import check
from properties.reporting.report import repro_command
from properties.cases.transforms import by_name

ROOT = Path(__file__).resolve().parent.parent
SEED_CORPUS = ROOT / "tests" / "regressions"
BIAS_TEST = "tests/test_laws_scales.py::test_matches_oracle[marlin_permute_bias-float16]"
MUTANT = "mutant:bias_not_permuted@ref"
BIAS_CASE = {"shape": [32], "dtype": "float16", "seed": 0}   # the smallest bias case (strategies.bias_cases)


def run(*cmd: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "MARLIN_BACKEND", "PYTEST_ADDOPTS") and not k.startswith("PYTEST_XDIST")}
    return subprocess.run(list(cmd), cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=timeout)


def run_pytest(*args: str) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-o", "addopts=",
               "--no-header", *args)


def _failure_on(backend_name: str, law="matches_oracle", transform="marlin_permute_bias", case=BIAS_CASE):
    with pytest.raises(AssertionError) as failure:
        check(law, get_backend(backend_name), by_name(transform), case)
    return failure.value


# --- in process -------------------------------------------------------------------------------------

def test_failures_of_reads_the_law_note():
    # The note laws.check adds is parsed back into exactly the law, row, case and backend.
    exc = _failure_on(MUTANT)
    (failure,) = replay.failures_of(exc)
    assert (failure.law, failure.transform, failure.case, failure.backend) == (
        "matches_oracle", "marlin_permute_bias", BIAS_CASE, "mutant:bias_not_permuted")
    assert failure.error.startswith("AssertionError: marlin_permute_bias on 'mutant:bias_not_permuted' vs oracle")
    assert failure.command() == repro_command("matches_oracle", "marlin_permute_bias", BIAS_CASE,
                                              "mutant:bias_not_permuted")
    # Hypothesis reports several distinct bugs (or a flaky one) as an ExceptionGroup: every leaf counts
    group = ExceptionGroup("two bugs", [exc, ValueError("no note"), _failure_on(MUTANT, "roundtrip")])
    assert [f.law for f in replay.failures_of(group)] == ["matches_oracle", "roundtrip"]
    assert replay.failures_of(AssertionError("plain")) == []


def test_failure_json_is_the_case():
    # The printed JSON loads back to the case (lists stay lists, no Python repr).
    (failure,) = replay.failures_of(_failure_on(MUTANT))
    assert failure.case_json() == '{"shape":[32],"dtype":"float16","seed":0}'
    assert json.loads(failure.case_json()) == BIAS_CASE


def test_save_load_and_the_file_name(tmp_path):
    (failure,) = replay.failures_of(_failure_on(MUTANT))
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    path, written = replay.save(failure, tmp_path / "regressions", backend=MUTANT, nodeid="t::n", now=when)
    assert written and re.fullmatch(r"matches_oracle-[0-9a-f]{12}\.json", path.name)
    record = replay.load(path)
    assert record == {"format": "marlin-regression/1", "law": "matches_oracle", "transform": "marlin_permute_bias",
                      "op": "marlin_permute_bias", "backend": MUTANT, "case": BIAS_CASE,
                      "saved": "2026-01-02T03:04:05Z", "nodeid": "t::n", "error": failure.error}
    # the same case again (even found on another backend, with keys in another order) is the same file, kept
    again = replay.Failure("matches_oracle", "marlin_permute_bias", dict(reversed(BIAS_CASE.items())), "torch")
    assert replay.save(again, tmp_path / "regressions", backend="torch") == (path, False)
    assert replay.load(path)["backend"] == MUTANT
    assert replay.files(tmp_path / "regressions") == [path] and replay.files(tmp_path / "absent") == []


def test_load_rejects_bad_files(tmp_path):
    (failure,) = replay.failures_of(_failure_on(MUTANT))
    path, _ = replay.save(failure, tmp_path, backend=MUTANT)
    record = json.loads(path.read_text())
    cases = {
        "renamed": (None, "must be named matches_oracle-"),
        "missing": ({k: v for k, v in record.items() if k != "case"}, r"lacks the fields \['case'\]"),
        "format": ({**record, "format": "other/9"}, "format='other/9'"),
        "law": ({**record, "law": "no_such_law"}, "law='no_such_law' is not one of"),
        "row": ({**record, "transform": "no_such_row"}, "transform 'no_such_row' is not one of"),
        "case": ({**record, "case": [1]}, "case of type list"),
    }
    for what, (content, message) in cases.items():
        bad = tmp_path / what / ("matches_oracle-000000000000.json" if content is None else path.name)
        bad.parent.mkdir()
        bad.write_text(path.read_text() if content is None else json.dumps(content))
        with pytest.raises(ValueError, match=message):
            replay.load(bad)
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(ValueError, match="is not JSON"):
        replay.load(tmp_path / "junk.json")


def test_gemm_law_failures_save_and_replay(tmp_path):
    # The GEMM laws (properties.cases.gemm_cases) note their own command; their cases save and replay the same way.
    from properties.cases import gemm_cases

    case = {"scheme": "channel", "dtype": "float16", "size_k": 128, "size_n": 64, "activations": "one_hot",
            "rows": 1, "act_exponent": 0, "bias": True, "specials": "none", "seed": 0}
    with pytest.raises(AssertionError) as failure:
        gemm_cases.check("gemm_one_hot_is_exact", get_backend("mutant:gemm_bias_logical_order"),
                         gemm_cases.GEMM_ROW, case)
    (found,) = replay.failures_of(failure.value)
    assert (found.law, found.transform, found.case) == ("gemm_one_hot_is_exact", "marlin_gemm", case)
    assert found.command() == repro_command("gemm_one_hot_is_exact", "marlin_gemm", case, found.backend)
    path, _ = replay.save(found, tmp_path, backend="mutant:gemm_bias_logical_order")
    assert replay.load(path)["op"] == "marlin_gemm"
    replay.replay_file(path, "torch")               # (the oracle has no marlin_gemm: not provided there)
    with pytest.raises(AssertionError):
        replay.replay_file(path)


def test_seed_corpus_holds_on_correct_backends_and_fails_on_its_mutants():
    # Each seed case was found by --marlin-save-failures on a planted mutant: it must tell them apart.
    paths = replay.files(SEED_CORPUS)
    seeds = [p for p in paths if replay.load(p)["backend"].startswith("mutant:")]
    assert len(seeds) >= 2, f"the seed corpus in {SEED_CORPUS} lost its mutant-found cases"
    for path in seeds:
        for correct in ("ref", "torch"):
            replay.replay_file(path, correct)
        with pytest.raises(AssertionError, match="bytes differ") as failure:
            replay.replay_file(path)                 # the backend it was found on
        assert any(n.startswith("Reproduce: python -m properties.laws") for n in failure.value.__notes__)


def test_replay_command_line(tmp_path, capsys):
    paths = replay.files(SEED_CORPUS)
    assert replay.main([str(SEED_CORPUS), "--backend", "ref"]) == 0
    assert f"0 of {len(paths)} cases failed" in capsys.readouterr().out
    assert replay.main([str(paths[0])]) == 1                     # on its mutant
    assert "FAILED" in capsys.readouterr().err
    assert replay.main([str(paths[0]), "--backend", "marlin_ref.padding:"]) == 0   # lacks the op: skip
    assert "skip" in capsys.readouterr().out


# --- end to end -------------------------------------------------------------------------------------

def test_failure_prints_case_and_command_that_replay_and_save(tmp_path):
    saved = tmp_path / "regressions"
    proc = run_pytest(BIAS_TEST, "--marlin-backend", MUTANT, "--hypothesis-profile=ci", "--marlin-save-failures",
                      f"--marlin-regressions-dir={saved}")
    assert proc.returncode == 1, proc.stdout[-3000:]
    out = proc.stdout
    assert "marlin: minimal failing cases" in out
    # the shrunk case, as JSON, and one command
    case = json.loads(re.search(r"^  case:   (\{.*\})$", out, re.MULTILINE).group(1))
    assert case == BIAS_CASE
    command = re.search(r"^  replay: (python -m properties\.laws .*)$", out, re.MULTILINE).group(1)
    assert f"--backend '{MUTANT}'" in command and json.dumps(case, separators=(",", ":")) in command
    # the command reproduces the failure without Hypothesis, and holds on the oracle
    argv = [sys.executable, *shlex.split(command)[1:]]
    again = run(*argv)
    assert again.returncode != 0 and "AssertionError: marlin_permute_bias on 'mutant:bias_not_permuted'" \
        in again.stderr, again.stderr[-2000:]
    assert "hypothesis" not in again.stderr.lower()
    fixed = run(*[a if a != MUTANT else "ref" for a in argv])
    assert fixed.returncode == 0 and "matches_oracle holds" in fixed.stdout
    # the saved file: named by law and hash, with backend, law, case and time
    (path,) = replay.files(saved)
    record = replay.load(path)
    assert (record["backend"], record["law"], record["case"], record["nodeid"]) == (
        MUTANT, "matches_oracle", BIAS_CASE, BIAS_TEST)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["saved"])
    assert f"saved:  {path}" in out
    # tests/test_regressions.py replays it: fails on the mutant, holds on the oracle
    on_mutant = run_pytest("tests/test_regressions.py", f"--marlin-regressions-dir={saved}", "--marlin-backend", MUTANT)
    assert on_mutant.returncode == 1 and "1 failed, 1 passed" in on_mutant.stdout, on_mutant.stdout[-3000:]
    on_ref = run_pytest("tests/test_regressions.py", f"--marlin-regressions-dir={saved}", "--marlin-backend", "ref")
    assert on_ref.returncode == 0 and "2 passed" in on_ref.stdout, on_ref.stdout[-3000:]
    empty = run_pytest("tests/test_regressions.py", f"--marlin-regressions-dir={tmp_path / 'none'}",
                       "--marlin-backend", "ref")
    assert empty.returncode == 1 and "no <law>-<hash>.json regression files" in empty.stdout
