"""Which GEMM cases fault on this GPU, one by one: a kernel that faults kills its CUDA context, so every later call in
the process fails too, and a test suite then reports hundreds of failures that say nothing about the first.

    python3 bench/fault_locate.py CONFIG...             every case of these configurations; names each that faults
    python3 bench/fault_locate.py --from I CONFIG...    (the child) the cases from I on, until one faults

The parent runs children: each goes through the cases in order, printing "begin I" before a case and its result
after it; when a child dies in case I, the parent records I as a fault and starts the next child at I + 1. The first
faulting case is then run once more under compute-sanitizer, which names the kernel and the instruction's offset.
Cases: M in {1, 16, 64, 300} x channel / group-128 x bf16 / fp16 x one split / three, N = 192, K = 512.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

MAX_CHILDREN = 40   # a fault in every case of a configuration would otherwise cost a process start each


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
            result = f"{check_against_reference(out, x, w_eff):.3f} of the bound"
        except ValueError as exc:   # a configuration this build or device refuses
            result = f"refused: {exc}"
        print(f"case {index} config={config} M={m} {scheme} {dtype_name} splits={splits}: {result}", flush=True)


def parent(configs: list[int]) -> int:
    all_cases = cases(configs)
    here = os.path.abspath(__file__)
    start, faults = 0, []
    for _ in range(MAX_CHILDREN):
        if start >= len(all_cases):
            break
        run = subprocess.run([sys.executable, here, "--from", str(start), *map(str, configs)],
                             capture_output=True, text=True, timeout=300)
        begun = [int(line.split()[1]) for line in run.stdout.splitlines() if line.startswith("begin ")]
        print("\n".join(line for line in run.stdout.splitlines() if line.startswith("case ")), flush=True)
        if run.returncode == 0:
            break
        if not begun:   # died before its first case: not a kernel fault
            print(f"child failed before case {start}:\n{run.stderr[-3000:]}", flush=True)
            return 2
        index = begun[-1]
        error = [line for line in run.stderr.splitlines() if "Error" in line or "error" in line][-1:]
        print(f"FAULT case {index} {all_cases[index]}: {' '.join(error)}", flush=True)
        faults.append(index)
        start = index + 1
    if faults:
        print(f"faulting cases: {len(faults)}: {[all_cases[i] for i in faults]}", flush=True)
        first = faults[0]   # the child from there dies in that case first
        sanitizer = subprocess.run(["compute-sanitizer", "--print-limit", "4", sys.executable, here, "--from",
                                    str(first), *map(str, configs)], capture_output=True, text=True, timeout=300)
        print("\n".join(sanitizer.stdout.splitlines()[:80]), flush=True)
    return 1 if faults else 0


if __name__ == "__main__":
    if sys.argv[1] == "--from":
        child(int(sys.argv[2]), [int(c) for c in sys.argv[3:]])
    else:
        sys.exit(parent([int(c) for c in sys.argv[1:]]))
