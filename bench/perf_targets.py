"""Issue 12's H200 targets, read off a benchmark run: one line per target, the figure, met or not.

    python bench/perf_targets.py DIR/bench_gpu.json [--ptxas bench/results/gpu/ptxas/ptxas_sm_90.json]

Reads what bench/bench_gpu.py wrote with --peer-load (ours / peer time ratios, weight-read fractions, cuBLAS,
repack) and, when given, a bench/ptxas_report.py table for the spill target. Targets (issue 12):
* decode, M <= 16, on the three large shapes, in CUDA graphs: at least 1.1x the peer's speed (ours / peer <= 1/1.1),
  and the weight read at >= 85% of the device copy bandwidth;
* M = 64 and M = 256: at least the peer's speed on every shape (eager, L2 flushed), and no register spills in the
  configurations those rows use (`--configs`, csrc/bindings.cpp dense_config: 2, 7 and 3);
* M = 1024 on the three large shapes: >= 0.8x cuBLAS bf16's speed;
* repack of 8192 x 8192: <= 1.2x a device copy of the same bytes, the fused checkpoint path <= 1.3x.
Prints a Markdown table; a target the run cannot speak to (no peer column, no ptxas table) says so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

LARGE_SHAPES = {(8192, 8192), (28672, 4096), (4096, 14336)}   # (N, K)
DECODE_MAX_ROWS = 16
DECODE_PEER_SPEEDUP = 1.1
DECODE_COPY_FRACTION = 0.85
LARGE_M_CUBLAS_FRACTION = 0.8
REPACK_OVER_COPY, CHECKPOINT_OVER_COPY = 1.2, 1.3


def spread(values) -> str:
    """'median m (lo-hi)' of a non-empty list of ratios."""
    return f"median {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def target_rows(bench: dict, ptxas: list | None, spill_configs: set) -> list[tuple[str, str, str]]:
    """(target, measured, met) rows; met is 'yes', 'no' or 'n/a' (the run has no figure for it). ptxas: the "rows"
    of a bench/ptxas_report.py JSON, or None.

    >>> run = {"gemm": [dict(N=8192, K=8192, M=1, scheme="channel", graph_ours_over_peer=0.8, ours_over_peer=0.9,
    ...                      graph_weight_read_fraction_of_copy_bw=0.9, speedup_vs_cublas=1.5)],
    ...        "repack": {"repack_over_copy": 1.1, "checkpoint_over_copy": 1.4}}
    >>> [row[2] for row in target_rows(run, None, {2, 3})]
    ['yes', 'yes', 'n/a', 'n/a', 'n/a', 'yes', 'no']
    """
    gemm = bench["gemm"]
    decode = [r for r in gemm if (r["N"], r["K"]) in LARGE_SHAPES and r["M"] <= DECODE_MAX_ROWS]
    rows = []

    peered = [r for r in decode if "graph_ours_over_peer" in r]
    if peered:
        ratios = [r["graph_ours_over_peer"] for r in peered]
        speed = [1 / x for x in ratios]
        rows.append((f"decode (M <= {DECODE_MAX_ROWS}, large shapes, graph): >= {DECODE_PEER_SPEEDUP}x the peer's speed",
                     f"ours {spread(speed)}x the peer's speed", yes(min(speed) >= DECODE_PEER_SPEEDUP)))
    else:
        rows.append((f"decode: >= {DECODE_PEER_SPEEDUP}x the peer's speed", "no peer column in this run", "n/a"))
    fractions = [r["graph_weight_read_fraction_of_copy_bw"] for r in decode]
    rows.append((f"decode weight read >= {DECODE_COPY_FRACTION:.0%} of copy bandwidth (graph)",
                 spread(fractions) if fractions else "no decode rows", yes(bool(fractions) and min(fractions) >= DECODE_COPY_FRACTION)))

    for m in (64, 256):
        cases = [r for r in gemm if r["M"] == m and "ours_over_peer" in r]
        if cases:
            worst = max(cases, key=lambda r: r["ours_over_peer"])
            rows.append((f"M = {m}: at least the peer's speed on every shape (ours / peer <= 1, eager)",
                         f"ours / peer {spread([r['ours_over_peer'] for r in cases])}, worst {worst['N']}x{worst['K']} "
                         f"{worst['scheme']}", yes(worst["ours_over_peer"] <= 1.0)))
        else:
            rows.append((f"M = {m}: at least the peer's speed", "no peer column / no such rows", "n/a"))
    if ptxas is not None:
        spilling = [k for k in ptxas if k["config"] in spill_configs and k["spill_store_bytes"] + k["spill_load_bytes"] > 0]
        rows.append((f"no register spills in configurations {sorted(spill_configs)} (M = 64, 256)",
                     f"{len(spilling)} of {sum(k['config'] in spill_configs for k in ptxas)} kernels spill",
                     yes(not spilling)))
    large = [r for r in gemm if (r["N"], r["K"]) in LARGE_SHAPES and r["M"] == 1024]
    if large:
        ratios = [r["speedup_vs_cublas"] for r in large]
        rows.append((f"M = 1024, large shapes: >= {LARGE_M_CUBLAS_FRACTION}x cuBLAS bf16's speed", spread(ratios),
                     yes(min(ratios) >= LARGE_M_CUBLAS_FRACTION)))
    else:
        rows.append((f"M = 1024: >= {LARGE_M_CUBLAS_FRACTION}x cuBLAS", "no M = 1024 rows", "n/a"))
    repack = bench["repack"]
    rows.append((f"repack 8192^2 <= {REPACK_OVER_COPY}x a device copy", f"{repack['repack_over_copy']:.2f}x",
                 yes(repack["repack_over_copy"] <= REPACK_OVER_COPY)))
    rows.append((f"fused checkpoint repack <= {CHECKPOINT_OVER_COPY}x a device copy",
                 f"{repack['checkpoint_over_copy']:.2f}x", yes(repack["checkpoint_over_copy"] <= CHECKPOINT_OVER_COPY)))
    return rows


def yes(met: bool) -> str:
    return "yes" if met else "no"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bench_json", help="bench_gpu.json of bench/bench_gpu.py (with --peer-load for the peer targets)")
    parser.add_argument("--ptxas", default=None, help="ptxas_<arch>.json of bench/ptxas_report.py, for the spill target")
    parser.add_argument("--configs", default="2,3,7", help="the configurations of M = 64 and 256 (default 2,3,7)")
    args = parser.parse_args(argv)
    try:
        configs = {int(c) for c in args.configs.split(",")}
    except ValueError:
        parser.error(f"--configs {args.configs!r} must be comma-separated integers")
    try:
        with open(args.bench_json) as f:
            bench = json.load(f)
        ptxas = None
        if args.ptxas:
            with open(args.ptxas) as f:
                ptxas = json.load(f)["rows"]     # bench/ptxas_report.py: {"arch", "rows": [per kernel]}
        rows = target_rows(bench, ptxas, configs)
    except (OSError, ValueError, KeyError, TypeError) as exc:   # unreadable, not JSON, or not bench_gpu.py's JSON
        parser.error(f"cannot read the targets from {args.bench_json}: {type(exc).__name__}: {exc}")
    print("| target | measured | met |\n|---|---|---|")
    for target, measured, met in rows:
        print(f"| {target} | {measured} | {met} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
