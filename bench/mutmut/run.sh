#!/usr/bin/env bash
# The unbiased mutation score of marlin_fast: mutmut over the fast path's transform modules, the CPU suite's
# marlin_fast tests as the oracle. A benchmark job, not CI (about 1-2 h on 2 cores). See bench/mutmut/README.md.
#
#   bash bench/mutmut/run.sh [--worktree] [--examples N] [--jobs N] [--label NAME] [--keep] [MUTANT_GLOB...]
#
#   --worktree      snapshot the working tree (tracked + untracked, not ignored) instead of HEAD
#   --examples N    Hypothesis max_examples per test (derandomized profile `mutmut`; default 10)
#   --jobs N        mutants tested at once (default 2)
#   --label NAME    results go to bench/results/mutmut-NAME.json (default: run)
#   --keep          reuse the previous snapshot's mutants/ (mutmut's cache) instead of starting afresh
#   MUTANT_GLOB     only these mutants (mutmut names, e.g. 'marlin_fast.padding.*')
#
# mutmut runs in a snapshot ($MUTMUT_WORKDIR, default /tmp/marlin-mutmut-$USER), never in this checkout: mutmut
# copies the project into mutants/ and rewrites it, and other people edit this working tree while it runs.
# Everything runs under `nice -n 19`. Needs mutmut (pip install mutmut==3.8.1) in the active Python environment.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${MUTMUT_WORKDIR:-/tmp/marlin-mutmut-${USER:-$(id -u)}}
SOURCE=HEAD EXAMPLES=10 JOBS=2 LABEL=run KEEP=0 GLOBS=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --worktree) SOURCE=worktree; shift ;;
        --examples) EXAMPLES=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        --label) LABEL=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) GLOBS+=("$1"); shift ;;
    esac
done
command -v mutmut >/dev/null || { echo "mutmut is not installed: pip install mutmut==3.8.1" >&2; exit 2; }

TREE=$WORK/tree
if [[ $KEEP == 1 && -d $TREE/mutants ]]; then
    mv "$TREE/mutants" "$WORK/mutants.keep"
fi
rm -rf "$TREE" && mkdir -p "$TREE"
if [[ $SOURCE == HEAD ]]; then
    git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$TREE"
    REV=$(git -C "$ROOT" rev-parse HEAD)
else
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | python -c 'import os, sys; sys.stdout.write("".join(p + "\0" for p in sys.stdin.read().split("\0") if p and os.path.isfile(p)))' \
        | tar --null -T - -cf -) | tar -x -C "$TREE"
    REV="$(git -C "$ROOT" rev-parse HEAD) + working tree"
fi
[[ -d $WORK/mutants.keep ]] && mv "$WORK/mutants.keep" "$TREE/mutants"
echo "mutmut snapshot: $TREE ($REV)"

cd "$TREE"
export MARLIN_MUTMUT_EXAMPLES=$EXAMPLES PYTHONHASHSEED=0 OMP_NUM_THREADS=1   # one torch thread per mutant worker
unset MARLIN_BACKEND MARLIN_LOAD CI PYTHONDONTWRITEBYTECODE   # bytecode of the (large) mutated modules: compile once
START=$(date +%s)
# mutmut redraws a progress line with \r: the log keeps every line, the terminal gets the last ones
nice -n 19 mutmut run --max-children "$JOBS" "${GLOBS[@]}" >"$WORK/mutmut.log" 2>&1 || echo "mutmut run exited $?"
tr '\r' '\n' <"$WORK/mutmut.log" | grep -v '^[[:space:]]*$' | grep -v -E '^[^a-zA-Z]*[0-9]+/[0-9]+ ' | tail -n 25 || true
# mutants of functions that run while marlin_fast is imported never run under mutmut: retest them (import_time.py)
nice -n 19 python "$ROOT/bench/mutmut/import_time.py" --tree "$TREE" --jobs "$JOBS"
END=$(date +%s)
nice -n 19 python "$ROOT/bench/mutmut/score.py" --tree "$TREE" --out "$ROOT/bench/results/mutmut-$LABEL.json" \
    --examples "$EXAMPLES" --seconds $((END - START)) --revision "$REV"
