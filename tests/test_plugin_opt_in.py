"""Installing marlin-ref changes nothing for a project that does not ask for the suite (marlin_pytest).

A throwaway project in a temporary folder has its own `properties.py`, its own Hypothesis profiles (one named `ci`,
like ours) loaded in its conftest.py, and a test that must fail with DeadlineExceeded. It runs pytest in a
subprocess as its owner would (`python -m pytest`, so its folder is first on sys.path): plainly, with CI=true and
with `-n 2`, each compared with the same run with marlin-ref's entry point blocked (`-p no:marlin_pytest`). The
project's tests write down what they saw (Hypothesis profile and settings, imported modules, environment); the
facts, the outcome and the output must be the same. Then the suite is asked for in that project: it starts, or
says in one line why it cannot.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ENTRY_POINT = "marlin_pytest"
BLOCKED = ("-p", f"no:{ENTRY_POINT}")


def entry_point_installed() -> bool:
    """Whether marlin-ref is pip-installed here (its pytest11 entry point exists), as in CI; a GPU runner may run the
    checkout with PYTHONPATH=. instead."""
    return any(ep.name == ENTRY_POINT for ep in importlib.metadata.entry_points(group="pytest11"))

PROJECT = {
    "properties.py": 'WHOSE = "the project\'s own"\n',
    "conftest.py": """
        from hypothesis import settings
        settings.register_profile("ci", max_examples=7)            # a name marlin-ref uses too
        settings.register_profile("mine", max_examples=13)
        settings.load_profile("mine")
    """,
    "test_project.py": """
        import json, os, sys, time
        import properties
        from hypothesis import given, settings, strategies as st

        def test_what_the_project_sees():
            current = settings.default
            facts = {"profile": settings.get_current_profile_name(), "max_examples": current.max_examples,
                     "deadline": str(current.deadline), "health": sorted(map(str, current.suppress_health_check)),
                     "ci_profile": settings.get_profile("ci").max_examples,
                     "properties": properties.WHOSE,
                     "heavy_modules": sorted(m for m in ("torch", "marlin_fast", "marlin_ref", "hypothesis.extra.numpy")
                                             if m in sys.modules),
                     "env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "MARLIN_BACKEND")}}
            with open(os.environ["FACTS_DIR"] + "/facts.json", "w") as f:
                json.dump(facts, f)

        @given(st.integers())
        def test_a_slow_example_exceeds_the_default_deadline(x):
            time.sleep(0.3 if x == 0 else 0)     # 300 ms > Hypothesis' default deadline of 200 ms
    """,
}
OUTCOME = re.compile(r"^=*\s*(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s", re.MULTILINE)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    if not entry_point_installed():
        pytest.skip("marlin-ref is not installed in this environment (pip install -e .), so its entry point "
                    "cannot be loaded into another project")
    root = tmp_path_factory.mktemp("another_project")
    for name, text in PROJECT.items():
        (root / name).write_text(textwrap.dedent(text).lstrip())
    return root


def run_pytest(project: Path, *args: str, env_extra: dict | None = None) -> tuple[int, str, dict]:
    """(exit status, output, facts the project's test wrote) of `python -m pytest` in the project folder (a fixed
    Hypothesis seed, so two runs print the same)."""
    facts_dir = project / f"facts-{len(list(project.glob('facts-*')))}"
    facts_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HYPOTHESIS")) and k != "CI"}
    env.update({"FACTS_DIR": str(facts_dir), "MARLIN_BACKEND": "set for another purpose", **(env_extra or {})})
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--hypothesis-seed=0", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)
    facts = json.loads((facts_dir / "facts.json").read_text()) if (facts_dir / "facts.json").exists() else None
    return done.returncode, done.stdout + done.stderr, facts


def _normalised(output: str) -> list[str]:
    """The output's lines without timings and xdist's scheduling noise, in order."""
    lines = [re.sub(r"\d+\.\d+(e-?\d+)?", "<n>", line) for line in output.splitlines()]   # timings
    return [line for line in lines if not re.match(r"^(\[gw\d\]|created: |\d+ workers \[|bringing up nodes)", line)]


@pytest.mark.parametrize("args, env", [((), {}), ((), {"CI": "true"}), (("-n", "2"), {})],
                         ids=["plain", "CI=true", "xdist"])
def test_an_unrelated_project_runs_as_if_marlin_ref_were_not_installed(project, args, env):
    status, output, facts = run_pytest(project, *args, env_extra=env)
    blocked_status, blocked_output, blocked_facts = run_pytest(project, *args, *BLOCKED, env_extra=env)
    assert (status, facts) == (blocked_status, blocked_facts)
    assert _normalised(output) == _normalised(blocked_output)
    assert "marlin" not in output.lower()
    # and what the project expects of itself holds: its profile, its module, nothing heavy, no GPU narrowing
    seen = facts
    assert (seen["profile"], seen["max_examples"], seen["ci_profile"]) == ("mine", 13, 7)
    assert seen["properties"] == "the project's own" and seen["heavy_modules"] == []
    assert seen["env"] == {"CUDA_VISIBLE_DEVICES": None, "MARLIN_BACKEND": "set for another purpose"}
    if "CI" not in env:   # under CI Hypothesis' own "ci" profile (no deadline) is the parent of the project's
        assert status == 1 and "DeadlineExceeded" in output
        assert OUTCOME.search(output).group(1) == "1 failed, 1 passed"


def test_the_projects_own_ci_profile_stays_when_chosen_on_the_command_line(project):
    status, output, facts = run_pytest(project, "--hypothesis-profile=ci", "-k", "sees")
    assert status == 0, output
    assert facts["max_examples"] == 7


@pytest.mark.parametrize("args, status", [((), 0), (("--marlin-backend=ref",), pytest.ExitCode.USAGE_ERROR)],
                         ids=["plain", "suite asked for"])
def test_without_hypothesis_pytest_starts_or_says_what_is_missing(tmp_path, args, status):
    # the base install (no `test` extra): a `hypothesis` first on sys.path that is not there, and no Hypothesis plugin
    absent = tmp_path / "absent" / "hypothesis"
    absent.mkdir(parents=True)
    (absent / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'hypothesis'\", name='hypothesis')\n")
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "absent")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                           *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == status, output
    if status:
        assert output.strip().splitlines() == ["ERROR: marlin-ref's suite needs hypothesis, which is not installed: "
                                               "pip install 'marlin-ref[test]' (or leave out the --marlin-* options)"]
    else:
        assert "1 passed" in output and "marlin" not in output.lower()


def test_asking_for_the_suite_where_properties_is_taken_says_so_in_one_line(project):
    status, output, _ = run_pytest(project, "--marlin-backend=ref", "-k", "sees")
    assert status == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "shadows marlin-ref's package" in errors[0], output
    assert "Traceback" not in output


def test_asking_for_the_suite_activates_it(tmp_path):
    if not entry_point_installed():
        pytest.skip("marlin-ref is not installed in this environment (pip install -e .)")
    (tmp_path / "test_uses_the_suite.py").write_text(textwrap.dedent("""
        import numpy as np
        from hypothesis import settings

        def test_backend_fixture(backend, oracle):
            assert backend.name == "ref" and oracle.name == "ref"
            assert backend.marlin_permute_bias(bias=np.arange(32, dtype=np.float16)).shape == (32,)
            assert settings.get_current_profile_name() == "ci"       # the suite's own, chosen by CI=true
            assert settings.default.max_examples == 60
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HYPOTHESIS"))}
    for activation in (["--marlin-backend=ref"], ["-p", "properties.pytest_plugin"]):
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *activation],
                              cwd=tmp_path, env={**env, "CI": "true", "MARLIN_BACKEND": "ref"},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_checkout_runs_its_suite_without_the_entry_point():
    """A GPU runner often runs the checkout with PYTHONPATH=. and no `pip install`: no entry point declares the
    --marlin-* options there, so the suite's own plugin must (and must not declare them twice where it is installed)."""
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HYPOTHESIS"))}
    for blocked in (["-p", "no:marlin_pytest"], []):
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *blocked,
                               "--marlin-backend=ref", "tests/test_docs.py"],
                              cwd=root, env={**env, "PYTHONPATH": str(root)}, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, " ".join(blocked) + "\n" + done.stdout + done.stderr
        assert "passed" in done.stdout
