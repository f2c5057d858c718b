"""Registers and spills of our CUDA kernels per thread-block configuration, from ptxas (no GPU needed).

    python bench/ptxas_report.py [--arch sm_90] [--out DIR] [--jobs 2]

Compiles every kernel file of marlin_fast/csrc that holds no torch code (the five GEMM instantiations and the
repack) with nvcc -Xptxas -v for one architecture, and tabulates, per kernel: registers per thread, spill stores
and loads (bytes), stack frame. The GEMM kernels are named by (activation dtype, scale scheme, configuration of
csrc/launch.h). A spill in the main loop costs local-memory traffic on every k-step: the issue's target is none.
Writes DIR/ptxas_<arch>.json and .md; prints the table.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CSRC = Path(__file__).resolve().parents[1] / "marlin_fast" / "csrc"
KERNEL_FILES = ("gemm_bf16_channel.cu", "gemm_bf16_group.cu", "gemm_bf16_mx.cu", "gemm_f16_channel.cu",
                "gemm_f16_group.cu", "repack.cu")            # no torch headers: nvcc alone compiles them
SCHEMES = {0: "channel", 1: "group128", 2: "mx"}
ENTRY = re.compile(r"Compiling entry function '(?P<name>[^']+)' for '(?P<arch>sm_\d+a?)'")
SPILL = re.compile(r"(?P<stack>\d+) bytes stack frame, (?P<stores>\d+) bytes spill stores, "
                   r"(?P<loads>\d+) bytes spill loads")
USED = re.compile(r"Used (?P<regs>\d+) registers")
# marlin_gemm_kernel<__nv_bfloat16, SCHEME, CONFIG> in the Itanium mangling nvcc prints
GEMM = re.compile(r"marlin_gemm_kernelI(?P<dtype>13__nv_bfloat16|6__half)Li(?P<scheme>\d+)ELi(?P<config>\d+)E")
# marlin_gemm_wgmma_kernel<__nv_bfloat16, SCHEME>: configuration kWgmmaConfig (csrc/launch.h)
GEMM_WGMMA = re.compile(r"marlin_gemm_wgmma_kernelI(?P<dtype>13__nv_bfloat16|6__half)Li(?P<scheme>\d+)EE")
WGMMA_CONFIG = int(re.search(r"kWgmmaConfig = (\d+);", (CSRC / "launch.h").read_text()).group(1))


def kernel_name(mangled: str) -> str:
    """The function's own name in an Itanium-mangled entry (`<length><identifier>` pieces), with its template
    arguments as written there.

    >>> kernel_name("_ZN11marlin_fast41_GLOBAL__N__ce787b2a_9_repack_cu_a2d0f69d14repack8_kernelILb1EEEvPKjPjii")
    'repack8_kernel<Lb1>'
    """
    for match in re.finditer(r"(\d+)", mangled):
        start, length = match.end(), int(match.group(1))
        piece = mangled[start:start + length]
        if piece.endswith("_kernel") and piece.isidentifier():
            rest = mangled[start + length:]
            args = re.match(r"I(.*?)EE", rest)
            return piece + (f"<{args.group(1)}>" if args else "")
    return mangled


def describe(name: str) -> dict:
    """{kernel, dtype, scheme, config} of a mangled entry name.

    >>> describe("_ZN11marlin_fast18marlin_gemm_kernelI13__nv_bfloat16Li1ELi3EEEvNS_8GemmArgsE")
    {'kernel': 'gemm', 'dtype': 'bfloat16', 'scheme': 'group128', 'config': 3}
    >>> describe("_ZN11marlin_fast24marlin_gemm_wgmma_kernelI6__halfLi0EEEvNS_8GemmArgsE")["kernel"]
    'gemm_wgmma'
    """
    match, kernel = GEMM.search(name), "gemm"
    if match is None:
        match, kernel = GEMM_WGMMA.search(name), "gemm_wgmma"
    if match is None:
        return {"kernel": kernel_name(name), "dtype": "-", "scheme": "-", "config": None}
    return {"kernel": kernel, "dtype": "bfloat16" if "bfloat16" in match["dtype"] else "float16",
            "scheme": SCHEMES.get(int(match["scheme"]), match["scheme"]),
            "config": int(match["config"]) if kernel == "gemm" else WGMMA_CONFIG}


def parse(log: str) -> list[dict]:
    """One row per entry function of a ptxas -v log (its lines come entry, spills, registers)."""
    rows, current = [], None
    for line in log.splitlines():
        if (m := ENTRY.search(line)):
            current = {**describe(m["name"]), "arch": m["arch"]}
            rows.append(current)
        elif current is not None and (m := SPILL.search(line)):
            current.update(stack_bytes=int(m["stack"]), spill_store_bytes=int(m["stores"]),
                           spill_load_bytes=int(m["loads"]))
        elif current is not None and (m := USED.search(line)):
            current["registers"] = int(m["regs"])
    return rows


def compile_one(source: Path, arch: str, workdir: Path) -> str:
    done = subprocess.run(["nvcc", "-std=c++17", "-c", "-O3", f"-arch={arch}", "-Xptxas", "-v", str(source),
                           "-o", str(workdir / (source.stem + ".o"))], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"ptxas_report: nvcc failed on {source.name}:\n{done.stderr[-2000:]}")
    return done.stdout + done.stderr


def markdown(rows: list[dict], arch: str) -> str:
    lines = [f"# Registers and spills per kernel ({arch}, nvcc -O3 -Xptxas -v)", "",
             "| kernel | dtype | scheme | config | registers | spill stores (B) | spill loads (B) | stack (B) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kernel']} | {r['dtype']} | {r['scheme']} | {'-' if r['config'] is None else r['config']} "
                     f"| {r.get('registers', '?')} | {r.get('spill_store_bytes', '?')} | "
                     f"{r.get('spill_load_bytes', '?')} | {r.get('stack_bytes', '?')} |")
    spilling = [r for r in rows if r.get("spill_store_bytes", 0) or r.get("spill_load_bytes", 0)]
    lines += ["", f"{len(spilling)} of {len(rows)} kernels spill"
              + (": configurations " + ", ".join(str(c) for c in sorted({r['config'] for r in spilling
                                                                            if r['config'] is not None}))
                 if spilling else "") + "."]
    return "\n".join(lines) + "\n"


def check_tools(parser: argparse.ArgumentParser, arch: str) -> None:
    """--arch must name a GPU architecture and nvcc must be on PATH (exit 2 with one line otherwise)."""
    if not re.fullmatch(r"sm_\d+a?", arch):
        parser.error(f"--arch {arch!r} must look like sm_90")
    if shutil.which("nvcc") is None:
        parser.error("nvcc is not on PATH")


def write_report(out: str | None, stem: str, arch: str, rows: list[dict], md: str) -> None:
    """OUT/<stem>_<arch>.json ({arch, rows}) and .md when OUT is given; the table on stdout."""
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}_{arch}.json").write_text(json.dumps({"arch": arch, "rows": rows}, indent=1) + "\n")
        (folder / f"{stem}_{arch}.md").write_text(md)
    print(md)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="sm_90", help="sm_80, sm_90, ... (default sm_90, the H200)")
    parser.add_argument("--out", default=None, help="write ptxas_<arch>.json and .md here")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    check_tools(parser, args.arch)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        logs = list(pool.map(lambda name: compile_one(CSRC / name, args.arch, Path(tmp)), KERNEL_FILES))
    rows = sorted((r for log in logs for r in parse(log)),
                  key=lambda r: (r["kernel"], r["dtype"], r["scheme"], -1 if r["config"] is None else r["config"]))
    write_report(args.out, "ptxas", args.arch, rows, markdown(rows, args.arch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
