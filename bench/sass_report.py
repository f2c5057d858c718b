"""Instructions per weight tile in the GEMM main loop, from SASS (no GPU): ours and, given its source, the peer.

    python bench/sass_report.py [--arch sm_90] [--nvdisasm PATH] [--peer-source DIR] [--out DIR]

Why: on the H200 both Marlins are issue-bound at decode (ncu, bench/results/gpu/h200-49716b7): the kernel that
issues fewer instructions per weight wins, and that count can be read off the machine code on any computer with
nvcc. This compiles our five GEMM instantiations (marlin_fast/csrc/gemm_*.cu) to a cubin for one architecture,
disassembles them with nvdisasm (NVIDIA's, `pip install nvidia-cuda-nvdisasm`; nvcc alone does not ship it), and
for each kernel finds the main loop: the backward branch enclosing the most HMMA instructions (the smallest such
loop). It then counts the warp instructions one pipeline stage issues and divides by the Marlin tiles (16 k x 64
n weights) a warp dequantises in that stage:

* ours: a loop of one stage (main: `compute_stage` once per trip) is measured whole; a loop unrolled over the
  pipeline's slots (bench/pending/gemm-loop.patch) like the peer's below. Ours compiles with
  `-DMARLIN_SASS_STEADY_STATE=1`: a kernel that knows the macro traps the paths a steady-state stage does not
  take (the K and N tails), so that the loop holds the steady state alone;
* the peer (vLLM's Marlin template, `--peer-source` = kernels-community `vllm-quantization`): its loop unrolls
  all `stages` pipeline steps and holds the slice epilogue behind a rarely taken branch, so a stage is the
  distance from the first HMMA of one pipeline step to the first of the next (median over the unrolled steps).

Both counts are static: an instruction under a predicate or a branch counts once whether or not it runs. Checked
against ncu on 49716b7: the ratio of the two counts at decode (1.6) matches the ratio of issued instructions ncu
measured (1.5 at M = 16). The peer is compiled here from its own source with three empty stand-ins for the torch
headers its kernel file includes but does not use (written to a temporary folder); nothing of it is kept.
Writes DIR/sass_<arch>.json and .md; prints the table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ptxas_report import CSRC, check_tools, describe, write_report  # noqa: E402  (one parser of our kernels' names)

GEMM_FILES = ("gemm_bf16_channel.cu", "gemm_bf16_group.cu", "gemm_bf16_mx.cu", "gemm_f16_channel.cu",
              "gemm_f16_group.cu")
PEER_FILE = "gptq_marlin/kernel_bf16_kfe4m3fn.cu"   # the peer's bf16-activation FP8 instantiations
# the torch headers the peer's kernel headers include (marlin.cuh) without using them in device code
PEER_STUB_HEADERS = {"torch/all.h": "#pragma once\n#include <c10/util/Exception.h>\n",
                     "ATen/cuda/CUDAContext.h": "#pragma once\n", "c10/cuda/CUDAGuard.h": "#pragma once\n"}

# gemm_kernel.cuh: the tail paths (a stage past K, a block past N) become a trap, so the loop holds one path
STEADY_STATE = "-DMARLIN_SASS_STEADY_STATE=1"

FUNCTION = re.compile(r"^\.text\.(?P<name>\S+):$")
LABEL = re.compile(r"^(?P<label>\.L_x_\d+):")
INSTRUCTION = re.compile(r"^\s*/\*(?P<addr>[0-9a-f]{4,})\*/\s+(?P<body>[^;]*);")
PREDICATE = re.compile(r"^@!?U?P[T\d]+\s+")
BRANCH_TARGET = re.compile(r"(\.L_x_\d+)")
# Marlin<scalar_t, w_type, threads, thread_m_blocks, thread_n_blocks, thread_k_blocks, m_block_size_8, stages,
# group_blocks, is_zp_float> as nvcc mangles it ("n1" is -1)
PEER = re.compile(r"6MarlinI(?P<dtype>13__nv_bfloat16|6__half)Ll\d+ELi(?P<threads>\d+)ELi(?P<m>\d+)ELi(?P<n>\d+)"
                  r"ELi(?P<k>\d+)ELb(?P<m8>[01])ELi(?P<stages>\d+)ELi(?P<group>n?\d+)E")

# instruction classes: what the issue slots go to
CLASSES = (
    ("mma", ("HMMA",)),
    ("bit ops (dequant)", ("LOP3", "PRMT", "SHF", "LOP", "BMSK", "F2FP", "HMUL2", "HFMA2", "HADD2")),
    ("integer / address", ("IMAD", "LEA", "IADD3", "VIADD", "IADD", "IABS", "IMNMX", "VIMNMX", "SGXT")),
    ("compare / select", ("ISETP", "PLOP3", "SEL", "FSEL", "P2R", "R2P")),
    ("memory", ("LDS", "LDSM", "STS", "LDG", "STG", "LDGSTS", "UBLKCP", "LDC", "ULDC", "SYNCS")),
    ("sync / control", ("BAR", "DEPBAR", "LDGDEPBAR", "WARPSYNC", "BSSY", "BSYNC", "BRA", "EXIT", "ELECT",
                        "NOP", "YIELD")),
    ("moves / special", ("MOV", "IMAD.MOV", "S2R", "S2UR", "R2UR", "CS2R", "UMOV")),
)


def classify(opcode: str) -> str:
    """The class of an opcode (its modifiers dropped, IMAD.MOV kept apart: a move, not arithmetic).

    >>> classify("IMAD.MOV.U32"), classify("LOP3.LUT"), classify("HMMA.16816.F32.BF16"), classify("FFMA")
    ('moves / special', 'bit ops (dequant)', 'mma', 'other')
    >>> classify("IMAD.SHL.U32"), classify("IMAD.WIDE.U32")
    ('bit ops (dequant)', 'integer / address')
    >>> classify("UIADD3")
    'uniform datapath'
    """
    if opcode.startswith("IMAD.MOV"):
        return "moves / special"
    if opcode.startswith("IMAD.SHL"):   # a shift the compiler put on the multiplier: the dequant's << 4, << 8
        return "bit ops (dequant)"
    base = opcode.split(".")[0]
    for name, members in CLASSES:
        if base in members:
            return name
    return "uniform datapath" if base.startswith("U") else "other"


def parse_sass(text: str) -> dict[str, dict]:
    """{function: {"ops": [opcode, ...], "bodies": [...], "labels": {label: index of the next instruction}}}
    from nvdisasm's text; predicates (@P0, @!UP1) are dropped from the opcode."""
    functions, current = {}, None
    for line in text.splitlines():
        stripped = line.strip()
        if (m := FUNCTION.match(stripped)):
            current = functions.setdefault(m["name"], {"ops": [], "bodies": [], "labels": {}})
        elif current is None:
            continue
        elif (m := LABEL.match(stripped)):
            current["labels"][m["label"]] = len(current["ops"])
        elif (m := INSTRUCTION.match(line)):
            body = PREDICATE.sub("", m["body"].strip())
            current["ops"].append(body.split()[0] if body else "?")
            current["bodies"].append(body)
    return functions


# ptxas 13.0 emitted `LDGSTS [Rx+UR0], desc[UR1][...]` for the streaming copies of configurations 0 and 1 of
# gemm-loop.patch: a 64-bit descriptor (the cache policy) in an odd uniform register, and neither UR0 nor UR1 written
# anywhere in the function. The H100 raised an illegal instruction at exactly these (compute-sanitizer), and nothing
# warned at compile time. Both symptoms are checked: a descriptor must sit in an even pair URn:URn+1, and every
# uniform register a function reads must be written somewhere in it.
DESCRIPTOR = re.compile(r"desc\[UR(\d+)\]")
UNIFORM = re.compile(r"\bUR(\d+)\b")


def misencoded_uniform_operands(function: dict) -> list[str]:
    """The instructions of a function whose descriptor register is odd, or that read a uniform register the function
    never writes (the first operand of an instruction is what it writes; a 64-bit or .WIDE one a pair).

    >>> bad = " /*0010*/ LDGSTS.E.BYPASS.128 [R70+UR0], desc[UR1][R102.64] ;"
    >>> good = [" /*0000*/ ULDC.64 UR10, c[0x0][0x208] ;", " /*0020*/ LDG.E R7, desc[UR10][R2.64] ;"]
    >>> misencoded_uniform_operands(parse_sass("\\n".join([".text.k:", good[0], bad, good[1]]))["k"])
    ['LDGSTS.E.BYPASS.128 [R70+UR0], desc[UR1][R102.64]']
    >>> misencoded_uniform_operands(parse_sass("\\n".join([".text.k:", good[1]]))["k"])   # UR10 never written
    ['LDG.E R7, desc[UR10][R2.64]']
    """
    written = set()
    for body in function["bodies"]:
        opcode, _, operands = body.partition(" ")
        if (dest := re.fullmatch(r"UR(\d+)", operands.split(",")[0].strip())):
            pair = ".64" in opcode or ".WIDE" in opcode
            written.update({int(dest[1]), int(dest[1]) + 1} if pair else {int(dest[1])})
    bad = []
    for body in function["bodies"]:
        opcode, _, operands = body.partition(" ")
        sources = operands.split(",")[1:] if re.fullmatch(r"UR\d+", operands.split(",")[0].strip()) else [operands]
        unwritten = any(int(n) not in written for part in sources for n in UNIFORM.findall(part))
        if unwritten or any(int(n) % 2 for n in DESCRIPTOR.findall(body)):
            bad.append(body)
    return bad


def loops(function: dict) -> list[tuple[int, int, int]]:
    """(first, last, HMMA count) of every loop: a branch to a label at or before it."""
    found = []
    for i, (op, body) in enumerate(zip(function["ops"], function["bodies"])):
        if not op.startswith("BRA"):
            continue
        target = BRANCH_TARGET.search(body)
        start = function["labels"].get(target.group(1)) if target else None
        if start is not None and start <= i:
            found.append((start, i, sum(o.startswith("HMMA") for o in function["ops"][start:i + 1])))
    return found


def main_loop(function: dict) -> tuple[int, int] | None:
    """(first, last) instruction index of the loop holding the most HMMA, the shortest of those; None if no loop
    holds one."""
    best = max((lp for lp in loops(function) if lp[2]), key=lambda lp: (lp[2], lp[0] - lp[1]), default=None)
    return None if best is None else (best[0], best[1])


def inner_loop_instructions(function: dict, first: int, end: int) -> int:
    """Instructions of [first, end) inside loops nested there that hold no HMMA (a copy loop a few threads run
    once a stage, like the scale rows): counted apart, since a static count would charge them to every warp."""
    inside = set()
    for start, last, hmma in loops(function):
        if not hmma and first <= start and last < end:
            inside.update(range(start, last + 1))
    return len(inside)


def stage_span(function: dict, loop: tuple[int, int], steps: int) -> tuple[int, int, list[int]]:
    """(first, end) indices of one steady-state pipeline stage of the loop, and every measured stage length.

    steps = 1: the loop is the stage. steps > 1: the loop unrolls `steps` stages with the same HMMA count each;
    a stage runs from the first HMMA of one to the first HMMA of the next; the median-length one is returned.
    """
    first, last = loop
    if steps == 1:
        return first, last + 1, [last + 1 - first]
    hmma = [i for i in range(first, last + 1) if function["ops"][i].startswith("HMMA")]
    if len(hmma) % steps:
        raise ValueError(f"steps={steps}: the loop's {len(hmma)} HMMA do not split into equal stages")
    per = len(hmma) // steps
    starts = [hmma[per * s] for s in range(steps)]
    spans = [(a, b) for a, b in zip(starts, starts[1:])]
    lengths = [b - a for a, b in spans]
    median = sorted(spans, key=lambda ab: ab[1] - ab[0])[len(spans) // 2]
    return median[0], median[1], lengths


def peer_config(name: str) -> dict | None:
    """The template arguments of one of the peer's Marlin kernels, or None for another function.

    >>> peer_config("_ZN6marlin6MarlinI13__nv_bfloat16Ll2814749767172868ELi256ELi1ELi8ELi8ELb0ELi4ELin1ELb0EEEv")
    {'dtype': 'bfloat16', 'threads': 256, 'm_blocks': 1, 'n_blocks': 8, 'k_blocks': 8, 'm8': False, 'stages': 4, 'group_blocks': -1}
    """
    m = PEER.search(name)
    if m is None:
        return None
    return {"dtype": "bfloat16" if "bfloat16" in m["dtype"] else "float16", "threads": int(m["threads"]),
            "m_blocks": int(m["m"]), "n_blocks": int(m["n"]), "k_blocks": int(m["k"]), "m8": m["m8"] == "1",
            "stages": int(m["stages"]), "group_blocks": -int(m["group"][1:]) if m["group"].startswith("n")
            else int(m["group"])}


def our_hmma_per_stage(config: int, configs: list[dict]) -> int:
    """mma a warp issues per stage: U k16-steps x MB row blocks x 8 n8 sub-tiles."""
    return configs[config]["u"] * configs[config]["mb"] * 8


def our_tiles_per_warp(config: int, configs: list[dict]) -> int:
    """Marlin tiles (16 x 64 weights) a warp dequantises per stage: U k16-steps of its one 64-column tile."""
    return configs[config]["u"]


def peer_tiles_per_warp(cfg: dict) -> float:
    """A stage of the peer's block covers thread_k_blocks x thread_n_blocks 16x16 sub-tiles, shared by its warps:
    (k_blocks * 16) * (n_blocks * 16) weights / 1024 per tile / warps."""
    return cfg["k_blocks"] * cfg["n_blocks"] * 256 / 1024 / (cfg["threads"] // 32)


def our_configs() -> list[dict]:
    """kConfigs of csrc/launch.h as dicts (the table is the single source; read, not restated).

    >>> our_configs()[0]["u"] >= 1
    True
    """
    text = (CSRC / "launch.h").read_text()
    fields = re.search(r"struct ConfigInfo \{(.*?)constexpr", text, re.DOTALL).group(1)
    names = re.findall(r"int (\w+);", fields)
    table = re.search(r"kConfigs\[kNumConfigs\] = \{(.*?)\n\};", text, re.DOTALL).group(1)
    return [dict(zip(names, map(int, row.split(",")))) for row in re.findall(r"\{([\d,\s]+)\}", table)]


def row_of(name: str, function: dict, configs: list[dict]) -> dict | None:
    """The report's row for one kernel, or None when it is neither our GEMM nor the peer's (or has no mma loop)."""
    ours = describe(name)
    peer = peer_config(name)
    loop = main_loop(function)
    if loop is None:
        return None
    if ours["kernel"] == "gemm":
        who, label, tiles = "ours", f"config {ours['config']}", our_tiles_per_warp(ours["config"], configs)
        info = {"dtype": ours["dtype"], "scheme": ours["scheme"], "config": ours["config"]}
        # one stage a trip, or the pipeline unrolled over its slots: as many stages as the loop holds mma groups
        loop_mma = sum(op.startswith("HMMA") for op in function["ops"][loop[0]:loop[1] + 1])
        steps = max(1, loop_mma // our_hmma_per_stage(ours["config"], configs))
    elif peer is not None:
        scheme = "channel" if peer["group_blocks"] == -1 else f"group{16 * peer['group_blocks']}"
        label = (f"{peer['threads']} threads, {16 * peer['m_blocks']}x{16 * peer['n_blocks']}x{16 * peer['k_blocks']}"
                 + (", m8" if peer["m8"] else ""))
        who, steps, tiles = "peer", peer["stages"], peer_tiles_per_warp(peer)
        info = {"dtype": peer["dtype"], "scheme": scheme, **peer}
    else:
        return None
    first, end, lengths = stage_span(function, loop, steps)
    inner = inner_loop_instructions(function, first, end)
    stage_ops = function["ops"][first:end]
    return {"who": who, "kernel": label, **info, "loop_instructions": loop[1] + 1 - loop[0],
            "stage_instructions": end - first - inner, "inner_loop_instructions": inner, "stage_lengths": lengths,
            "tiles_per_warp": tiles, "per_tile": round((end - first - inner) / tiles, 1),
            "hmma_per_stage": sum(op.startswith("HMMA") for op in stage_ops),
            "classes": dict(Counter(classify(op) for op in stage_ops).most_common()),
            "opcodes": dict(Counter(op.split(".")[0] for op in stage_ops).most_common())}


def find_nvdisasm(given: str | None) -> str | None:
    if given:
        return given if os.access(given, os.X_OK) else None
    found = shutil.which("nvdisasm")
    if found:
        return found
    try:  # the pip wheel nvidia-cuda-nvdisasm puts it under nvidia/cu*/bin
        import nvidia  # type: ignore
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        for candidate in sorted(Path(root).glob("cu*/bin/nvdisasm")):
            return str(candidate)
    return None


def compile_cubin(source: Path, arch: str, out: Path, extra: list[str]) -> Path:
    cubin = out / (source.stem + ".cubin")
    done = subprocess.run(["nvcc", "-std=c++17", "-cubin", "-O3", f"-arch={arch}", *extra, str(source), "-o",
                           str(cubin)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"sass_report: nvcc failed on {source.name}: {done.stderr.strip().splitlines()[-1:]}")
    return cubin


def peer_flags(peer_source: Path, workdir: Path) -> list[str]:
    """nvcc flags for the peer's kernel file: its root on the include path, the torch stand-ins before torch's."""
    import torch.utils.cpp_extension as cpp  # the torch headers the peer's scalar_type.hpp needs (TORCH_CHECK)
    stubs = workdir / "stubs"
    for rel, text in PEER_STUB_HEADERS.items():
        (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
        (stubs / rel).write_text(text)
    return [f"-I{stubs}", f"-I{peer_source}", *(f"-I{p}" for p in cpp.include_paths()), "--expt-relaxed-constexpr",
            "-DMARLIN_NAMESPACE_NAME=marlin", "-static-global-template-stub=false"]


def markdown(rows: list[dict], arch: str) -> str:
    classes = [name for name, _ in CLASSES] + ["uniform datapath", "other"]
    lines = [f"# Warp instructions per Marlin tile in the GEMM main loop ({arch}, SASS)", "",
             "A tile is 16 k x 64 n weights (one 1 KB Marlin tile). `per tile` = one steady-state pipeline stage's "
             "instructions / the tiles a warp dequantises in it; the classes split the stage's instructions. "
             "`inner loops`: instructions of loops inside the stage that hold no HMMA (a copy a few threads run), "
             "left out of `stage` and `per tile` (and counted in the classes).", "",
             "| who | dtype | scheme | kernel | stage | inner loops | tiles/warp | per tile | " + " | ".join(classes)
             + " |", "|---|---|---|---|---|---|---|---|" + "---|" * len(classes)]
    for r in rows:
        cells = " | ".join(str(r["classes"].get(c, 0)) for c in classes)
        lines.append(f"| {r['who']} | {r['dtype']} | {r['scheme']} | {r['kernel']} | {r['stage_instructions']} | "
                     f"{r['inner_loop_instructions']} | "
                     f"{r['tiles_per_warp']:g} | {r['per_tile']} | {cells} |")
    return "\n".join(lines) + "\n"


def extension_cuda_flags() -> list[str]:
    """marlin_fast/_ext.py's CUDA_FLAGS, read from the file: importing the package would import torch."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("marlin_fast_ext", CSRC.parent / "_ext.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CUDA_FLAGS)


def check_uniform_operands(nvdisasm: str, arch: str) -> int:
    """--check: every .cu file of the extension, compiled with its flags (marlin_fast/_ext.py's CUDA_FLAGS)."""
    flags = extension_cuda_flags()
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = sorted(p for p in CSRC.iterdir() if p.suffix == ".cu")
        with ThreadPoolExecutor(2) as pool:
            cubins = list(pool.map(lambda source: compile_cubin(source, arch, Path(tmp), flags), sources))
        for cubin in cubins:
            sass = subprocess.run([nvdisasm, "-c", str(cubin)], capture_output=True, text=True, check=True).stdout
            for name, function in parse_sass(sass).items():
                bad += [f"{cubin.stem}: {name}: {body}" for body in misencoded_uniform_operands(function)]
    clean = f"sass_report --check {arch}: no misencoded descriptor or unwritten uniform register in {len(cubins)} files"
    print("\n".join([*bad[:20], f"{len(bad)} instructions in all"]) if bad else clean)
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="sm_90", help="sm_80, sm_90, ... (default sm_90, the H200)")
    parser.add_argument("--nvdisasm", default=None, help="path of nvdisasm (default: PATH, then the pip wheel)")
    parser.add_argument("--peer-source", default=None,
                        help="kernels-community vllm-quantization checkout: also report its FP8 Marlin kernels")
    parser.add_argument("--out", default=None, help="write sass_<arch>.json and .md here")
    parser.add_argument("--check", action="store_true",
                        help="no report: compile every kernel file as the extension does and exit 1 naming each "
                             "instruction with a misencoded descriptor (see DESCRIPTOR)")
    args = parser.parse_args(argv)
    check_tools(parser, args.arch)
    nvdisasm = find_nvdisasm(args.nvdisasm)
    if nvdisasm is None:
        parser.error("nvdisasm not found: pass --nvdisasm PATH or `pip install nvidia-cuda-nvdisasm`")
    peer = Path(args.peer_source) if args.peer_source else None
    if peer is not None and not (peer / PEER_FILE).is_file():
        parser.error(f"--peer-source {peer}: no {PEER_FILE} there (want kernels-community vllm-quantization)")
    if args.check:
        return check_uniform_operands(nvdisasm, args.arch)
    configs = our_configs()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jobs = [(CSRC / name, [STEADY_STATE]) for name in GEMM_FILES]
        if peer is not None:
            jobs.append((peer / PEER_FILE, peer_flags(peer, work)))
        with ThreadPoolExecutor(2) as pool:
            cubins = list(pool.map(lambda job: compile_cubin(job[0], args.arch, work, job[1]), jobs))
        rows = []
        for cubin in cubins:
            sass = subprocess.run([nvdisasm, "-c", str(cubin)], capture_output=True, text=True, check=True).stdout
            rows += [r for name, f in parse_sass(sass).items() if (r := row_of(name, f, configs))]
    rows.sort(key=lambda r: (r["who"] != "ours", r["dtype"], r["scheme"], r["kernel"]))
    write_report(args.out, "sass", args.arch, rows, markdown(rows, args.arch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
