"""The kill matrix: run the property suite against every mutant, each in its own pytest subprocess.

    python -m properties.kill_matrix --out bench/results/kill_matrix      # the full matrix (all laws)
    python -m properties.kill_matrix --mutant interleave8_identity --relevant -x   # one, quickly

For every mutant of `properties.strength.mutants.MUTANTS` it runs `python -m pytest tests/test_laws_*.py
--marlin-backend mutant:<name> --hypothesis-profile=ci -p properties.strength.kill_matrix ...`. Loaded with
`-p`, this module is also a small pytest plugin (active only with --marlin-kill-record) that
* keeps only the law tests whose registry row is an operation the mutant replaces (--marlin-kill-ops);
* counts the Hypothesis examples each test ran until its first failure, and the time to it;
* records, per test, pass/fail, the law and row, and the shrunk case: Hypothesis' "Falsifying example"
  block with its `Draw n (case): {...}` line (the laws draw the case with label "case"), falling back
  to the laws' "Reproduce: ... '<case JSON>'" note.

A mutant is killed when at least one law fails. `Mutant.minimal` says, per operation, the case fields
the shrunk case must have (the smallest shape that shows the bug, e.g. K=16, N=64 for the repack);
a kill whose shrunk case differs is reported as a shrinking gap (the strategy to improve).
The result is written as JSON and Markdown (`write_reports`).
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest
from hypothesis import Phase, settings

ROOT = Path(__file__).resolve().parents[2]   # the checkout: properties/strength/ -> root
LAW_FILES = ("tests/test_laws_layout.py", "tests/test_laws_scales.py", "tests/test_laws_prepare.py",
             "tests/test_laws_equivalences.py", "tests/test_laws_gemm.py", "tests/test_laws_moe_gemm.py",
             "tests/test_laws_linear.py", "tests/gpu/test_gpu_gemm_model_shapes.py")
PROFILE = os.environ.get("MARLIN_KILL_PROFILE", "ci")   # "gpu" for the matrix of the GPU-only mutants
_DRAW_CASE = re.compile(r"^Draw \d+ \(case\): ", re.MULTILINE)
_REPRO = re.compile(r"Reproduce: python -m properties\.laws (\S+) '([^']*)' '(\{.*?\})' --backend")


# --- the pytest plugin side (runs inside the subprocess) -----------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("marlin-kill", "mutant kill matrix")
    group.addoption("--marlin-kill-record", default=None, metavar="PATH",
                    help="write one JSON record per law test (outcome, examples and time to the kill, shrunk case)")
    group.addoption("--marlin-kill-ops", default=None, metavar="OP,OP",
                    help="keep only law tests whose registry row is one of these operations")


def _active(config) -> bool:
    return bool(config.getoption("--marlin-kill-record", default=None))


def _row_of(item):
    """The registry row (properties.cases.transforms.Transform) a law test item is parametrized with."""
    from properties.cases.transforms import Transform

    params = getattr(getattr(item, "callspec", None), "params", {})
    return next((v for v in params.values() if isinstance(v, Transform)), None)


def _law_of(item) -> str:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params.get("law") or item.originalname.removeprefix("test_")


_RECORDS = pytest.StashKey[dict]()
_CONFIG: dict = {}   # the active config, for pytest_runtest_logreport (reports carry none)
_CURRENT: dict = {}  # the record of the running test and its start time


@pytest.hookimpl(trylast=True)   # after Hypothesis has loaded --hypothesis-profile
def pytest_configure(config) -> None:
    if not _active(config):
        return
    import properties.strength.mutants  # noqa: F401  registers the mutant: scheme

    config.stash[_RECORDS] = {}
    _CONFIG["config"] = config
    # the same profile without the explain phase: it re-runs a failure under a tracer only to add text
    name = settings.get_current_profile_name()
    settings.register_profile(f"{name}-kill", settings.get_profile(name),
                              phases=[p for p in Phase if p != Phase.explain])
    settings.load_profile(f"{name}-kill")


def pytest_collection_modifyitems(config, items) -> None:
    ops = config.getoption("--marlin-kill-ops", default=None)
    if not _active(config) or not ops:
        return
    wanted = set(ops.split(","))
    keep, drop = [], []
    for item in items:
        row = _row_of(item)
        (keep if row is not None and row.op in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _record(config, nodeid: str) -> dict:
    """The one record of a test (created on first use by whichever hook comes first)."""
    return config.stash[_RECORDS].setdefault(nodeid, {
        "nodeid": nodeid, "law": None, "row": None, "op": None, "outcome": None, "examples": 0,
        "examples_to_kill": None, "seconds_to_kill": None, "seconds": None, "case": None,
        "falsifying_example": None, "error": None})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item) -> None:
    if not _active(item.config):
        return
    row = _row_of(item)
    record = _record(item.config, item.nodeid)
    record.update(law=_law_of(item), row=None if row is None else row.name, op=None if row is None else row.op)
    _CURRENT.update(record=record, start=time.perf_counter())
    handle = getattr(getattr(item, "obj", None), "hypothesis", None)
    # parametrized items share one function (and one inner_test): wrap it once, count into _CURRENT
    if handle is None or getattr(handle.inner_test, "_marlin_kill_counted", False):
        return
    inner = handle.inner_test

    @functools.wraps(inner)
    def counted(*args, **kwargs):
        current = _CURRENT["record"]
        current["examples"] += 1
        try:
            return inner(*args, **kwargs)
        except Exception as exc:
            if type(exc).__name__ != "NotProvided" and current["examples_to_kill"] is None:
                current["examples_to_kill"] = current["examples"]
                current["seconds_to_kill"] = round(time.perf_counter() - _CURRENT["start"], 3)
            raise

    counted._marlin_kill_counted = True
    handle.inner_test = counted


def _balanced(text: str, start: int) -> str | None:
    """The {...} literal that opens at text[start] (cases hold no braces inside strings)."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i + 1]
    return None


def parse_failure(text: str) -> tuple[dict | None, str | None]:
    r"""(shrunk case, falsifying example) from a failure report: Hypothesis' "Failing test case" /
    "Falsifying example" block with its `Draw n (case): {...}` line, else the laws' Reproduce note.

    >>> report = ("E       Failing test case: test_matches_oracle(\n"
    ...           "E           data=data(...),\n"
    ...           "E       )\n"
    ...           "E       Draw 1 (case): {'size_k': 16,\n"
    ...           "E        'size_n': 64}  # or any other generated value\n")
    >>> parse_failure(report)
    ({'size_k': 16, 'size_n': 64}, "Failing test case: test_matches_oracle( Draw 1 (case): {'size_k': 16,\n 'size_n': 64}")
    """
    plain = "\n".join(line[8:] if line.startswith("E ") else line for line in text.splitlines())
    case, example = None, None
    head = max(plain.rfind("Failing test case"), plain.rfind("Falsifying example"))
    draw = _DRAW_CASE.search(plain, max(head, 0))
    if draw:
        literal = _balanced(plain, draw.end())
        try:
            case = ast.literal_eval(literal) if literal else None
        except (ValueError, SyntaxError):
            case = None
        if head >= 0:
            repro = re.search(r"@reproduce_failure\([^)]*\)", plain[draw.start():])
            parts = [plain[head:].splitlines()[0], draw.group(0) + (literal or ""), repro.group(0) if repro else ""]
            example = " ".join(p for p in parts if p)
    if case is None:
        notes = _REPRO.findall(plain)
        if notes:
            case = json.loads(notes[-1][2])
    return case, example


def pytest_runtest_logreport(report) -> None:
    config = _CONFIG.get("config")
    if config is None or report.when not in ("setup", "call"):
        return
    if report.when == "setup" and report.passed:
        return
    record = _record(config, report.nodeid)
    if record["outcome"] == "failed":   # a setup failure stays the verdict
        return
    record["outcome"] = report.outcome
    record["seconds"] = round(report.duration, 3)
    if report.failed:
        text = report.longreprtext
        record["case"], record["falsifying_example"] = parse_failure(text)
        lines = [line for line in text.splitlines() if line.startswith("E ")]
        record["error"] = "\n".join(lines[:6])[:1500] or text[-1500:]


def pytest_sessionfinish(session) -> None:
    config = session.config
    if _active(config):
        Path(config.getoption("--marlin-kill-record")).write_text(
            json.dumps(list(config.stash[_RECORDS].values()), indent=1), encoding="utf-8")


# --- the driver side -----------------------------------------------------------------------------

@dataclass
class MutantResult:
    name: str
    summary: str
    spec: str
    reference: str
    operations: list
    killed: bool
    seconds: float
    tests: list = field(default_factory=list)          # the per-test records of the plugin
    shrinking: list = field(default_factory=list)      # kills whose shrunk case is not the minimal one
    returncode: int = 0
    output_tail: str = ""


def subprocess_command(name: str, record: Path, *, ops=None, stop_first: bool = False,
                       base: str | None = None) -> list[str]:
    """The pytest command line that runs the laws on mutant `name` and records to `record`."""
    backend = f"mutant:{name}" + (f"@{base}" if base else "")
    cmd = [sys.executable, "-m", "pytest", *LAW_FILES, "--marlin-backend", backend, f"--hypothesis-profile={PROFILE}",
           "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "properties.strength.kill_matrix",
           "--marlin-kill-record", str(record), "--no-header", "-rN", "-o", "addopts="]
    if ops:
        cmd += ["--marlin-kill-ops", ",".join(ops)]
    return cmd + (["-x"] if stop_first else [])


def shrinking_gaps(mutant, tests: list) -> list:
    """Kills whose shrunk case does not have the fields Mutant.minimal names for that operation."""
    gaps = []
    for t in tests:
        want = (mutant.minimal or {}).get(t.get("op"))
        if t.get("outcome") != "failed" or not want or t.get("case") is None:
            continue
        got = {k: t["case"].get(k) for k in want}
        if got != want:
            gaps.append({"nodeid": t["nodeid"], "want": want, "got": got})
    return gaps


def run_mutant(name: str, *, relevant: bool = True, stop_first: bool = False, base: str | None = None,
               timeout: float = 900.0) -> MutantResult:
    """Run the laws on one mutant in a subprocess and collect the plugin's records."""
    from properties.strength.mutants import MUTANTS

    mutant = MUTANTS[name]
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "record.json"
        cmd = subprocess_command(name, record, ops=mutant.operations if relevant else None,
                             stop_first=stop_first, base=base)
        # one thread per subprocess: the mutants already run in parallel, and torch would oversubscribe
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.pop("CI", None)   # the profile is given explicitly
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
            code, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, output = -1, f"timed out after {timeout} s\n{exc.stdout or ''}"
        seconds = round(time.perf_counter() - start, 2)
        tests = json.loads(record.read_text(encoding="utf-8")) if record.exists() else []
    killed = any(t.get("outcome") == "failed" for t in tests)
    return MutantResult(name, mutant.summary, mutant.spec, mutant.reference, list(mutant.operations), killed,
                        seconds, tests, shrinking_gaps(mutant, tests), code, output[-3000:])


def run_all(names=None, *, relevant: bool = True, stop_first: bool = False, jobs: int | None = None,
            base: str | None = None, timeout: float = 900.0) -> list[MutantResult]:
    from properties.strength.mutants import MUTANTS

    names = list(names or MUTANTS)
    jobs = jobs or os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:   # threads only wait on processes
        futures = [pool.submit(run_mutant, n, relevant=relevant, stop_first=stop_first, base=base,
                               timeout=timeout) for n in names]
        return [f.result() for f in futures]


def law_columns(results: list[MutantResult]) -> list[str]:
    return sorted({t["law"] for r in results for t in r.tests if t.get("law")})


def to_markdown(results: list[MutantResult]) -> str:
    laws = law_columns(results)
    killed = sum(r.killed for r in results)
    lines = ["# Mutant kill matrix\n",
             f"{killed} of {len(results)} mutants killed (profile `{PROFILE}`). A cell shows the laws' verdict on "
             "the mutant: **K** killed (examples to the first failure, seconds), `.` ran and passed, blank not "
             "run. Shrunk cases and the falsifying examples are in the JSON.\n",
             "| mutant | spec | real bug | " + " | ".join(laws) + " | killed |",
             "|---|---|---|" + "---|" * len(laws) + "---|"]
    for r in results:
        cells = []
        for law in laws:
            ran = [t for t in r.tests if t.get("law") == law and t.get("outcome")]
            kills = [t for t in ran if t["outcome"] == "failed"]
            if kills:
                first = min(kills, key=lambda t: t.get("examples_to_kill") or 10**9)
                cells.append(f"**K** ({first.get('examples_to_kill')} ex, {first.get('seconds_to_kill')} s)")
            else:
                cells.append("." if ran else "")
        lines.append(f"| `{r.name}` | {r.spec} | {r.reference} | " + " | ".join(cells)
                     + f" | {'yes' if r.killed else '**NO**'} |")
    gaps = [(r.name, g) for r in results for g in r.shrinking]
    if gaps:
        lines += ["", "## Shrinking gaps (shrunk case is not the smallest legal shape)", ""]
        lines += [f"* `{name}` {g['nodeid']}: got {g['got']}, want {g['want']}" for name, g in gaps]
    survivors = [r for r in results if not r.killed]
    if survivors:
        lines += ["", "## Survivors", ""]
        lines += [f"* `{r.name}`: {r.summary} (operations {', '.join(r.operations)})" for r in survivors]
    return "\n".join(lines) + "\n"


def write_reports(results: list[MutantResult], out: Path) -> tuple[Path, Path]:
    """<out>.json (every record) and <out>.md (the matrix)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    records = [asdict(r) for r in results]
    for record in records:   # pytest's own output only where the records do not explain the verdict
        if record["killed"] and record["tests"]:
            record["output_tail"] = ""
    json_path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    md_path.write_text(to_markdown(results), encoding="utf-8")
    return json_path, md_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m properties.kill_matrix", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kill_matrix",
                        help="report path without suffix (writes .json and .md)")
    parser.add_argument("--mutant", action="append", help="only this mutant (repeatable)")
    parser.add_argument("--relevant", action="store_true", help="only the laws of each mutant's operations")
    parser.add_argument("-x", "--stop-first", action="store_true", help="stop each mutant at its first kill")
    parser.add_argument("--jobs", type=int, default=None, help="parallel subprocesses (default: CPU count)")
    parser.add_argument("--base", default=None, help="backend the mutants wrap (default: torch)")
    args = parser.parse_args(argv)
    results = run_all(args.mutant, relevant=args.relevant, stop_first=args.stop_first, jobs=args.jobs, base=args.base)
    json_path, md_path = write_reports(results, args.out)
    for r in results:
        print(f"{'killed  ' if r.killed else 'SURVIVED'} {r.name:40s} {r.seconds:7.1f} s"
              + (f"  (pytest exit {r.returncode}, no records)" if not r.tests else ""))
    print(f"{sum(r.killed for r in results)} of {len(results)} mutants killed; wrote {json_path} and {md_path}")
    return 0 if all(r.killed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
