"""Time from `pytest` start to the first law failure over the mutant catalogue: the laws-first benchmark (issue 11).

For every mutant of properties.strength.mutants (but the GPU-only ones) it runs the README's test command plus -x,

    CI=true python -m pytest -n auto -x --marlin-backend mutant:<name>

in a subprocess, and reads two times: the first failure (a tiny plugin, loaded with -p, writes the wall-clock time
of the first failed test report, seen by the xdist controller) and the process's exit (after -x has stopped the
workers). Both are counted from just before the subprocess starts. Prints the distribution and writes JSON.

    python bench/first_failure.py --out bench/results/first_failure [--mutants a,b] [--bytecode]

--bytecode: let Python write and reuse bytecode caches (a developer's default; this workplace sets
PYTHONDONTWRITEBYTECODE=1, under which every run recompiles and re-rewrites every module).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = '''
import os, time
_done = []
def pytest_runtest_logreport(report):
    if report.failed and not _done and not os.environ.get("PYTEST_XDIST_WORKER"):
        _done.append(1)
        with open(os.environ["FIRST_FAILURE_FILE"], "w") as f:
            f.write(repr(time.time()))
'''


def run(mutant: str, bytecode: bool, folder: Path) -> dict:
    stamp = folder / f"{mutant}.t"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({"CI": "true", "FIRST_FAILURE_FILE": str(stamp),
                "PYTHONPATH": f"{folder}{os.pathsep}{env.get('PYTHONPATH', '')}"})
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "auto", "-x", "-q", "-p", "first_failure_stamp",
                           f"--marlin-backend=mutant:{mutant}"], cwd=ROOT, env=env, capture_output=True, text=True)
    exit_s = time.time() - start
    first = float(stamp.read_text()) - start if stamp.exists() else None
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return {"mutant": mutant, "first_failure_s": first, "exit_s": exit_s, "status": done.returncode, "summary": last}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/first_failure.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="write OUT.json (and print the table)")
    parser.add_argument("--mutants", default=None, help="comma-separated names (default: the whole catalogue)")
    parser.add_argument("--bytecode", action="store_true", help="let Python cache bytecode (warmed by one run)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from properties.strength.mutants import MUTANTS

    # the GPU-only mutants show only at model shapes, which the CPU tier does not draw: the GPU tier kills them
    names = args.mutants.split(",") if args.mutants else sorted(n for n in MUTANTS if not MUTANTS[n].gpu_only)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "first_failure_stamp.py").write_text(PLUGIN)
        if args.bytecode:                                   # warm the caches once
            run(names[0], True, folder)
        rows = [run(name, args.bytecode, folder) for name in names]
    for r in rows:
        first = "-" if r["first_failure_s"] is None else f"{r['first_failure_s']:.1f}"
        print(f"{r['mutant']:45s} first failure {first:>6s} s   exit {r['exit_s']:6.1f} s   {r['summary']}")
    firsts = sorted(r["first_failure_s"] for r in rows if r["first_failure_s"] is not None)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    summary = {"commit": commit.stdout.strip(), "cpus": os.cpu_count(), "load_average_after": os.getloadavg(),
               "python": sys.version.split()[0], "command": " ".join(["python bench/first_failure.py", *sys.argv[1:]]),
               "mutants": len(rows), "failed_runs": len(firsts), "bytecode": args.bytecode,
               "median_first_failure_s": statistics.median(firsts) if firsts else None,
               "quartiles_first_failure_s": statistics.quantiles(firsts, n=4) if len(firsts) > 1 else firsts,
               "max_first_failure_s": max(firsts) if firsts else None,
               "median_exit_s": statistics.median(r["exit_s"] for r in rows)}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out + ".json").parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
