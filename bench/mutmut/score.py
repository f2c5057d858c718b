"""The mutation score of a finished `mutmut run` (bench/mutmut/run.sh calls this; it can be rerun by hand).

    python bench/mutmut/score.py --tree /tmp/marlin-mutmut-$USER/tree --out bench/results/mutmut-run.json

Reads mutmut's verdicts (mutants/**/*.py.meta in the snapshot), the diff of every mutant that was not killed, and
the triage of bench/mutmut/triage.json ({mutant name: {"verdict": "equivalent", "reason": ...}}), and writes

* OUT (JSON): the counts, the score, every mutant's status, and every survivor with its diff and triage;
* OUT with .txt: the survivors' diffs, one after another, for reading.

The score: killed / (total - equivalent - device-only), where killed counts mutmut's "killed", "timeout" and
"segfault" (the mutant made the suite fail, hang or crash), equivalent counts survivors triaged as equivalent, and
device-only those triaged "device-only": a change that only CUDA tensors can show (a perm built on the CPU for a
CUDA input), which the CPU suite this benchmark runs cannot see; the score that counts them as survivors is
reported beside it. A survivor
whose triage is stale (its diff is not the one triaged) counts as not triaged. "no tests" mutants (no selected
test reaches the function) are survivors like any other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRIAGE = ROOT / "bench" / "mutmut" / "triage.json"
KILLED = {"killed", "timeout", "segfault"}


def status_of(exit_code) -> str:
    from mutmut.stats import status_by_exit_code
    return status_by_exit_code[exit_code]


def load_verdicts(tree: Path) -> dict[str, tuple[str, int | None, str]]:
    """{mutant name: (source path, exit code, status)} from the .meta files."""
    verdicts = {}
    for meta in sorted((tree / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        source = str(meta.relative_to(tree / "mutants"))[: -len(".meta")]
        for name, code in data["exit_code_by_key"].items():
            verdicts[name] = (source, code, status_of(code))
    return verdicts


def diffs_of(tree: Path, names: list[tuple[str, str]]) -> dict[str, str]:
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    here = os.getcwd()
    os.chdir(tree)
    try:
        return {name: get_diff_for_mutant(name, path=path) for name, path in names}
    finally:
        os.chdir(here)


def changed_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, required=True, help="the snapshot mutmut ran in (holds mutants/)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write (and OUT.txt: survivor diffs)")
    parser.add_argument("--triage", type=Path, default=TRIAGE)
    parser.add_argument("--examples", type=int, default=None, help="recorded: Hypothesis max_examples of the run")
    parser.add_argument("--seconds", type=int, default=None, help="recorded: wall time of `mutmut run`")
    parser.add_argument("--revision", default=None, help="recorded: what was snapshotted")
    args = parser.parse_args(argv)

    verdicts = load_verdicts(args.tree)
    if not verdicts:
        print(f"no mutmut results under {args.tree}/mutants", file=sys.stderr)
        return 1
    triage = json.loads(args.triage.read_text()) if args.triage.exists() else {}
    statuses = Counter(status for _, _, status in verdicts.values())
    alive = sorted(name for name, (_, _, status) in verdicts.items() if status not in KILLED)
    diffs = diffs_of(args.tree, [(name, verdicts[name][0]) for name in alive])

    survivors, equivalent, device_only, untriaged, stale = [], 0, 0, 0, 0
    for name in alive:
        entry = dict(triage.get(name) or {})
        if entry and entry.get("change") and entry["change"] != changed_lines(diffs[name]):
            entry = {"verdict": "stale", "reason": "triaged for another diff: " + " | ".join(entry["change"])}
            stale += 1
        verdict = entry.get("verdict", "untriaged")
        equivalent += verdict == "equivalent"
        device_only += verdict == "device-only"
        untriaged += verdict in ("untriaged", "stale")
        survivors.append({"name": name, "file": verdicts[name][0], "status": verdicts[name][2],
                          "verdict": verdict, "reason": entry.get("reason", ""), "diff": diffs[name]})

    total = len(verdicts)
    killed = sum(statuses[s] for s in KILLED)
    non_equivalent = total - equivalent
    observable = non_equivalent - device_only           # what the CPU suite can tell apart
    score = killed / observable if observable else 1.0
    with_device = killed / non_equivalent if non_equivalent else 1.0
    per_file = {}
    for name, (path, _, status) in verdicts.items():
        row = per_file.setdefault(path, Counter())
        row[status] += 1
        row["total"] += 1
    summary = {"total": total, "killed": killed, "statuses": dict(statuses), "survived_or_untested": len(alive),
               "equivalent": equivalent, "device_only": device_only, "untriaged": untriaged,
               "stale_triage": stale, "non_equivalent": non_equivalent, "score": round(score, 4),
               "score_device_only_as_survivors": round(with_device, 4),
               "raw_score": round(killed / total, 4)}
    record = {"revision": args.revision, "hypothesis_max_examples": args.examples, "seconds": args.seconds,
              "mutmut": _mutmut_version(), "summary": summary,
              "per_file": {path: dict(row) for path, row in sorted(per_file.items())},
              "survivors": survivors,
              "mutants": {name: status for name, (_, _, status) in sorted(verdicts.items())}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    text = [f"# {s['name']}: {s['status']}, {s['verdict']}" + (f" ({s['reason']})" if s["reason"] else "")
            + "\n" + s["diff"] + "\n" for s in survivors]
    args.out.with_suffix(".txt").write_text("\n".join(text))

    print(f"mutmut: {total} mutants, {killed} killed ({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))})")
    print(f"raw score {killed}/{total} = {killed / total:.1%}; equivalent {equivalent}; device-only {device_only}; "
          f"score {killed}/{observable} = {score:.1%} of the mutants the CPU suite can observe "
          f"({killed}/{non_equivalent} = {with_device:.1%} counting device-only as survivors); "
          f"{untriaged} survivors untriaged ({stale} stale)")
    print(f"wrote {args.out} and {args.out.with_suffix('.txt')}")
    return 0


def _mutmut_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("mutmut")
    except Exception:  # noqa: BLE001 - only recorded
        return None


if __name__ == "__main__":
    sys.exit(main())
