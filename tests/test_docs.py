"""The repository documents itself: every "spec §x.y" citation resolves in docs/spec.md, and no file points
outside the checkout.

    citation   §N, §N.M, §N.M.K (also inside ranges such as §2.8-§2.10), optionally followed by
               "item(s) N[-M, ...]" or "step(s) N[-M, ...]"
    resolves   docs/spec.md has a heading numbered that way (`## 3.`, `### 3.6 ...`, `#### 2.3.1 ...`), and
               every item/step number is a numbered entry (`7. ...` at the start of a line) of that section

Scanned: the files `git ls-files` lists with a text extension (TEXT_SUFFIXES, plus .ci/run), except
committed results (bench/results/, a record of past runs) and docs/spec.md itself.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = Path("docs/spec.md")
TEXT_SUFFIXES = {".py", ".md", ".cu", ".cuh", ".cpp", ".h", ".toml", ".sh"}
TEXT_NAMES = {".ci/run"}
RESULTS = "bench/results/"
# Paths that lead out of the checkout (the spec's old home), spelt in two parts so this file does not match itself.
OUTSIDE_POINTERS = ("../" "shared", "shared/" "spec")
MIN_CITATIONS = 100        # the code cites the spec far more often; fewer means the scan went blind

HEADING = re.compile(r"^#{2,6} (\d+(?:\.\d+)*)\.?(?:\s|$)")
NUMBERED_ENTRY = re.compile(r"^(\d+)\. ")
CITATION = re.compile(r"§(\d+(?:\.\d+)*)(?:,?\s+(?:item|step)s?\s+(\d+(?:\s*(?:-|–|,|and)\s*\d+)*))?")


def tracked_files() -> list[str]:
    """Paths git tracks, relative to the root; skips the test outside a git checkout (an sdist)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout (git ls-files)")
    return [p for p in out.decode().split("\0") if p and (ROOT / p).is_file()]


def spec_sections(spec_text: str) -> dict[str, set[int]]:
    """Section number -> the numbers of its numbered entries (items, steps), read outside code fences."""
    sections: dict[str, set[int]] = {}
    current, fenced = None, False
    for line in spec_text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := HEADING.match(line)):
            current = heading.group(1)
            sections[current] = set()
        elif not fenced and current and (entry := NUMBERED_ENTRY.match(line)):
            sections[current].add(int(entry.group(1)))
    return sections


def citations(text: str):
    """(line number, section, [item or step numbers]) for every citation in text."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        for m in CITATION.finditer(line):
            yield lineno, m.group(1), [int(n) for n in re.findall(r"\d+", m.group(2) or "")]


def unresolved(files: dict[str, str], sections: dict[str, set[int]]) -> tuple[int, list[str]]:
    """(number of citations checked, "file:line: problem" for each one docs/spec.md cannot resolve)."""
    checked, problems = 0, []
    for name, text in files.items():
        for lineno, section, entries in citations(text):
            checked += 1
            if section not in sections:
                problems.append(f"{name}:{lineno}: §{section} has no heading in {SPEC}")
            elif missing := [n for n in entries if n not in sections[section]]:
                problems.append(f"{name}:{lineno}: §{section} has no numbered entry {missing} in {SPEC}")
    return checked, problems


def outside_pointers(files: dict[str, str]) -> list[str]:
    """"file:line: text" for every line that names a path outside the checkout."""
    return [f"{name}:{lineno}: {line.strip()}" for name, text in files.items()
            for lineno, line in enumerate(text.splitlines(), start=1)
            if any(p in line for p in OUTSIDE_POINTERS)]


def read_texts(paths) -> dict[str, str]:
    """Path -> content, for the files that read as UTF-8 text (binary files are left out)."""
    texts = {}
    for p in paths:
        try:
            texts[p] = (ROOT / p).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def citing_files() -> dict[str, str]:
    """The tracked text files whose citations must resolve (committed results and the spec itself left out)."""
    paths = [p for p in tracked_files() if not p.startswith(RESULTS) and p != SPEC.as_posix()
             and (Path(p).suffix in TEXT_SUFFIXES or p in TEXT_NAMES)]
    return read_texts(paths)


def test_every_spec_citation_resolves():
    # Every §x.y (and "item N" / "step N") cited in code, tests and docs names a heading (entry) of docs/spec.md.
    sections = spec_sections((ROOT / SPEC).read_text(encoding="utf-8"))
    checked, problems = unresolved(citing_files(), sections)
    assert not problems, f"{len(problems)} of {checked} spec citations do not resolve:\n" + "\n".join(problems)
    assert checked >= MIN_CITATIONS, f"only {checked} citations found; is the scan reading the repository?"


def test_no_file_points_outside_the_repository():
    # The repository is self-contained: no tracked file (committed results aside) names the spec's old home.
    found = outside_pointers(read_texts(p for p in tracked_files() if not p.startswith(RESULTS)))
    assert not found, "files pointing outside the repository (cite docs/spec.md instead):\n" + "\n".join(found)


# --- the scanners can fail: planted citations and pointers in a temporary file ---------------------

PLANTED_SPEC = """# Title
## 2. Transforms
### 2.3 Repack
#### 2.3.1 Closed form
### 2.8 Dense prep
1. first step
2. second step
```
## 9. a heading inside a code fence does not count
```
## 6. Bugs
### 6.1 Subtle spots
1. one
2. two
"""
BAD, ALSO_BAD = "99.1", "2.3.9"


@pytest.mark.parametrize("line, want", [
    ("see spec §2.3.1 and §2.8 step 2", []),
    ("ranges §2.3-§2.8, §6.1 items 1-2, §2 and §6.", []),
    (f"see spec §{BAD}", [f"§{BAD} has no heading"]),
    (f"§2.3-§{ALSO_BAD}", [f"§{ALSO_BAD} has no heading"]),
    ("§6.1 items 1, 2 and 3", ["§6.1 has no numbered entry [3]"]),
    (f"§2.8 step {9}", ["§2.8 has no numbered entry [9]"]),
    (f"§{9}", [f"§{9} has no heading"]),
], ids=["resolved", "resolved-ranges", "unknown-section", "unknown-range-end", "unknown-item", "unknown-step",
        "heading-in-fence"])
def test_citation_scanner_names_file_and_line(tmp_path, line, want):
    # A planted citation without a heading fails the scan, naming file:line; resolvable ones pass.
    planted = tmp_path / "planted.md"
    planted.write_text(f"intro\n{line}\n", encoding="utf-8")
    _, problems = unresolved({planted.name: planted.read_text(encoding="utf-8")}, spec_sections(PLANTED_SPEC))
    assert [p.split(" in ")[0] for p in problems] == [f"planted.md:2: {w}" for w in want]


def test_outside_pointer_scanner_names_file_and_line(tmp_path):
    # A planted pointer to the spec's old home fails the scan, naming file:line.
    planted = tmp_path / "planted.py"
    planted.write_text(f'"""Docstring."""\n# format: {OUTSIDE_POINTERS[0]}/{OUTSIDE_POINTERS[1]}/x.md\n')
    assert [p.split(": ")[0] for p in outside_pointers({planted.name: planted.read_text()})] == ["planted.py:2"]
