"""Minimal failing cases that replay: read them off a law failure, save them as JSON, replay a file.

A case (properties.cases.strategies) is a small JSON dict: shapes as numbers, dtypes and schemes as names,
and a `seed` from which properties.cases.transforms builds every array with np.random.default_rng. So the
law, the registry row and the case determine a check completely, and replaying them needs no search.
Every failure of `properties.laws.check` carries the note

    Reproduce: python -m properties.laws LAW 'TRANSFORM' '{CASE-JSON}' --backend 'NAME' [--load 'LIB' ...]

(the GEMM laws too, transform "marlin_gemm"; the loads are what --marlin-load loaded), and for a Hypothesis test
the exception pytest shows is the shrunk case's.

As a pytest plugin (loaded by properties.pytest_plugin):

* the terminal summary lists every failed law test with its shrunk case as JSON and ONE command that
  replays exactly that case (the backend as given to --marlin-backend, e.g. `mutant:x@ref`);
* `--marlin-save-failures` writes each such case to `<dir>/<law>-<hash>.json` (dir: --marlin-regressions-dir,
  default <rootdir>/tests/regressions; hash: of law, transform and case, so the same case found twice,
  or on two backends, is one file, and an existing file is kept with its first date). The file holds
  `format`, `law`, `transform`, `op`, `backend`, `case`, `saved` (UTC), `nodeid`, `error` and, when the run
  loaded libraries, `load`;
  `tests/test_regressions.py` replays every file against the selected backend.

From the shell:

    python -m properties.replay tests/regressions/matches_oracle-3f2a9c01d4e5.json [--backend NAME]

replays files (default backend: the one each file was found on) and exits 1 if a law fails.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

FORMAT = "marlin-regression/1"
FIELDS = ("format", "law", "transform", "op", "backend", "case", "saved", "nodeid", "error")
HASH_CHARS = 12
DEFAULT_DIR = Path("tests") / "regressions"   # under the pytest rootdir
_REPRODUCE = re.compile(r"^Reproduce: python -m properties\.laws (\w+) '([^']*)' '(\{.*\})' "
                        r"--backend '([^']*)'((?: --load '[^']*')*)$")
_LOAD = re.compile(r" --load '([^']*)'")


@dataclass(frozen=True)
class Failure:
    """One law check that failed: which law, on which registry row, with which case, on which backend."""

    law: str
    transform: str
    case: dict
    backend: str
    error: str = ""
    loads: tuple[str, ...] = ()     # --marlin-load items the run had loaded (properties.seam.loading)

    def command(self, backend: str | None = None) -> str:
        """The one shell line that replays this case (on `backend`, default the one it failed on)."""
        from properties.reporting.report import repro_command

        return repro_command(self.law, self.transform, self.case, backend or self.backend, self.loads)

    def case_json(self) -> str:
        return json.dumps(self.case, separators=(",", ":"))


def law_of(law: str, transform: str):
    """(check function, registry row) of a law by name (properties.laws.law_of)."""
    from properties.laws import law_of as find

    return find(law, transform)


def case_hash(law: str, transform: str, case: dict) -> str:
    """Hex digest naming a case file; stable across runs, machines and key order."""
    text = json.dumps([law, transform, case], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def file_name(law: str, transform: str, case: dict) -> str:
    return f"{law}-{case_hash(law, transform, case)}.json"


def _leaves(exc: BaseException):
    """The exception and, for Hypothesis' ExceptionGroups (several bugs, flaky), every leaf in it."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def failures_of(exc: BaseException) -> list[Failure]:
    """The law failures an exception carries (the Reproduce notes of properties.laws.check and of
    properties.cases.gemm_cases.check)."""
    found = []
    for leaf in _leaves(exc):
        first_line = (str(leaf).splitlines() or [""])[0]
        for note in getattr(leaf, "__notes__", ()):
            match = _REPRODUCE.match(note)
            if match:
                law, transform, case, backend, loads = match.groups()
                found.append(Failure(law, transform, json.loads(case), backend,
                                     f"{type(leaf).__name__}: {first_line}"[:300], tuple(_LOAD.findall(loads))))
    return found


# --- files ------------------------------------------------------------------------------------------

def save(failure: Failure, directory: Path, *, backend: str, nodeid: str = "",
         now: datetime.datetime | None = None) -> tuple[Path, bool]:
    """Write the failure to directory/<law>-<hash>.json; (path, True) if written, (path, False) if a
    file of that case is already there (it is kept as it is)."""
    directory = Path(directory)
    path = directory / file_name(failure.law, failure.transform, failure.case)
    if path.exists():
        return path, False
    now = now or datetime.datetime.now(datetime.timezone.utc)
    record = {"format": FORMAT, "law": failure.law, "transform": failure.transform,
              "op": law_of(failure.law, failure.transform)[1].op, "backend": backend, "case": failure.case,
              "saved": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "nodeid": nodeid, "error": failure.error}
    if failure.loads:
        record["load"] = list(failure.loads)       # optional: what must be loaded before the backend resolves
    directory.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")     # written whole, then renamed: xdist workers never see half
    temporary.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path, True


def load(path: Path) -> dict:
    """A saved case, checked: its fields, a known law and registry row, and a name that matches its
    content (a hand-edited case must be saved under its new hash)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"replay.load: {path} is not JSON: {exc}") from None
    missing = [f for f in FIELDS if not isinstance(record, dict) or f not in record]
    if missing:
        raise ValueError(f"replay.load: {path} lacks the fields {missing} (a regression file has {list(FIELDS)})")
    if record["format"] != FORMAT:
        raise ValueError(f"replay.load: {path} has format={record['format']!r}, want {FORMAT!r}")
    try:
        law_of(record["law"], record["transform"])
    except ValueError as exc:
        raise ValueError(f"replay.load: {path}: {exc}") from None
    if not isinstance(record["case"], dict):
        raise ValueError(f"replay.load: {path} has case of type {type(record['case']).__name__}, want an object")
    want = file_name(record["law"], record["transform"], record["case"])
    if path.name != want:
        raise ValueError(f"replay.load: {path.name} must be named {want} (law-hash of its law, transform and case)")
    return record


def files(directory: Path) -> list[Path]:
    """The *.json files of a directory, sorted (none if it does not exist); `load` rejects a file
    that is not a regression case, so a stray or misnamed file fails loudly instead of being skipped."""
    directory = Path(directory)
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def replay_file(path: Path, backend=None) -> dict:
    """Replay one saved case with its law on `backend` (a Backend or a name; default: the backend it
    was found on); raises like the law (AssertionError), or NotProvided. Returns the record."""
    from properties.seam.backends import Backend, get_backend

    from properties.seam.loading import load_all

    record = load(path)
    load_all(record.get("load", []))
    if not isinstance(backend, Backend):
        backend = get_backend(backend or record["backend"])
    check, row = law_of(record["law"], record["transform"])
    check(record["law"], backend, row, record["case"])
    return record


def file_command(path: Path, backend: str | None = None) -> str:
    return f"python -m properties.replay {shlex.quote(str(path))}" + (f" --backend {shlex.quote(backend)}"
                                                                      if backend else "")


# --- the pytest plugin --------------------------------------------------------------------------------

_RECORDS = pytest.StashKey[list]()
_WORKER_KEY = "marlin_failures"


def regressions_dir(config: pytest.Config) -> Path:
    given = config.getoption("--marlin-regressions-dir", default=None)
    return Path(given) if given else Path(config.rootpath) / DEFAULT_DIR


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RECORDS] = []


def _relative(path: Path, config: pytest.Config) -> str:
    try:
        return str(path.resolve().relative_to(Path(config.rootpath).resolve()))
    except ValueError:
        return str(path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    if call.excinfo is None or not report.failed:
        return report
    from properties.seam.backends import get_backend
    from properties.pytest_plugin import backend_name

    spec = backend_name(item.config)
    try:
        session_backend = get_backend(spec).name
    except Exception:  # noqa: BLE001 - a backend that cannot be built fails elsewhere
        session_backend = spec
    for failure in failures_of(call.excinfo.value):
        # on the backend under test, replay with its spec as given (mutant:x@ref keeps its base)
        backend = spec if failure.backend == session_backend else failure.backend
        record = {"nodeid": item.nodeid, "law": failure.law, "transform": failure.transform,
                  "case": failure.case, "backend": backend, "command": failure.command(backend), "saved": None}
        if item.config.getoption("--marlin-save-failures"):
            path, _ = save(failure, regressions_dir(item.config), backend=backend, nodeid=item.nodeid)
            record["saved"] = _relative(path, item.config)
        item.config.stash[_RECORDS].append(record)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workeroutput"):   # an xdist worker: hand the records to the controller
        config.workeroutput[_WORKER_KEY] = json.dumps(config.stash[_RECORDS])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    output = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
    if output:
        node.config.stash[_RECORDS].extend(json.loads(output))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if hasattr(config, "workeroutput") or not config.stash.get(_RECORDS, None):
        return
    write = terminalreporter.write_line
    terminalreporter.section("marlin: minimal failing cases (each command replays its case, no search)")
    for record in config.stash[_RECORDS]:
        write(f"{record['nodeid']}  [{record['law']} on {record['transform']}]")
        write(f"  case:   {json.dumps(record['case'], separators=(',', ':'))}")
        write(f"  replay: {record['command']}")
        if record["saved"]:
            write(f"  saved:  {record['saved']}  ({file_command(record['saved'], record['backend'])})")


# --- the command line -----------------------------------------------------------------------------------

def main(argv=None) -> int:
    from properties.seam.backends import NotProvided

    parser = argparse.ArgumentParser(prog="python -m properties.replay",
                                     description="Replay saved failing cases (tests/regressions/*.json).")
    parser.add_argument("paths", nargs="+", type=Path, help="regression files or directories of them")
    parser.add_argument("--backend", default=None, help="backend to replay on (default: each file's own)")
    parser.add_argument("--load", action="append", default=[], metavar="PATH_OR_MODULE",
                        help="load a library or module first (as --marlin-load does); a file's own `load` too")
    args = parser.parse_args(argv)
    from properties.seam.loading import load_all
    load_all(args.load)
    paths = [p for given in args.paths for p in (files(given) if given.is_dir() else [given])]
    failed = 0
    for path in paths:
        try:
            record = replay_file(path, args.backend)
        except NotProvided as exc:
            print(f"skip   {path}: {exc}")
            continue
        except AssertionError as exc:
            failed += 1
            notes = "".join(f"\n{note}" for note in getattr(exc, "__notes__", ()))
            print(f"FAILED {path}: {exc}{notes}\n", file=sys.stderr)
        else:
            print(f"holds  {path}: {record['law']} on {record['transform']} "
                  f"(backend {args.backend or record['backend']})")
    print(f"{failed} of {len(paths)} cases failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
