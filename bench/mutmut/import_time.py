"""Retest the mutants of functions that marlin_fast calls while it is imported, the way mutmut cannot.

mutmut 3 swaps mutants in at call time (a trampoline reads MUTANT_UNDER_TEST on every call), and it forks every
mutant's test run from a process that has already imported the project. A function that runs only while a
module is imported therefore always runs unmutated: every mutant of
`apply_fp8_marlin_linear.apply_with` (the factory behind `apply_fp8_marlin_linear = apply_with(marlin_gemm)`)
"survives" without ever having been active, and mutmut only credits the one test that calls the factory itself.

This script gives those mutants a fair trial: one fresh `python -m pytest` per mutant, in mutmut's mutants/ folder,
with MUTANT_UNDER_TEST set before anything is imported (so the module-level call builds the mutated layer), on the
tests that reach what the factory built (mutmut's stats for a function the built layer calls), fastest first,
with -x. The verdicts go to mutants/import_time.json and then overwrite mutmut's in the .meta files, so
`mutmut results`, `mutmut show` and score.py see them. bench/mutmut/run.sh runs it after `mutmut run`.

    python bench/mutmut/import_time.py --tree /tmp/marlin-mutmut-$USER/tree [--jobs 2] [--only GLOB ...] [--reuse]

--only: retest only the import-time mutants matching these mutmut names / globs; --reuse: keep verdicts already
in import_time.json (e.g. computed while `mutmut run` was still busy) and only merge them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# mangled factory (called at import time) -> a mangled function that what it built calls (whose tests reach it)
IMPORT_TIME = {
    "marlin_fast.apply_fp8_marlin_linear.x_apply_with": "marlin_fast.apply_fp8_marlin_linear.x__check",
}
PYTEST = ["--rootdir=.", "--tb=line", "-x", "-q", "-p", "no:randomly", "-p", "bench.mutmut.mutmut_plugin",
          "--marlin-backend=torch", "-p", "no:cacheprovider"]
TIMEOUT_S = 600


COLLECTION_ERROR = 2   # pytest.ExitCode.INTERRUPTED, which pytest also returns when collection fails


def run_one(mutants: Path, name: str, tests: list[str]) -> tuple[str, int, float]:
    env = dict(os.environ, MUTANT_UNDER_TEST=name, PY_IGNORE_IMPORTMISMATCH="1")
    start = time.time()
    try:
        rc = subprocess.run(["nice", "-n", "19", sys.executable, "-m", "pytest", *PYTEST, *tests], cwd=mutants,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT_S).returncode
    except subprocess.TimeoutExpired:
        rc = 36   # mutmut's "timeout"
    return name, rc, time.time() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, required=True, help="the snapshot mutmut ran in (holds mutants/)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="mutant names or globs (default: all)")
    parser.add_argument("--reuse", action="store_true", help="keep verdicts already in import_time.json")
    args = parser.parse_args(argv)
    mutants = args.tree / "mutants"
    stats = json.loads((mutants / "mutmut-stats.json").read_text())
    duration, tests_of = stats["duration_by_test"], stats["tests_by_mangled_function_name"]

    work = []   # (meta path, mutant name, tests)
    for factory, callee in IMPORT_TIME.items():
        module = factory.rpartition(".")[0]
        meta = mutants / (module.replace(".", "/") + ".py.meta")
        names = [n for n in json.loads(meta.read_text())["exit_code_by_key"] if n.startswith(factory + "__mutmut_")]
        tests = sorted(set(tests_of.get(callee, ())) | set(tests_of.get(factory, ())), key=lambda t: duration.get(t, 0))
        work += [(meta, name, tests) for name in names
                 if args.only is None or any(fnmatch.fnmatch(name, pattern) for pattern in args.only)]
    cache_path = mutants / "import_time.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    todo = [w for w in work if not (args.reuse and w[1] in cache)]
    if todo:
        print(f"import-time mutants: retesting {len(todo)} in fresh processes")
        with ThreadPoolExecutor(args.jobs) as pool:
            for name, rc, seconds in pool.map(lambda w: run_one(mutants, w[1], w[2]), todo):
                cache[name] = [rc, seconds]
                cache_path.write_text(json.dumps(cache, indent=1))
    # pytest's exit 2 here is a collection error: the mutated factory raises while marlin_fast is imported (e.g.
    # `apply.__name__ = None`), so every test errors: killed (mutmut would read 2 as "interrupted by user")
    results = [(meta, name, 1 if cache[name][0] == COLLECTION_ERROR else cache[name][0], cache[name][1])
               for meta, name, _ in work if name in cache]
    for meta in {m for m, *_ in results}:
        data = json.loads(meta.read_text())
        for m, name, rc, seconds in results:
            if m == meta:
                data["exit_code_by_key"][name] = rc
                data["durations_by_key"][name] = seconds
        meta.write_text(json.dumps(data, indent=4))
    killed = sum(rc in (1, 3) for *_, rc, _ in results)
    print(f"import-time mutants: {killed} of {len(results)} killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
