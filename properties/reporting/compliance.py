"""The compliance report: backend x operation x scale scheme x dtype, passed / failed / not provided.

A pytest plugin (loaded by properties.pytest_plugin). While a test runs, every law check on the
backend under test is counted into the cell of its case (properties.reporting.cells: `laws.check` calls
`note_cell`). At the end of the run the cells are summed over tests and over pytest-xdist workers
(each worker sends its per-test records through `config.workeroutput`, as example_counter does), and

* the terminal summary prints the table (with -q: a one-line summary), and
* `--marlin-report=PATH` writes PATH.json and PATH.md (a suffix .json/.md on PATH is dropped); a PATH
  that is an existing directory or ends in "/" gets DIR/compliance.json and DIR/compliance.md.

A cell's result: **failed** if a check of that cell failed in any test (a test that failed outside
its checks, e.g. a Hypothesis health check, fails all its cells), else **passed** if one passed, else
**not provided** (the backend lacks the operation: properties.seam.backends.NotProvided); an operation
that is not provided at all is one row with scheme and dtype "*". `examples` are the Hypothesis
examples behind the cell (each example of a law test makes one check); their sum over a test equals
example_counter's count for that test, which the JSON lists per test. The header names the backend
and its version, Python, torch, CUDA and the GPU (when the run imported torch), Hypothesis with its
profile and seed, and the time.

JSON (`format` "marlin-compliance/1"): {"format", "header": {...}, "summary": {"cells", "passed",
"failed", "not provided", "tests", "examples"}, "cells": [{"backend", "operation", "scheme", "dtype",
"result", "tests": {"passed", "failed", "not provided"}, "examples", "checks": {...}}],
"tests": [{"nodeid", "outcome", "examples", "cells": [[op, scheme, dtype, {outcome: checks}]]}]}.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import sys
from collections import Counter
from pathlib import Path

import pytest

from properties.reporting import cells
from properties.seam.backends import OPERATIONS, NotProvided, get_backend

FORMAT = "marlin-compliance/1"
ALL = "*"          # scheme and dtype of an operation the backend does not provide at all
RESULTS = ("passed", "failed", "not provided")
COLUMNS = ("backend", "operation", "scale scheme", "dtype", "result", "tests pass/fail/n.p.", "examples")
_WORKER_KEY = "marlin_compliance"
_NODES = pytest.StashKey[list]()
_TALLIES = pytest.StashKey[dict]()
_WORKERS = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_NODES] = []
    config.stash[_TALLIES] = {}
    config.stash[_WORKERS] = 0


def _session_backend(config: pytest.Config) -> tuple[str, str]:
    """(name given to --marlin-backend, the Backend's own name that laws.check reports)."""
    from properties.pytest_plugin import backend_name

    spec = backend_name(config)
    try:
        return spec, get_backend(spec).name
    except Exception:  # noqa: BLE001 - a backend that cannot be built fails its tests elsewhere
        return spec, spec


def _row_op(item: pytest.Item) -> str | None:
    """The operation of the registry row a law test is parametrized with, if any."""
    from properties.cases.transforms import Transform

    params = getattr(getattr(item, "callspec", None), "params", {})
    row = next((v for v in params.values() if isinstance(v, Transform)), None)
    return None if row is None else row.op


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    hypothesis = getattr(getattr(item, "obj", None), "hypothesis", None) is not None
    tally = cells.Tally(_session_backend(item.config)[1], hypothesis=hypothesis)
    item.config.stash[_TALLIES][item.nodeid] = tally
    cells.start(tally)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    if call.when == "call":
        cells.start(None)
    if call.when == "teardown" or (call.when == "setup" and not report.failed and not report.skipped):
        return report
    tally = item.config.stash[_TALLIES].pop(item.nodeid, None)
    found = {} if tally is None else tally.cells
    excinfo = call.excinfo
    not_provided = report.skipped and excinfo is not None and isinstance(excinfo.value, NotProvided)
    op = _row_op(item)
    if not found and op is None:
        return report                                   # not a law test
    if not found:
        if not (report.failed or not_provided):
            return report                               # a plain skip of a law test: no verdict
        found = {(op, "?", "?"): Counter({"failed" if report.failed else "not provided": 1})}
    outcome = "not provided" if not_provided else report.outcome
    item.config.stash[_NODES].append({
        "nodeid": item.nodeid, "outcome": outcome, "hypothesis": bool(tally and tally.hypothesis),
        "cells": [[*key, dict(counts)] for key, counts in sorted(found.items())]})
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workeroutput"):   # an xdist worker: hand the per-test records to the controller
        config.workeroutput[_WORKER_KEY] = json.dumps(config.stash[_NODES])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    node.config.stash[_WORKERS] += 1
    output = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
    if output:
        node.config.stash[_NODES].extend(json.loads(output))


# --- the table ----------------------------------------------------------------------------------------

def _cell_verdict(counts: dict, node_failed: bool) -> str:
    if counts.get("failed") or node_failed:
        return "failed"
    return "passed" if counts.get("passed") else "not provided"


def build_cells(nodes: list[dict], backend: str) -> list[dict]:
    """Per-test records -> table rows, sorted by operation (contract order), scheme, dtype."""
    table: dict[tuple, dict] = {}
    for node in nodes:
        node_failed = node["outcome"] == "failed" and not any(c[3].get("failed") for c in node["cells"])
        for op, scheme, dtype, counts in node["cells"]:
            row = table.setdefault((op, scheme, dtype), {
                "backend": backend, "operation": op, "scheme": scheme, "dtype": dtype, "result": None,
                "tests": dict.fromkeys(RESULTS, 0), "examples": 0, "checks": dict.fromkeys(RESULTS, 0)})
            row["tests"][_cell_verdict(counts, node_failed)] += 1
            for outcome, n in counts.items():
                row["checks"][outcome] += n
            if node.get("hypothesis"):
                row["examples"] += sum(counts.values())
    for row in table.values():
        tests = row["tests"]
        row["result"] = "failed" if tests["failed"] else "passed" if tests["passed"] else "not provided"
    # an operation the backend lacks entirely is one row, whatever cases its tests happened to draw
    for op in sorted({key[0] for key in table}):
        keys = [key for key in table if key[0] == op]
        if all(table[key]["result"] == "not provided" for key in keys):
            merged = table[keys[0]]
            for key in keys[1:]:
                other = table.pop(key)
                merged["examples"] += other["examples"]
                for part in ("tests", "checks"):
                    for outcome in RESULTS:
                        merged[part][outcome] += other[part][outcome]
            merged["scheme"] = merged["dtype"] = ALL
    order = {op: i for i, op in enumerate(OPERATIONS)}
    return sorted(table.values(), key=lambda r: (order.get(r["operation"], len(order)), r["operation"],
                                                 r["scheme"], r["dtype"]))


def _torch_info() -> dict:
    """torch's version, CUDA runtime and GPU; CUDA and GPU only if the run imported torch (a NumPy
    backend's report does not pay torch's import for facts that cannot concern it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            version = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            return {"torch": "not installed", "cuda": "none", "gpu": "none"}
        unknown = "not checked (torch not imported by this run)"
        return {"torch": version, "cuda": unknown, "gpu": unknown}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"torch": torch.__version__, "cuda": torch.version.cuda or "none", "gpu": gpu}


def header(config: pytest.Config) -> dict:
    """Who was tested, where, and with which Hypothesis settings."""
    from hypothesis import settings

    spec, name = _session_backend(config)
    try:
        backend = get_backend(spec)
        version, provides = backend.version, len(backend.provides)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the tests already failed on it
        version, provides = f"cannot be built: {type(exc).__name__}: {exc}", 0
    current = settings.default
    seed = config.getoption("hypothesis_seed", default=None)
    return {"backend": spec, "backend_name": name, "backend_version": version, "provides": provides,
            "python": platform.python_version(), **_torch_info(),
            "hypothesis": importlib.metadata.version("hypothesis"),
            "profile": settings.get_current_profile_name(), "max_examples": current.max_examples,
            "seed": str(seed) if seed is not None else ("derandomized" if current.derandomize else "random"),
            "xdist_workers": config.stash[_WORKERS],
            "platform": platform.platform(),
            "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def build_report(nodes: list[dict], head: dict, example_counts: dict | None = None) -> dict:
    """The whole report; example_counts: example_counter's per-test counts, listed per test."""
    rows = build_cells(nodes, head["backend"])
    counts = example_counts or {}
    tests = [{"nodeid": n["nodeid"], "outcome": n["outcome"], "examples": counts.get(n["nodeid"], 0),
              "cells": n["cells"]} for n in sorted(nodes, key=lambda n: n["nodeid"])]
    summary = {"cells": len(rows), **{r: sum(row["result"] == r for row in rows) for r in RESULTS},
               "tests": len(tests), "examples": sum(row["examples"] for row in rows)}
    return {"format": FORMAT, "header": head, "summary": summary, "cells": rows, "tests": tests}


def _row_cells(row: dict) -> list[str]:
    t = row["tests"]
    return [row["backend"], row["operation"], row["scheme"], row["dtype"], row["result"],
            f"{t['passed']}/{t['failed']}/{t['not provided']}", str(row["examples"])]


def _header_lines(report: dict) -> list[tuple[str, str]]:
    h = report["header"]
    return [("backend", f"{h['backend']} ({h['backend_version']}; provides {h['provides']} operations)"),
            ("torch", h["torch"]), ("CUDA", h["cuda"]), ("GPU", h["gpu"]),
            ("Hypothesis", f"{h['hypothesis']}, profile {h['profile']} (max_examples {h['max_examples']}), "
                           f"seed {h['seed']}"),
            ("Python", f"{h['python']} on {h['platform']}"), ("finished", h["finished"])]


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _summary_line(report: dict) -> str:
    s = report["summary"]
    return (f"{_n(s['cells'], 'cell')}: {s['passed']} passed, {s['failed']} failed, {s['not provided']} not "
            f"provided; {_n(s['examples'], 'Hypothesis example')} in {_n(s['tests'], 'law test')}")


def to_markdown(report: dict) -> str:
    lines = [f"# Marlin compliance: backend `{report['header']['backend']}`", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in _header_lines(report)]
    lines += ["", _summary_line(report) + ". A cell fails if any check of its (operation, scale scheme, dtype) "
              "failed; *not provided*: the backend lacks the operation.", "",
              "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in report["cells"]:
        values = _row_cells(row)
        values[4] = f"**{values[4]}**" if row["result"] == "failed" else values[4]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def to_text(report: dict) -> list[str]:
    """The table as fixed-width lines for the terminal."""
    rows = [list(COLUMNS)] + [_row_cells(row) for row in report["cells"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [f"{key}: {value}" for key, value in _header_lines(report)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return lines + [_summary_line(report)]


def report_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(json, markdown) paths of --marlin-report=PATH."""
    text = os.fspath(path)
    p = Path(text)
    if p.is_dir() or text.endswith(("/", os.sep)):
        return p / "compliance.json", p / "compliance.md"
    if p.suffix in (".json", ".md"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".md")


def write(report: dict, path: str | os.PathLike) -> tuple[Path, Path]:
    json_path, md_path = report_paths(path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(to_markdown(report), encoding="utf-8")
    return json_path, md_path


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if hasattr(config, "workeroutput"):
        return
    nodes, path = config.stash[_NODES], config.getoption("--marlin-report")
    if not nodes and not path:
        return
    from properties.reporting.counters import example_counts

    report = build_report(nodes, header(config), dict(example_counts(config)))
    if config.get_verbosity() >= 0:
        terminalreporter.section("marlin: compliance (backend x operation x scale scheme x dtype)")
        for line in to_text(report):
            terminalreporter.write_line(line)
    else:
        terminalreporter.write_line(f"marlin compliance: {_summary_line(report)}")
    if path:
        json_path, md_path = write(report, path)
        terminalreporter.write_line(f"marlin: compliance report written to {json_path} and {md_path}")
