"""The compliance report: backend x operation x scale scheme x dtype x feature, and each cell's verdict.

A pytest plugin (loaded by properties.pytest_plugin). Every test that uses the `backend` fixture feeds the table,
laws and worked examples alike, so the table's totals equal pytest's for those tests:

* a law test counts each check into the cell of its case (properties.reporting.cells: `laws.check` calls
  `note_cell`); it is parametrized by a cell (properties.seam.capabilities.Cell), and a cell the backend does not
  provide is skipped as "not provided" in setup, before a single example is drawn;
* any other test names its cell with `@pytest.mark.marlin_cell(op, scheme, dtype, feature)` and counts once, with
  its outcome; a test that names none is counted under the operation "(no cell)".

At the end of the run the records are summed over tests and pytest-xdist workers (each worker sends them through
`config.workeroutput`), and

* the terminal summary prints the table (with -q: a one-line summary), and
* `--marlin-report=PATH` writes PATH.json and PATH.md (a suffix .json/.md on PATH is dropped); a PATH
  that is an existing directory or ends in "/" gets DIR/compliance.json and DIR/compliance.md.

A cell's result: **failed** if a check of that cell failed in any test (a test that failed outside its checks,
e.g. a Hypothesis health check, fails all its cells); else **thin** if its Hypothesis tests passed on fewer examples
than the floor (THIN_FRACTION of the profile's max_examples): a thin pass is not a pass, and under the `ci`, `gpu`
and `nightly` profiles it fails the run (under `dev` it is a warning); else **passed** if one passed, else **not
provided**. An operation that is not provided at all is one row with scheme, dtype and feature "*". `examples` are
the Hypothesis examples behind the cell (each example of a law test makes one check). The header names the backend
and its version, Python, torch, CUDA and the GPU (when the run imported torch), Hypothesis with its profile, seed
and the floor, and the time.

JSON (`format` "marlin-compliance/2"): {"format", "header": {...}, "summary": {"cells", "passed", "failed", "not
provided", "thin", "tests": {"passed", "failed", "not provided", "skipped"}, "examples"}, "cells": [{"backend",
"operation", "scheme", "dtype", "feature", "result", "tests": {...}, "examples", "checks": {...}}], "tests":
[{"nodeid", "outcome", "examples", "cells": [[op, scheme, dtype, feature, {outcome: checks}]]}]}.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import sys
from collections import Counter
from pathlib import Path

import pytest

from properties.reporting import cells
from properties.seam.backends import OPERATIONS, NotProvided, get_backend
from properties.seam.capabilities import Cell

FORMAT = "marlin-compliance/2"
ALL = "*"          # scheme, dtype and feature of an operation the backend does not provide at all
NO_CELL = "(no cell)"   # the operation of a backend test that names no cell
RESULTS = ("passed", "failed", "not provided")
OUTCOMES = (*RESULTS, "skipped")    # a test's outcome; "skipped": for another reason than "not provided"
THIN_FRACTION = 0.5                 # a cell's examples must reach this share of the profile's max_examples
STRICT_PROFILES = ("ci", "gpu", "nightly")   # where a thin cell fails the run
MARKER = "marlin_cell"
COLUMNS = ("backend", "operation", "scale scheme", "dtype", "feature", "result", "tests pass/fail/n.p.",
           "examples")
MD_COLUMNS = (*COLUMNS, "shape classes reached (examples)")
_WORKER_KEY = "marlin_compliance"
_NODES = pytest.StashKey[list]()
_TALLIES = pytest.StashKey[dict]()
_WORKERS = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(op, scheme='-', dtype='-', feature='-'): the compliance cell a "
                                       "test of the backend under test is about (checked provided before it runs)")
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


def item_cell(item: pytest.Item) -> Cell | None:
    """The cell a test is about: its `cell` parameter, or its marlin_cell marker."""
    cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
    if isinstance(cell, Cell):
        return cell
    marker = item.get_closest_marker(MARKER)
    return None if marker is None else Cell(*marker.args, **marker.kwargs)


def not_provided_reason(report) -> str | None:
    """The reason of a "not provided" skip (NotProvided, which pytest turns into a skip with its message)."""
    longrepr = getattr(report, "longrepr", None)
    if report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2]).removeprefix("Skipped: ")
        if reason.startswith(NotProvided.PREFIX):
            return reason
    return None


def uses_backend(item: pytest.Item) -> bool:
    return "backend" in getattr(item, "fixturenames", ())


def floor(max_examples: int) -> int:
    """The fewest examples a provided cell needs not to be thin."""
    return max(1, math.ceil(THIN_FRACTION * max_examples))


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
    if not found and not uses_backend(item):
        return report                                   # not a test of the backend under test
    outcome = ("not provided" if not_provided_reason(report) else "skipped") if report.skipped else report.outcome
    if not found:
        cell = item_cell(item) or Cell(NO_CELL)
        found = {cell: Counter() if outcome == "skipped" else Counter({outcome: 1})}
    reached = {} if tally is None else tally.classes
    item.config.stash[_NODES].append({
        "nodeid": item.nodeid, "outcome": outcome, "hypothesis": bool(tally and tally.hypothesis),
        "cells": [[*key, dict(counts)] for key, counts in sorted(found.items())],
        "classes": [[*key, dict(counts)] for key, counts in sorted(reached.items()) if counts]})
    return report


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


def build_cells(nodes: list[dict], backend: str, min_examples: int = 0) -> list[dict]:
    """Per-test records -> table rows, sorted by operation (contract order), scheme, dtype, feature. A passed cell
    whose Hypothesis tests ran fewer than `min_examples` examples is "thin"."""
    table: dict[tuple, dict] = {}
    for node in nodes:
        if node["outcome"] == "skipped":
            continue                                    # skipped for another reason: no verdict on its cell
        node_failed = node["outcome"] == "failed" and not any(c[4].get("failed") for c in node["cells"])
        for op, scheme, dtype, feature, counts in node["cells"]:
            row = table.setdefault((op, scheme, dtype, feature), {
                "backend": backend, "operation": op, "scheme": scheme, "dtype": dtype, "feature": feature,
                "result": None, "tests": dict.fromkeys(RESULTS, 0), "examples": 0, "hypothesis": False,
                "checks": dict.fromkeys(RESULTS, 0), "classes": {}})
            row["tests"][_cell_verdict(counts, node_failed)] += 1
            for outcome, n in counts.items():
                row["checks"][outcome] += n
            if node.get("hypothesis"):
                row["examples"] += counts.get("passed", 0)
                row["hypothesis"] = True
    for node in nodes:                                  # the shape classes each cell's examples reached
        for *key, counts in node.get("classes", []):
            if tuple(key) in table:
                for name, n in counts.items():
                    table[tuple(key)]["classes"][name] = table[tuple(key)]["classes"].get(name, 0) + n
    for row in table.values():
        tests = row["tests"]
        row["result"] = ("failed" if tests["failed"] else "not provided" if not tests["passed"]
                         else "thin" if row.pop("hypothesis") and row["examples"] < min_examples else "passed")
        row.pop("hypothesis", None)
    # an operation the backend lacks entirely is one row, whatever cells its tests are about
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
            merged["scheme"] = merged["dtype"] = merged["feature"] = ALL
    order = {op: i for i, op in enumerate(OPERATIONS)}
    return sorted(table.values(), key=lambda r: (order.get(r["operation"], len(order)), r["operation"],
                                                 r["scheme"], r["dtype"], r["feature"]))


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
    from properties.seam import loading
    return {"backend": spec, "backend_name": name, "backend_version": version, "provides": provides,
            "python": platform.python_version(), **_torch_info(),
            "hypothesis": importlib.metadata.version("hypothesis"),
            "profile": settings.get_current_profile_name(), "max_examples": current.max_examples,
            "floor": floor(current.max_examples), "loaded": list(loading.LOADED),
            "seed": str(seed) if seed is not None else ("derandomized" if current.derandomize else "random"),
            "xdist_workers": config.stash[_WORKERS],
            "platform": platform.platform(),
            "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def build_report(nodes: list[dict], head: dict, example_counts: dict | None = None) -> dict:
    """The whole report; example_counts: the counters' per-test counts, listed per test."""
    rows = build_cells(nodes, head["backend"], head.get("floor", 0))
    counts = example_counts or {}
    tests = [{"nodeid": n["nodeid"], "outcome": n["outcome"], "examples": counts.get(n["nodeid"], 0),
              "cells": n["cells"]} for n in sorted(nodes, key=lambda n: n["nodeid"])]
    summary = {"cells": len(rows), **{r: sum(row["result"] == r for row in rows) for r in (*RESULTS, "thin")},
               "tests": {o: sum(t["outcome"] == o for t in tests) for o in OUTCOMES},
               "examples": sum(row["examples"] for row in rows)}
    return {"format": FORMAT, "header": head, "summary": summary, "cells": rows, "tests": tests}


def thin_cells(report: dict) -> list[dict]:
    return [row for row in report["cells"] if row["result"] == "thin"]


def _row_cells(row: dict) -> list[str]:
    t = row["tests"]
    return [row["backend"], row["operation"], row["scheme"], row["dtype"], row["feature"], row["result"],
            f"{t['passed']}/{t['failed']}/{t['not provided']}", str(row["examples"])]


def _header_lines(report: dict) -> list[tuple[str, str]]:
    h = report["header"]
    return [("backend", f"{h['backend']} ({h['backend_version']}; provides {h['provides']} operations)"),
            ("torch", h["torch"]), ("CUDA", h["cuda"]), ("GPU", h["gpu"]),
            ("Hypothesis", f"{h['hypothesis']}, profile {h['profile']} (max_examples {h['max_examples']}, "
                           f"thin below {h.get('floor', 0)} examples a cell), seed {h['seed']}"),
            ("loaded", ", ".join(h.get("loaded", [])) or "nothing"),
            ("Python", f"{h['python']} on {h['platform']}"), ("finished", h["finished"])]


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _summary_line(report: dict) -> str:
    s, t = report["summary"], report["summary"]["tests"]
    return (f"{_n(s['cells'], 'cell')}: {s['passed']} passed, {s['failed']} failed, {s['thin']} thin, "
            f"{s['not provided']} not provided; {_n(sum(t.values()), 'test')}: {t['passed']} passed, {t['failed']} "
            f"failed, {t['not provided']} not provided, {t['skipped']} skipped; "
            f"{_n(s['examples'], 'Hypothesis example')}")


def to_markdown(report: dict) -> str:
    lines = [f"# Marlin compliance: backend `{report['header']['backend']}`", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in _header_lines(report)]
    lines += ["", _summary_line(report) + ". A cell fails if any check of its (operation, scale scheme, dtype, "
              "feature) failed; *thin*: it passed on fewer examples than the floor; *not provided*: the backend "
              "lacks it.", "",
              "| " + " | ".join(MD_COLUMNS) + " |", "|" + "---|" * len(MD_COLUMNS)]
    for row in report["cells"]:
        values = _row_cells(row) + [", ".join(f"{name} ({n})" for name, n in row.get("classes", {}).items()) or "-"]
        values[5] = f"**{values[5]}**" if row["result"] in ("failed", "thin") else values[5]
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


def session_report(config: pytest.Config) -> dict:
    """The report of this run (on the controller under xdist), built once."""
    if _REPORT not in config.stash:
        from properties.reporting.counters import example_counts

        config.stash[_REPORT] = build_report(config.stash[_NODES], header(config), dict(example_counts(config)))
    return config.stash[_REPORT]


_REPORT = pytest.StashKey[dict]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    """A worker hands its per-test records to the controller; on the controller (or without xdist), where every
    record has arrived, a thin cell fails the run under the strict profiles."""
    config = session.config
    if hasattr(config, "workeroutput"):
        config.workeroutput[_WORKER_KEY] = json.dumps(config.stash[_NODES])
        return
    if not config.stash[_NODES]:
        return
    report = session_report(config)
    if thin_cells(report) and report["header"]["profile"] in STRICT_PROFILES and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if hasattr(config, "workeroutput"):
        return
    nodes, path = config.stash[_NODES], config.getoption("--marlin-report")
    if not nodes and not path:
        return
    report = session_report(config)
    if config.get_verbosity() >= 0:
        terminalreporter.section("marlin: compliance (backend x operation x scale scheme x dtype x feature)")
        for line in to_text(report):
            terminalreporter.write_line(line)
    else:
        terminalreporter.write_line(f"marlin compliance: {_summary_line(report)}")
    thin = thin_cells(report)
    if thin:
        strict = report["header"]["profile"] in STRICT_PROFILES
        terminalreporter.section("marlin: thin cells (passed on too few examples: not a pass)", red=strict,
                                 yellow=not strict)
        for row in thin:
            terminalreporter.write_line(f"{row['operation']} [{row['scheme']}, {row['dtype']}, {row['feature']}]: "
                                        f"{row['examples']} examples < {report['header']['floor']}")
        terminalreporter.write_line(f"{len(thin)} thin cell(s): " + ("the run fails (profile "
                                    f"{report['header']['profile']})" if strict else "a warning under this profile"))
    if path:
        json_path, md_path = write(report, path)
        terminalreporter.write_line(f"marlin: compliance report written to {json_path} and {md_path}")
