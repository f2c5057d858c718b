"""CPU benchmark: the NumPy oracle against the torch fast path on the same cases, and the suite's example rate.

Not a test. Each case is checked for byte equality once before timing; each implementation is then timed
`--repeats` times in one process, interleaved (A B A B ...), and the median is quoted with the ratio of medians.
The suite figure runs the CPU tier once under the `ci` profile and divides the Hypothesis examples it executed
by its wall time.

    python bench/bench_cpu.py --out bench/results/cpu        # writes cpu.json and cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import ml_dtypes
import numpy as np
import torch

import marlin_fast
import marlin_ref

FP8 = ml_dtypes.float8_e4m3fn


def random_fp8(rng, shape):
    codes = rng.integers(0, 256, size=shape, dtype=np.uint8)
    codes[(codes & 0x7F) == 0x7F] = 0x38  # keep NaN codes out of the timing data (they are tested elsewhere)
    return codes.view(FP8)


def to_torch(a: np.ndarray) -> torch.Tensor:
    """Reinterpret bytes: ml_dtypes' fp8/bf16 map one to one onto torch's dtypes of the same name."""
    names = {"float8_e4m3fn": torch.float8_e4m3fn, "bfloat16": torch.bfloat16}
    if a.dtype.name in names:
        return torch.from_numpy(a.view(np.uint8 if a.itemsize == 1 else np.uint16).copy()).view(names[a.dtype.name])
    return torch.from_numpy(a.copy())


def as_bytes(x) -> bytes:
    if isinstance(x, torch.Tensor):
        return x.contiguous().view(torch.uint8).numpy().tobytes()
    return np.ascontiguousarray(x).view(np.uint8).tobytes()


def cases(rng):
    """(name, oracle call, fast call) with the same inputs; outputs compared byte for byte before timing."""
    for k, n in [(1024, 1024), (4096, 4096)]:
        w = random_fp8(rng, (n, k))                                               # checkpoint [N, K]
        packed = marlin_ref.pack_fp8_to_int32(w, size_k_first=False).T.copy()    # [K/4, N]
        tp = to_torch(packed)
        yield (f"gptq_marlin_repack 8-bit K={k} N={n}",
               lambda p=packed, k=k, n=n: marlin_ref.gptq_marlin_repack(p, None, k, n, 8),
               lambda p=tp, k=k, n=n: marlin_fast.gptq_marlin_repack(p, None, k, n, 8))
        scale = (rng.random(n).astype(np.float32) + 0.5) / 448
        ts, tw = to_torch(scale), to_torch(w)
        yield (f"prepare_fp8_layer_for_marlin channel K={k} N={n}",
               lambda w=w, s=scale: marlin_ref.prepare_fp8_layer_for_marlin(w, s, orig_dtype="bfloat16",
                                                                            size_k_first=False),
               lambda w=tw, s=ts: marlin_fast.prepare_fp8_layer_for_marlin(w, s, orig_dtype="bfloat16",
                                                                           size_k_first=False))
        mx = rng.integers(118, 136, size=(n, k // 32), dtype=np.uint8)
        tmx = to_torch(mx)
        yield (f"prepare_mxfp8_layer_for_marlin K={k} N={n}",
               lambda w=w, s=mx: marlin_ref.prepare_mxfp8_layer_for_marlin(w, s),
               lambda w=tw, s=tmx: marlin_fast.prepare_mxfp8_layer_for_marlin(w, s))
    g = rng.standard_normal((32, 4096)).astype(np.float16)
    tg = to_torch(g)
    yield ("marlin_permute_scales grouped G=32 N=4096",
           lambda s=g: marlin_ref.marlin_permute_scales(s, 4096, 4096, 128),
           lambda s=tg: marlin_fast.marlin_permute_scales(s, 4096, 4096, 128))


def outputs(result):
    return [f for f in result if not isinstance(f, int) and f is not None] if isinstance(result, tuple) else [result]


def time_case(oracle, fast, repeats):
    want, got = outputs(oracle()), outputs(fast())
    if [as_bytes(x) for x in want] != [as_bytes(x) for x in got]:
        raise SystemExit("fast path and oracle disagree; not timing a wrong answer")
    t_ref, t_fast = [], []
    for _ in range(repeats):
        for fn, acc in ((oracle, t_ref), (fast, t_fast)):
            start = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - start)
    return statistics.median(t_ref), statistics.median(t_fast)


def suite_rate():
    """Run the CPU tier once (ci profile) and return (examples, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "examples.txt")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                        f"--marlin-count-examples={path}"], env={**os.environ, "CI": "true"}, check=False,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        with open(path) as f:
            return int(f.read()), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-suite", action="store_true", help="skip the example-rate run of the test suite")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rows = []
    for name, oracle, fast in cases(np.random.default_rng(0)):
        t_ref, t_fast = time_case(oracle, fast, args.repeats)
        rows.append({"case": name, "oracle_ms": 1e3 * t_ref, "torch_ms": 1e3 * t_fast, "ratio": t_ref / t_fast})
        print(f"{name:55s} oracle {1e3 * t_ref:9.2f} ms  torch {1e3 * t_fast:8.2f} ms  x{t_ref / t_fast:6.1f}")
    result = {"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
              "numpy": np.__version__, "torch": torch.__version__, "repeats": args.repeats, "rows": rows,
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True).stdout.strip(),
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
    if not args.no_suite:
        examples, seconds = suite_rate()
        result["suite"] = {"examples": examples, "seconds": seconds, "examples_per_second": examples / seconds}
        print(f"CPU suite: {examples} Hypothesis examples in {seconds:.1f} s = {examples / seconds:.0f}/s")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(f"# CPU benchmark: oracle vs torch fast path\n\n{result['machine']}, {result['cpus']} CPUs, "
                f"numpy {result['numpy']}, torch {result['torch']}, commit {result['commit']}, "
                f"median of {args.repeats} interleaved runs.\nCommand: `{result['command']}`\n\n"
                "| case | oracle ms | torch ms | oracle/torch |\n|---|---:|---:|---:|\n")
        for r in rows:
            f.write(f"| {r['case']} | {r['oracle_ms']:.2f} | {r['torch_ms']:.2f} | {r['ratio']:.1f} |\n")
        if "suite" in result:
            s = result["suite"]
            f.write(f"\nCPU suite (`pytest -n 2`, ci profile): {s['examples']} Hypothesis examples in "
                    f"{s['seconds']:.1f} s = {s['examples_per_second']:.0f} examples/s (includes collection "
                    "and the non-Hypothesis tests).\n")


if __name__ == "__main__":
    main()
