"""A library someone else wrote, as a kernel engineer meets the suite: loaded from the command line, tested only where
it provides, each provided cell on its full budget, and a table that says what pytest says.

`snapshot_ops.py` (written to a temporary folder) is a stand-in for a build of vLLM's 2025 kernels: it registers
`gptq_marlin_repack` and `gptq_marlin_gemm` in a torch.library namespace with the snapshot's own schemas (spec §4.3),
computes with marlin_fast on the CPU, and rejects e8m0 scales and a bias as the real library does. It is loaded
with `--marlin-load`, in the controller and in every worker, and tested as `marlin-ops:<namespace>`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "marlin_snapshot_stand_in"

SNAPSHOT_OPS = f'''
"""A stand-in for a 2025-snapshot build of vLLM's Marlin kernels (CPU, computed with marlin_fast)."""
import torch
import marlin_fast

LIB = torch.library.Library("{NAMESPACE}", "DEF")
LIB.define("gptq_marlin_repack(Tensor b_q_weight, Tensor perm, SymInt size_k, SymInt size_n, int num_bits) -> Tensor")
LIB.define("gptq_marlin_gemm(Tensor a, Tensor? c_or_none, Tensor b_q_weight, Tensor b_scales, "
           "Tensor? global_scale, Tensor? b_zeros_or_none, Tensor? g_idx_or_none, Tensor? perm_or_none, "
           "Tensor workspace, int b_q_type, SymInt size_m, SymInt size_n, SymInt size_k, bool is_k_full, "
           "bool use_atomic_add, bool use_fp32_reduce, bool is_zp_float) -> Tensor")


def repack(b_q_weight, perm, size_k, size_n, num_bits):
    return marlin_fast.gptq_marlin_repack(b_q_weight, perm if perm.numel() else None, size_k, size_n, num_bits)


def gemm(a, c, b_q_weight, b_scales, global_scale, zeros, g_idx, perm, workspace, b_q_type, size_m, size_n,
         size_k, is_k_full, use_atomic_add, use_fp32_reduce, is_zp_float):
    if b_scales.dtype != a.dtype:       # the snapshot has no e8m0 scale type (spec §7)
        raise RuntimeError(f"expected scalar type {{a.dtype}} but found {{b_scales.dtype}}")
    return marlin_fast.marlin_gemm(a, b_q_weight, b_scales, None, size_n=size_n, size_k=size_k)


LIB.impl("gptq_marlin_repack", repack, "CPU")
LIB.impl("gptq_marlin_gemm", gemm, "CPU")
'''


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "MARLIN_BACKEND", "MARLIN_LOAD", "PYTEST_ADDOPTS") and not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def junit_totals(path: Path) -> dict:
    suites = ET.parse(path).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return {"passed": total - failed - skipped, "failed": failed, "skipped": skipped}


def table_totals(report: dict) -> dict:
    tests = report["summary"]["tests"]
    return {"passed": tests["passed"], "failed": tests["failed"], "skipped": tests["not provided"] + tests["skipped"]}


def test_a_snapshot_library_loaded_from_the_command_line(tmp_path):
    (tmp_path / "snapshot_ops.py").write_text(SNAPSHOT_OPS)
    proc = run_pytest(tmp_path, "tests/test_laws_gemm.py", "tests/test_laws_layout.py", "tests/test_laws_linear.py",
                      "-m", "marlin_backend", "-k", "gemm or (repack and 8bit) or (linear and (channel or mx))",
                      "-n", "2", "--marlin-load", "snapshot_ops", f"--marlin-backend=marlin-ops:{NAMESPACE}",
                      "--hypothesis-profile=ci", f"--marlin-report={tmp_path / 'report'}",
                      f"--junitxml={tmp_path / 'junit.xml'}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["header"]["loaded"] == ["snapshot_ops"]
    cells = {(c["operation"], c["scheme"], c["dtype"], c["feature"]): c for c in report["cells"]}
    gemm = {key: c["result"] for key, c in cells.items() if key[0] == "marlin_gemm"}
    # MXFP8 and the in-kernel bias are not in the snapshot: "not provided", never sent (it would reject them)
    assert {key for key, result in gemm.items() if result == "not provided"} == {
        ("marlin_gemm", "mx", "bfloat16", "-"), ("marlin_gemm", "mx", "bfloat16", "bias"),
        *(("marlin_gemm", s, d, "bias") for s in ("channel", "group128") for d in ("float16", "bfloat16"))}
    provided = {key for key, result in gemm.items() if result != "not provided"}
    assert provided == {("marlin_gemm", s, d, "-") for s in ("channel", "group128") for d in ("float16", "bfloat16")}
    # every provided cell passed on at least the profile's full budget (60 under ci), none is thin
    floor = report["header"]["max_examples"]
    assert all(cells[key]["result"] == "passed" and cells[key]["examples"] >= floor for key in provided), \
        {key: (cells[key]["result"], cells[key]["examples"]) for key in provided}
    assert report["summary"]["thin"] == 0 and report["summary"]["failed"] == 0
    # the repack of the snapshot takes a perm: every layout cell of it is provided and passed
    repack = [c for key, c in cells.items() if key[0] == "gptq_marlin_repack"]
    assert repack and {c["result"] for c in repack} == {"passed"}
    # the linear layer composed on the snapshot's GEMM adds the bias after it, in logical order (as the 2025 Python
    # layer did): every FP8 linear cell passes, bias included; the MXFP8 one is not provided
    linear = {key: c["result"] for key, c in cells.items() if key[0].startswith("apply_")}
    assert {r for key, r in linear.items() if key[0] == "apply_fp8_marlin_linear"} == {"passed"}
    assert ("apply_fp8_marlin_linear", "channel", "float16", "bias") in linear
    assert {r for key, r in linear.items() if key[0] == "apply_mxfp8_marlin_linear"} == {"not provided"}
    # the table's totals are pytest's
    assert table_totals(report) == junit_totals(tmp_path / "junit.xml")


THIN_BACKEND = '''
"""A backend that says "not provided" for every GEMM but the smallest: its channel-wise cells pass on a handful of
examples, which is a thin pass, not a pass."""
from properties.seam.backends import NotProvided, get_backend

def thin():
    torch = get_backend("torch")
    full = torch.op("marlin_gemm")

    def marlin_gemm(a, b_q_weight, b_scales, b_bias=None, *, size_n, size_k):
        if size_k > 128 or size_n > 64:
            raise NotProvided("thin", "marlin_gemm", "this build stops at one tile")
        return full(a, b_q_weight, b_scales, b_bias, size_n=size_n, size_k=size_k)

    return torch.replaced("thin", marlin_gemm=marlin_gemm)
'''


@pytest.mark.parametrize("profile, status", [("ci", 1), ("dev", 0)])
def test_a_thin_cell_fails_the_run_under_ci_and_warns_under_dev(tmp_path, profile, status):
    (tmp_path / "thin_backend.py").write_text(THIN_BACKEND)
    proc = run_pytest(tmp_path, "tests/test_laws_gemm.py", "-k", "one_hot_is_exact and channel-float16",
                      "--marlin-backend=thin_backend:thin", f"--hypothesis-profile={profile}",
                      f"--marlin-report={tmp_path / 'report'}")
    assert proc.returncode == status, proc.stdout[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    thin = [(c["operation"], c["scheme"], c["dtype"], c["feature"]) for c in report["cells"] if c["result"] == "thin"]
    assert ("marlin_gemm", "channel", "float16", "-") in thin
    assert "marlin: thin cells" in proc.stdout
    assert ("the run fails" if status else "a warning under this profile") in proc.stdout


def test_the_table_equals_pytests_verdict_on_a_mutant_run(tmp_path):
    # a GEMM mutant (the bias added in logical order) fails the bias cells; worked examples count with the laws
    proc = run_pytest(tmp_path, "tests/test_laws_gemm.py", "-m", "marlin_backend", "-n", "2",
                      "--marlin-backend=mutant:gemm_bias_logical_order", "--hypothesis-profile=dev",
                      f"--marlin-report={tmp_path / 'report'}", f"--junitxml={tmp_path / 'junit.xml'}")
    assert proc.returncode == 1, proc.stdout[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    pytest_says = junit_totals(tmp_path / "junit.xml")
    assert pytest_says["failed"] >= 1 and table_totals(report) == pytest_says
    failed = {(c["scheme"], c["feature"]) for c in report["cells"] if c["result"] == "failed"}
    assert failed and {feature for _, feature in failed} == {"bias"}
    assert not any(c["operation"] == "(no cell)" for c in report["cells"])
