"""The compliance report (properties.reporting.compliance, properties.reporting.cells): cells, verdicts, JSON, Markdown,
and tiny pytest sessions in subprocesses against ref (under pytest-xdist), torch, a backend that
provides two operations only, and a mutant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from properties.reporting import compliance
from properties.seam.backends import OPERATIONS
from properties.reporting.cells import Tally, cell_of, note_cell, recording
from properties.cases.strategies import ACTIVATION_DTYPES, FP8_SCHEMES, SCALE_DTYPES
from properties.cases.transforms import by_name

ROOT = Path(__file__).resolve().parent.parent
SCALES = "tests/test_laws_scales.py"
BIAS_AND_CONVERT = "permute_bias or convert_fp8_scales"


def run_pytest(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """A pytest session of this checkout in a subprocess, with no environment leaking into it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "MARLIN_BACKEND", "PYTEST_ADDOPTS") and not k.startswith("PYTEST_XDIST")}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-o", "addopts=",
           "--no-header", *args]
    return subprocess.run(cmd, cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=timeout)


# --- cells, by hand ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("op", "case", "transform", "want"), [
    ("prepare_fp8_layer_for_marlin", {"scheme": "block", "orig_dtype": "float16", "scale_dtype": "float32"},
     None, ("block", "float16", "-")),
    ("prepare_fp8_layer_for_marlin", {"scheme": "tensor", "orig_dtype": "float16", "bias": True},
     None, ("tensor", "float16", "bias")),
    ("prepare_fp8_moe_layer_for_marlin", {"scheme": "block", "w2_scheme": "block", "orig_dtype": "bfloat16"},
     None, ("block", "bfloat16", "-")),
    ("convert_fp8_moe_scales", {"scheme": "shard_equal", "w2_scheme": "channel", "orig_dtype": "float16",
                                "bias": True}, "convert_fp8_moe_scales[w13]", ("shard_equal", "float16", "-")),
    ("prepare_mxfp8_layer_for_marlin", {"intermediate_dtype": "float32", "size_k": 128}, None,
     ("mx", "float32", "-")),
    ("mxfp8_scales_to_float", {"dtype": "float16", "codes": "uint8"}, None, ("mx", "float16", "-")),
    ("marlin_permute_scales", {"group_size": -1, "dtype": "bfloat16"}, None, ("channel", "bfloat16", "-")),
    ("marlin_permute_scales", {"group_size": 48, "groups": 1, "size_k": 48, "dtype": "float16"}, None,
     ("group=K", "float16", "-")),
    ("marlin_padded_nk", {"size_n": 3, "size_k": 5, "group_size": 128}, None, ("group=128", "-", "-")),
    ("pack_fp8_to_int32", {"codes": "fp8", "size_k": 4}, None, ("-", "float8_e4m3fn", "-")),
    ("unpack_fp8_from_int32", {"size_k": 4, "seed": 0}, None, ("-", "int32", "-")),
    ("gptq_marlin_repack", {"num_bits": 8, "perm": "empty"}, None, ("-", "8-bit", "-")),
    ("gptq_marlin_repack", {"num_bits": 8, "perm": "random"}, None, ("-", "8-bit", "perm")),
    ("gptq_marlin_unrepack", {"num_bits": 8}, None, ("-", "8-bit", "-")),
    ("marlin_permute_bias", {"shape": [32], "dtype": "float32"}, None, ("-", "float32", "-")),
    ("marlin_gemm", {"scheme": "mx", "dtype": "bfloat16", "bias": True}, None, ("mx", "bfloat16", "bias")),
])
def test_cell_of_reads_the_case_fields(op, case, transform, want):
    # Each axis is a case field named in properties.cases.strategies, read as the module docstring says.
    assert cell_of(op, case, transform=transform) == (op, *want)


def test_note_cell_counts_only_the_backend_under_test():
    # Checks on another backend (a meta test's planted mutant) and checks outside a recording are ignored.
    row, case = by_name("marlin_permute_bias"), {"shape": [32], "dtype": "float16", "seed": 0}
    tally = Tally("torch", hypothesis=True)
    with recording(None):
        note_cell("torch", row, case, "passed")      # no recording: nothing to count into
    with recording(tally):                           # (this test's own recording is restored after)
        note_cell("torch", row, case, "passed")
        note_cell("torch", row, case, "failed")
        note_cell("mutant:x", row, case, "failed")
        with pytest.raises(ValueError, match="outcome='skipped' must be one of"):
            note_cell("torch", row, case, "skipped")
    assert {k: dict(v) for k, v in tally.cells.items()} == {
        ("marlin_permute_bias", "-", "float16", "-"): {"passed": 1, "failed": 1}}


def _node(nodeid, outcome, *cells, hypothesis=True):
    return {"nodeid": nodeid, "outcome": outcome, "hypothesis": hypothesis, "cells": [list(c) for c in cells]}


NODES = [
    _node("a", "passed", ("convert_fp8_scales", "block", "float16", "-", {"passed": 3}),
          ("convert_fp8_scales", "tensor", "float16", "-", {"passed": 2})),
    # failed in (block, float16) after passing examples there and elsewhere
    _node("b", "failed", ("convert_fp8_scales", "block", "float16", "-", {"passed": 1, "failed": 4}),
          ("convert_fp8_scales", "tensor", "float16", "-", {"passed": 5})),
    # failed outside its checks (e.g. a health check): all of its cells fail
    _node("c", "failed", ("marlin_permute_bias", "-", "float32", "-", {"passed": 7})),
    # not provided at all: two tests of different cells, reported as one row
    _node("d", "not provided", ("marlin_permute_scales", "channel", "float16", "-", {"not provided": 1})),
    _node("e", "not provided", ("marlin_permute_scales", "group=64", "float32", "-", {"not provided": 1})),
    # the forward op passes, its roundtrip lacks the inverse: the cells stay apart
    _node("f", "passed", ("pack_fp8_to_int32", "-", "uint8", "-", {"passed": 4})),
    _node("g", "not provided", ("pack_fp8_to_int32", "-", "float8_e4m3fn", "-", {"not provided": 1})),
    # a replayed regression file: a verdict without Hypothesis examples
    _node("h", "passed", ("marlin_permute_bias", "-", "float32", "-", {"passed": 1}), hypothesis=False),
    # a cell not provided after 2 examples passed (the backend said so mid-run): passed on 2 examples, thin
    _node("i", "not provided", ("marlin_gemm", "channel", "float16", "bias", {"passed": 2, "not provided": 1})),
    # skipped for another reason (no CUDA device): no verdict on its cell
    _node("j", "skipped", ("marlin_gemm", "mx", "bfloat16", "-", {})),
]


def test_build_cells_verdicts_counts_and_order():
    rows = compliance.build_cells(NODES, "torch", min_examples=3)
    got = [(r["operation"], r["scheme"], r["dtype"], r["feature"], r["result"],
            tuple(r["tests"][k] for k in compliance.RESULTS), r["examples"]) for r in rows]
    assert got == [   # contract order of OPERATIONS, then scheme, dtype and feature
        ("pack_fp8_to_int32", "-", "float8_e4m3fn", "-", "not provided", (0, 0, 1), 0),
        ("pack_fp8_to_int32", "-", "uint8", "-", "passed", (1, 0, 0), 4),
        ("marlin_permute_scales", "*", "*", "*", "not provided", (0, 0, 2), 0),
        ("marlin_permute_bias", "-", "float32", "-", "failed", (1, 1, 0), 7),
        ("convert_fp8_scales", "block", "float16", "-", "failed", (1, 1, 0), 4),
        ("convert_fp8_scales", "tensor", "float16", "-", "passed", (2, 0, 0), 7),
        ("marlin_gemm", "channel", "float16", "bias", "thin", (1, 0, 0), 2),
    ]
    assert rows[4]["checks"] == {"passed": 4, "failed": 4, "not provided": 0}
    assert {r["backend"] for r in rows} == {"torch"}
    assert compliance.build_cells(NODES, "torch", min_examples=2)[-1]["result"] == "passed"


def _header(**extra):
    return {"backend": "torch", "backend_name": "torch", "backend_version": "v", "provides": 22, "python": "3",
            "torch": "t", "cuda": "none", "gpu": "none", "hypothesis": "h", "profile": "dev", "max_examples": 10,
            "floor": 3, "seed": "random", "xdist_workers": 0, "platform": "p", "finished": "now", **extra}


def _table_lines(md: str, backend: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith(f"| {backend} | ") and line.count("|") == 10]


def test_report_json_and_markdown():
    report = compliance.build_report(NODES, _header(), {"a": 5, "b": 10})
    assert report["format"] == "marlin-compliance/2"
    assert report["summary"] == {"cells": 7, "passed": 2, "failed": 2, "not provided": 2, "thin": 1,
                                 "tests": {"passed": 3, "failed": 2, "not provided": 4, "skipped": 1},
                                 "examples": 24}
    assert [t["examples"] for t in report["tests"]][:3] == [5, 10, 0]
    json.dumps(report)                                  # JSON through and through
    md = compliance.to_markdown(report)
    assert md.startswith("# Marlin compliance: backend `torch`\n")
    assert "| Hypothesis | h, profile dev (max_examples 10, thin below 3 examples a cell), seed random |" in md
    assert "| torch | convert_fp8_scales | block | float16 | - | **failed** | 1/1/0 | 4 |" in md
    assert "| torch | marlin_permute_scales | * | * | * | not provided | 0/0/2 | 0 |" in md
    assert "| torch | marlin_gemm | channel | float16 | bias | **thin** | 1/0/0 | 2 |" in md
    assert len(_table_lines(md, "torch")) == 7
    assert [r["operation"] for r in compliance.thin_cells(report)] == ["marlin_gemm"]


@pytest.mark.parametrize(("given", "want"), [
    ("out/run1", ("out/run1.json", "out/run1.md")),
    ("out/run1.json", ("out/run1.json", "out/run1.md")),
    ("out/run1.md", ("out/run1.json", "out/run1.md")),
    ("out/", ("out/compliance.json", "out/compliance.md")),
])
def test_report_paths(given, want):
    assert tuple(str(p) for p in compliance.report_paths(given)) == want


def test_report_paths_of_an_existing_directory(tmp_path):
    assert compliance.report_paths(tmp_path) == (tmp_path / "compliance.json", tmp_path / "compliance.md")


# --- tiny sessions ----------------------------------------------------------------------------------

def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_ref_under_xdist(tmp_path):
    # Two workers send their records to the controller; every cell passes, and the examples behind the
    # cells are exactly the examples example_counter counted, test by test.
    proc = run_pytest(SCALES, "-k", BIAS_AND_CONVERT, "-n", "2", "--marlin-backend", "ref",
                      "--hypothesis-profile=dev", f"--marlin-report={tmp_path / 'ref'}",
                      f"--marlin-count-examples={tmp_path / 'count.txt'}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = _load(tmp_path / "ref.json")
    head = report["header"]
    assert (head["backend"], head["profile"], head["max_examples"], head["seed"]) == ("ref", "dev", 10, "random")
    assert head["backend_version"].startswith("marlin_ref ") and head["xdist_workers"] == 2
    rows = report["cells"]
    assert {r["operation"] for r in rows} == {"marlin_permute_bias", "marlin_unpermute_bias", "convert_fp8_scales"}
    assert {r["result"] for r in rows} == {"passed"} and {r["backend"] for r in rows} == {"ref"}
    convert = [r for r in rows if r["operation"] == "convert_fp8_scales"]
    assert {r["scheme"] for r in convert} <= set(FP8_SCHEMES) and {r["dtype"] for r in convert} <= set(ACTIVATION_DTYPES)
    bias = [r for r in rows if "bias" in r["operation"]]
    assert {r["scheme"] for r in bias} == {"-"} and {r["dtype"] for r in bias} <= set(SCALE_DTYPES)
    # one law test per cell: matches_oracle on 3 + 3 bias cells and 10 conversion cells, roundtrip on 3 + 3;
    # up to 10 examples each in the dev profile
    counted = int((tmp_path / "count.txt").read_text())
    assert report["summary"]["tests"] == {"passed": 22, "failed": 0, "not provided": 0, "skipped": 0}
    assert report["summary"]["examples"] == counted
    for test in report["tests"]:
        assert 3 <= test["examples"] == sum(sum(c[4].values()) for c in test["cells"]) <= 10, test
        assert len(test["cells"]) == 1
    md = (tmp_path / "ref.md").read_text()
    assert len(_table_lines(md, "ref")) == len(rows)
    assert "marlin: compliance (backend x operation x scale scheme x dtype x feature)" in proc.stdout


def test_torch_names_torch_cuda_and_the_seed(tmp_path):
    proc = run_pytest(SCALES, "-k", "permute_scales", "--marlin-backend", "torch", "--hypothesis-profile=dev",
                      "--hypothesis-seed=7", f"--marlin-report={tmp_path}/")
    assert proc.returncode == 0, proc.stdout[-3000:]
    report = _load(tmp_path / "compliance.json")
    import torch

    head = report["header"]
    assert (head["seed"], head["torch"], head["xdist_workers"]) == ("7", torch.__version__, 0)
    assert head["cuda"] == (torch.version.cuda or "none") and head["backend_version"].startswith("marlin_fast ")
    assert head["gpu"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
    rows = report["cells"]
    assert {r["operation"] for r in rows} == {"marlin_permute_scales", "marlin_unpermute_scales"}
    assert {r["scheme"] for r in rows} <= {"channel", "group=32", "group=64", "group=128", "group=K"}
    # the table in the terminal has one line per cell
    lines = [line for line in proc.stdout.splitlines() if line.startswith("torch ")]
    assert len(lines) == len(rows) and all(" passed " in line for line in lines)
    assert f"| CUDA | {head['cuda']} |" in (tmp_path / "compliance.md").read_text()


def test_not_provided_column(tmp_path):
    # A backend made of one module provides the bias permutation only: the rest is not provided.
    backend = "marlin_ref.marlin_permute_bias:"
    proc = run_pytest(SCALES, "-q", "--marlin-backend", backend, "--hypothesis-profile=dev",
                      f"--marlin-report={tmp_path / 'partial.json'}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    rows = _load(tmp_path / "partial.json")["cells"]
    provided = {r["operation"] for r in rows if r["result"] == "passed"}
    assert provided == {"marlin_permute_bias", "marlin_unpermute_bias"}
    lacking = [r for r in rows if r["result"] == "not provided"]
    assert {r["operation"] for r in lacking} == {
        "marlin_permute_scales", "marlin_unpermute_scales", "uses_grouped_scale_permutation",
        "fp8_fused_exponent_bias_into_scales", "fp8_unfuse_exponent_bias_from_scales",
        "mxfp8_marlin_process_scales", "mxfp8_marlin_unprocess_scales", "mxfp8_scales_to_float",
        "convert_fp8_scales", "convert_fp8_moe_scales", "marlin_padded_nk", "marlin_moe_padded_intermediate"}
    for r in lacking:   # one row per lacking operation, no test passed or failed on it
        assert (r["scheme"], r["dtype"], r["feature"], r["tests"]["passed"], r["tests"]["failed"]) == \
            ("*", "*", "*", 0, 0), r
        assert r["tests"]["not provided"] >= 1
    assert set(OPERATIONS) >= {r["operation"] for r in rows}
    assert "not provided" in proc.stdout and "marlin compliance:" in proc.stdout   # -q: the one-line summary


def test_mutant_fails_the_cell_of_its_bug(tmp_path):
    # bias_not_permuted breaks marlin_permute_bias for every dtype; the shrunk case is a float16 [32] bias.
    proc = run_pytest(SCALES, "-k", "test_matches_oracle and permute_bias", "--marlin-backend",
                      "mutant:bias_not_permuted@ref", "--hypothesis-profile=ci", f"--marlin-report={tmp_path / 'm'}")
    assert proc.returncode == 1, proc.stdout[-3000:]
    report = _load(tmp_path / "m.json")
    rows = {(r["operation"], r["dtype"]): r for r in report["cells"]}
    assert rows[("marlin_permute_bias", "float16")]["result"] == "failed"
    assert {r["operation"] for r in report["cells"]} == {"marlin_permute_bias", "marlin_unpermute_bias"}
    assert report["header"]["backend"] == "mutant:bias_not_permuted@ref"
    assert report["header"]["profile"] == "ci" and report["header"]["seed"] == "derandomized"
    assert report["summary"]["failed"] >= 1
    assert "| mutant:bias_not_permuted@ref | marlin_permute_bias | - | float16 | - | **failed** |" in \
        (tmp_path / "m.md").read_text()
