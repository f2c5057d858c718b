"""Retest the survivors of a finished mutmut run against tests written after it, without a new run.

A full `mutmut run` takes hours on 2 cores; the tests that close its survivors' gaps come after it. This script
copies the given test files of the working tree into the run's mutants/ folder (a copy of it: the run's own
folder is left alone), finds the tests of that selection that already fail without any mutant (the snapshot's
marlin_fast may predate a change those tests expect) and deselects them, then runs the selection once per
survivor with MUTANT_UNDER_TEST set and -x. A failure is a kill by the new tests. Writes {mutant: "killed" |
"survived"} as JSON; score.py does not read it: bench/results/mutmut.md reports both figures.

    python bench/mutmut/retest.py --tree /tmp/marlin-mutmut-$USER/tree --score bench/results/mutmut-run.json \\
        --tests tests/test_mutation_survivors.py tests/test_bad_input.py --out bench/results/mutmut-retest.json
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTEST = ["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", "--rootdir=.", "--tb=no"]


def run(folder: Path, tests: list[str], mutant: str | None, deselect: list[str], report: Path | None = None) -> int:
    env = dict(os.environ, PY_IGNORE_IMPORTMISMATCH="1")
    env.pop("MUTANT_UNDER_TEST", None)
    if mutant:
        env["MUTANT_UNDER_TEST"] = mutant
    args = [sys.executable, *PYTEST, *tests, *(f"--deselect={d}" for d in deselect)]
    if report is not None:          # the baseline: every test, not -x, and the ids of the failures
        args = [a for a in args if a != "-x"] + ["-rf"]
    done = subprocess.run(["nice", "-n", "19", *args], cwd=folder, env=env, capture_output=True, text=True)
    if report is not None:
        report.write_text(done.stdout)
    return done.returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, required=True, help="the snapshot mutmut ran in (holds mutants/)")
    parser.add_argument("--score", type=Path, required=True, help="score.py's JSON of that run (its survivors)")
    parser.add_argument("--tests", nargs="+", required=True, help="test files of the working tree to run")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="mutmut names or globs (default: every survivor)")
    args = parser.parse_args(argv)

    survivors = [s["name"] for s in json.loads(args.score.read_text())["survivors"] if s["status"] == "survived"
                 and s["verdict"] not in ("equivalent", "device-only")
                 and (args.only is None or any(fnmatch.fnmatch(s["name"], p) for p in args.only))]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "mutants"
        shutil.copytree(args.tree / "mutants", folder)
        for test in args.tests:
            shutil.copy(ROOT / test, folder / test)
        baseline = Path(tmp) / "baseline.txt"
        run(folder, args.tests, None, [], report=baseline)
        # "FAILED <node id> - <message>": node ids hold spaces ("[2, 64]"), the message follows " - "
        deselect = [line.removeprefix("FAILED ").split(" - ")[0] for line in baseline.read_text().splitlines()
                    if line.startswith("FAILED ")]
        if run(folder, args.tests, None, deselect) != 0:
            print("retest: the selection fails without a mutant even after deselecting its failures", file=sys.stderr)
            return 1
        def verdict(name: str) -> str:
            return "survived" if run(folder, args.tests, name, deselect) == 0 else "killed"

        verdicts = {}
        with ThreadPoolExecutor(args.jobs) as pool:
            for i, (name, v) in enumerate(zip(survivors, pool.map(verdict, survivors)), 1):
                verdicts[name] = v
                print(f"{i}/{len(survivors)} {name}: {v}", flush=True)
    args.out.write_text(json.dumps({"tests": args.tests, "deselected (fail without a mutant)": deselect,
                                    "verdicts": verdicts}, indent=1) + "\n")
    killed = sum(v == "killed" for v in verdicts.values())
    print(f"retest: {killed} of {len(survivors)} survivors killed by {' '.join(args.tests)}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
