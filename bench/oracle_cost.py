"""The oracle's cost of one model-shape GEMM example (issue: sampled oracle), split into its parts.

    python bench/oracle_cost.py [--backend cuda] [--rows 1024] [--size 8192] [--repeats 5] [--out FILE.json]

For each scheme (channel, group128, mx) and each law (one-hot rows, normal rows) it times, median of --repeats:
  inputs   building the kernel's inputs on the host (random words, oracle-permuted scales and bias, activations)
  oracle   the oracle's side of the check: dequantising the sampled columns and the expected / bounded values
  law      the whole law on --backend (inputs, the kernel call with its copies, the oracle's check), when given
The oracle never sees the whole M x N output: its cost is linear in the sampled outputs (SAMPLED_ROWS x
SAMPLED_COLUMNS) times K, not in M x N x K. Correctness comes first: the law runs once before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from marlin_ref.marlin_gemm import one_hot_expected
from properties.cases import model_shapes as MS
from properties.laws import assert_within_gemm_bound


def case_of(scheme: str, law: str, size: int, rows: int) -> dict:
    case = {"scheme": scheme, "dtype": "bfloat16", "size_k": size, "size_n": size, "rows": rows,
            "activations": "one_hot" if law == "one_hot" else "normal", "bias": True, "specials": "none", "seed": 1}
    if law == "normal":
        case["act_exponent"] = 0
    return case


def oracle_side(case: dict, built: MS.ModelGemm) -> None:
    """What the law computes on the oracle's side, without the kernel's output."""
    w_eff = MS._w_eff(case, built)                                                        # [K, C]
    bias = None if built.bias is None else built.bias[built.columns]
    if case["activations"] == "one_hot":
        one_hot_expected(w_eff, case["dtype"], hot=built.hot[built.rows], bias=bias)
    else:   # the bound checks the oracle's own float64 product against itself: the cost is the same as a real check
        want = built.kwargs["a"][built.rows].astype(np.float64) @ w_eff                   # [R, C]
        assert_within_gemm_bound(want.astype(np.float32), built.kwargs["a"][built.rows], w_eff, case["dtype"],
                                 bias=None, channel_scales=None, where="oracle_cost")


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default=None, help="also time the whole law on this backend (e.g. cuda)")
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--size", type=int, default=8192, help="K = N")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    backend = None
    if args.backend:
        from properties.seam.backends import get_backend
        backend = get_backend(args.backend)
    rows = []
    for scheme in ("channel", "group128", "mx"):
        for law, fn in (("one_hot", MS.model_shape_one_hot_is_exact), ("normal", MS.model_shape_within_bound)):
            case = case_of(scheme, law, args.size, args.rows)
            if backend is not None:
                fn(backend, MS.MODEL_ROW, case)                                            # correct before timed
            built = MS.build_model_gemm(case)
            row = {"scheme": scheme, "law": law, "M": args.rows, "K": args.size, "N": args.size,
                   "inputs_s": median_seconds(lambda: MS.build_model_gemm(case), args.repeats),
                   "oracle_s": median_seconds(lambda: oracle_side(case, built), args.repeats)}
            if backend is not None:
                row["law_s"] = median_seconds(lambda: fn(backend, MS.MODEL_ROW, case), args.repeats)
            rows.append(row)
            print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"backend": args.backend, "repeats": args.repeats, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
