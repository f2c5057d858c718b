"""Which GEMM cases fault on this GPU, one by one: a kernel that faults kills its CUDA context, so every later call in
the process fails too, and a test suite then reports hundreds of failures that say nothing about the first.

    python3 bench/fault_locate.py CONFIG...             every case of these configurations; names each that faults
    python3 bench/fault_locate.py --from I CONFIG...    (the child) the cases from I on, until one faults

The parent runs children: each goes through the cases in order, printing "begin I" before a case and its result
after it; when a child dies in case I, the parent records I as a fault and starts the next child at I + 1. A case
outside the float64 bound is named too; exit 1 for either. The first faulting case is then run once more under
compute-sanitizer, which names the kernel and the instruction's offset.
Cases: M in {1, 16, 64, 300} x channel / group-128 x bf16 / fp16 x one split / three, N = 192, K = 512.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

MAX_CHILDREN = 40   # a fault in every case of a configuration would otherwise cost a process start each
CHILD_SECONDS = 60  # a child still running then is killed: a kernel that hangs is named like one that faults


def cases(configs: list[int]) -> list[tuple]:
    return list(itertools.product(configs, (1, 16, 64, 300), ("channel", "group128"), ("bf16", "f16"), (1, 3)))


def child(start: int, configs: list[int]) -> None:
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gpu_setup import check_against_reference, make_gemm_inputs

    from marlin_fast import cuda as kernels

    gen = torch.Generator(device="cuda").manual_seed(11)
    for index, (config, m, scheme, dtype_name, splits) in enumerate(cases(configs)):
        if index < start:
            continue
        print(f"begin {index}", flush=True)
        dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float16
        q, s, w_eff, _ = make_gemm_inputs(kernels, 192, 512, scheme, dtype, gen)
        x = torch.randn((m, 512), device="cuda", generator=gen).to(dtype)
        try:
            out = kernels.marlin_gemm(x, q, s, size_n=192, size_k=512, config=config, splits=splits)
            torch.cuda.synchronize()
            ratio = check_against_reference(out, x, w_eff)
            result = f"{ratio:.3f} of the bound" + ("" if ratio <= 1 else " OVER THE BOUND")
        except ValueError as exc:   # a configuration this build or device refuses
            result = f"refused: {exc}"
        print(f"case {index} config={config} M={m} {scheme} {dtype_name} splits={splits}: {result}", flush=True)


def parent(configs: list[int]) -> int:
    all_cases = cases(configs)
    here = os.path.abspath(__file__)
    start, faults, over = 0, [], []
    for _ in range(MAX_CHILDREN):
        if start >= len(all_cases):
            break
        try:
            run = subprocess.run([sys.executable, here, "--from", str(start), *map(str, configs)],
                                 capture_output=True, text=True, timeout=CHILD_SECONDS)
            stdout, stderr, returncode = run.stdout, run.stderr, run.returncode
        except subprocess.TimeoutExpired as hung:   # its output comes back as bytes, whatever text= said
            out = hung.stdout or b""
            stdout, stderr, returncode = out.decode() if isinstance(out, bytes) else out, "hung: killed", -9
        begun = [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("begin ")]
        done = [line for line in stdout.splitlines() if line.startswith("case ")]
        print("\n".join(done), flush=True)
        over += [line for line in done if line.endswith("OVER THE BOUND")]
        if returncode == 0:
            break
        if not begun:   # died before its first case: not a kernel fault
            print(f"child failed before case {start}:\n{stderr[-3000:]}", flush=True)
            return 2
        index = begun[-1]
        error = [line for line in stderr.splitlines() if "rror" in line or "hung" in line][-1:]
        print(f"FAULT case {index} {all_cases[index]}: {' '.join(error)}", flush=True)
        faults.append(index)
        start = index + 1
    else:
        print(f"stopped after {MAX_CHILDREN} children: cases from {start} on did not run", flush=True)
        return 1
    if faults:
        print(f"faulting cases: {len(faults)}: {[all_cases[i] for i in faults]}", flush=True)
        first = faults[0]   # the child from there dies in that case first
        try:
            sanitizer = subprocess.run(["compute-sanitizer", "--print-limit", "4", sys.executable, here, "--from",
                                        str(first), *map(str, configs)], capture_output=True, text=True, timeout=120)
            print("\n".join(sanitizer.stdout.splitlines()[:80]), flush=True)
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"compute-sanitizer: {exc}", flush=True)
    if over:
        print(f"over the bound: {len(over)} cases", flush=True)
    return 1 if faults or over else 0


def configurations(words: list[str]) -> list[int]:
    if not words or not all(w.isdigit() for w in words):
        print(f"fault_locate.py: CONFIG... must be configuration numbers (usage: [--from I] CONFIG...), got {words}",
              file=sys.stderr)
        sys.exit(2)
    return [int(w) for w in words]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--from"] and sys.argv[2:3] and sys.argv[2].isdigit():
        child(int(sys.argv[2]), configurations(sys.argv[3:]))
    else:
        sys.exit(parent(configurations(sys.argv[1:])))
