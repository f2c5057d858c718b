"""Read a configuration sweep (bench/probe_gpu.py sweep, config-sweep.patch) and say which choices win.

    python bench/pick_configs.py SWEEP.json [--out DIR]

The sweep times our GEMM for every (shape, M, scheme, configuration, split count) it was given, each case first
checked against float64 (`err_over_bound` <= 1), and the repack's variants (each checked byte for byte). This
prints, without a GPU:

* per M: the configuration whose time, relative to the best of each (shape, scheme) case, has the smallest
  geometric mean over the cases (a choice for `config_for_rows`), that mean, its worst case, and the same for
  today's choice (`DEFAULT_CONFIG`, automatic splits) so the gain is a number;
* per M and configuration: whether `plan_gemm`'s automatic split count is within 5% of the best forced one;
* per M and configuration with stream-K records (splits = 0, stream-k.patch): stream-K's time over the best
  split-K count's, geometric mean and range over the cases;
* the repack and fused checkpoint variants, fastest first, as multiples of a device copy.

A case that failed its float64 check, or a variant with wrong bytes, is never chosen and is listed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

# csrc/bindings.cpp config_for_rows on main: M <= 16 -> 0, <= 32 -> 1, <= 64 -> 2, else 3; dense_config then takes
# configuration 7 (64 x 256) for configuration 2's rows on a weight of at least 2^25 elements (N * K)
DEFAULT_CONFIG = ((16, 0), (32, 1), (64, 2), (math.inf, 3))
WIDE_CONFIG, WIDE_MIN_WEIGHT = 7, 1 << 25
AUTO_SPLITS_SLACK = 1.05   # automatic splits "keep up" when within 5% of the best forced split count
GEMM_KEYS = ("N", "K", "M", "scheme", "config", "splits", "us", "err_over_bound")
REPACK_KEYS = ("repack", "copy_us", "repack_us", "fused_us", "ok")


def default_config(rows: int, size_n: int, size_k: int) -> int:
    """Today's configuration for an M x K by K x N dense GEMM.

    >>> [default_config(m, 4096, 4096) for m in (1, 16, 17, 64, 65, 1024)]
    [0, 0, 1, 2, 3, 3]
    >>> [default_config(m, 8192, 4096) for m in (32, 33, 64, 65)]
    [1, 7, 7, 3]
    """
    by_rows = next(config for limit, config in DEFAULT_CONFIG if rows <= limit)
    return WIDE_CONFIG if by_rows == 2 and size_n * size_k >= WIDE_MIN_WEIGHT else by_rows


def split_records(records: list) -> tuple[list[dict], list[dict]]:
    """(GEMM records, repack records); ValueError naming the first record that is neither."""
    if not isinstance(records, list):
        raise ValueError(f"sweep: the JSON must be a list of records, got {type(records).__name__}")
    gemm, repack = [], []
    for i, r in enumerate(records):
        if isinstance(r, dict) and all(k in r for k in GEMM_KEYS):
            gemm.append(r)
        elif isinstance(r, dict) and all(k in r for k in REPACK_KEYS):
            repack.append(r)
        else:
            raise ValueError(f"sweep: record {i} has neither the GEMM keys {GEMM_KEYS} nor the repack keys "
                             f"{REPACK_KEYS}: {r!r}")
    return gemm, repack


def gemm_choices(gemm: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(per-M choice rows, per-(M, config) split rows, failed cases)."""
    failed = [r for r in gemm if not r["err_over_bound"] <= 1]
    ok = [r for r in gemm if r["err_over_bound"] <= 1]
    cases = defaultdict(list)                       # (M, N, K, scheme) -> records
    for r in ok:
        cases[(r["M"], r["N"], r["K"], r["scheme"])].append(r)
    best = {case: min(r["us"] for r in rs) for case, rs in cases.items()}
    choices, splits = [], []
    for rows in sorted({case[0] for case in cases}):
        mine = {case: rs for case, rs in cases.items() if case[0] == rows}
        by_config = defaultdict(dict)               # config -> case -> best time over its split counts
        auto = defaultdict(dict)                    # config -> case -> time with automatic splits
        for case, rs in mine.items():
            for r in rs:
                t = by_config[r["config"]].get(case)
                by_config[r["config"]][case] = r["us"] if t is None else min(t, r["us"])
                if r["splits"] is None:
                    auto[r["config"]][case] = r["us"]
        complete = {c: t for c, t in by_config.items() if len(t) == len(mine)}   # ran (correctly) on every case
        relative = {c: [t[case] / best[case] for case in mine] for c, t in complete.items()}
        scored = sorted((statistics.geometric_mean(ratios), c) for c, ratios in relative.items())
        defaults = {case: default_config(rows, case[1], case[2]) for case in mine}   # case = (M, N, K, scheme)
        default_times = {case: auto[d][case] for case, d in defaults.items() if case in auto.get(d, {})}
        default = "/".join(str(c) for c in sorted(set(defaults.values())))
        default = int(default) if default.isdigit() else default       # one configuration for every case, or "2/7"
        row = {"M": rows, "cases": len(mine)}
        if scored:
            mean, chosen = scored[0]
            row.update(chosen=chosen, chosen_geomean=mean, chosen_worst=max(relative[chosen]))
        if len(default_times) == len(mine):
            ratios = [default_times[c] / best[c] for c in mine]
            row.update(default=default, default_geomean=statistics.geometric_mean(ratios), default_worst=max(ratios))
        choices.append(row)
        for config, times in sorted(auto.items()):
            lags = [times[case] / by_config[config][case] for case in times]
            splits.append({"M": rows, "config": config, "auto_over_best_split_worst": max(lags),
                           "auto_keeps_up": max(lags) <= AUTO_SPLITS_SLACK})
    return choices, splits, failed


def stream_k_rows(gemm: list[dict]) -> list[dict]:
    """Per (M, configuration) with stream-K records (splits = 0): its time over the best forced split-K count's in
    each case where both passed their float64 check; geometric mean, best and worst over those cases.

    >>> rec = lambda n, splits, us: dict(N=n, K=4096, M=64, scheme="channel", config=2, splits=splits, us=us,
    ...                                  err_over_bound=0.5)
    >>> (row,) = stream_k_rows([rec(4096, 1, 10.0), rec(4096, 2, 8.0), rec(4096, 0, 12.0), rec(8192, 1, 20.0),
    ...                         rec(8192, 0, 15.0)])
    >>> row["M"], row["config"], row["cases"], row["best"], row["worst"], round(row["geomean"], 4)  # 12/8, 15/20
    (64, 2, 2, 0.75, 1.5, 1.0607)
    """
    split_best, stream = {}, {}
    for r in gemm:
        if not r["err_over_bound"] <= 1 or r["splits"] is None:
            continue
        case = (r["M"], r["config"], r["N"], r["K"], r["scheme"])
        if r["splits"] == 0:
            stream[case] = r["us"]
        else:
            split_best[case] = min(split_best.get(case, math.inf), r["us"])
    ratios = defaultdict(list)   # (M, config) -> stream-K / best split-K, per case
    for case, us in stream.items():
        if case in split_best:
            ratios[case[:2]].append(us / split_best[case])
    return [{"M": rows, "config": config, "cases": len(r), "geomean": statistics.geometric_mean(r), "best": min(r),
             "worst": max(r)} for (rows, config), r in sorted(ratios.items())]


def repack_choices(repack: list[dict]) -> tuple[list[dict], list[dict]]:
    """(variants with right bytes, fastest repack first, as multiples of a copy; variants with wrong bytes)."""
    good = [dict(variant=r["repack"], repack_over_copy=r["repack_us"] / r["copy_us"],
                 fused_over_copy=r["fused_us"] / r["copy_us"]) for r in repack if r["ok"]]
    return sorted(good, key=lambda r: r["repack_over_copy"]), [r for r in repack if not r["ok"]]


def markdown(choices, splits, failed, repack, wrong, stream_k=()) -> str:
    lines = ["# Configuration sweep: what wins", "",
             "Times relative to the best (configuration, split count) of each (shape, scheme) case; geometric mean "
             "and worst over the cases of that M.", "",
             "| M | cases | best configuration | its mean | its worst | today's (auto splits) | its mean | its worst |",
             "|---|---|---|---|---|---|---|---|"]
    for r in choices:
        lines.append(f"| {r['M']} | {r['cases']} | {r.get('chosen', '-')} | {r.get('chosen_geomean', math.nan):.3f} | "
                     f"{r.get('chosen_worst', math.nan):.3f} | {r.get('default', '-')} | "
                     f"{r.get('default_geomean', math.nan):.3f} | {r.get('default_worst', math.nan):.3f} |")
    lines += ["", f"Automatic split count against the best forced one (keeps up: within {AUTO_SPLITS_SLACK - 1:.0%}):",
              "", "| M | configuration | auto / best split, worst case | keeps up |", "|---|---|---|---|"]
    lines += [f"| {r['M']} | {r['config']} | {r['auto_over_best_split_worst']:.3f} | "
              f"{'yes' if r['auto_keeps_up'] else 'no'} |" for r in splits]
    if stream_k:
        lines += ["", "Stream-K (splits = 0) over the best split-K count of the same configuration:", "",
                  "| M | configuration | cases | geometric mean | best | worst |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['M']} | {r['config']} | {r['cases']} | {r['geomean']:.2f} | {r['best']:.2f} | "
                  f"{r['worst']:.2f} |" for r in stream_k]
    lines += ["", "Repack of 8192 x 8192 (x a device copy), fastest first:", "",
              "| variant (tiles, blocks/SM, k-fastest, wide store) | repack | fused checkpoint |", "|---|---|---|"]
    lines += [f"| {r['variant']} | {r['repack_over_copy']:.2f} | {r['fused_over_copy']:.2f} |" for r in repack]
    if repack:
        fused = min(repack, key=lambda r: r["fused_over_copy"])
        lines += ["", f"Fastest fused checkpoint path: {fused['variant']} ({fused['fused_over_copy']:.2f}x)."]
    if failed or wrong:
        failed_configs = ", ".join(f"c{c}" for c in sorted({r["config"] for r in failed})) or "-"
        wrong_variants = ", ".join(r["repack"] for r in wrong) or "-"
        lines += ["", f"Never chosen: {len(failed)} GEMM cases failed their float64 check (configurations "
                      f"{failed_configs}); {len(wrong)} repack variants wrote wrong bytes ({wrong_variants})."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep", help="the JSON bench/probe_gpu.py sweep wrote (SWEEP_OUT)")
    parser.add_argument("--out", default=None, help="also write picks.json and picks.md here")
    args = parser.parse_args(argv)
    try:
        records = json.loads(Path(args.sweep).read_text())
        gemm, repack = split_records(records)
    except (OSError, ValueError) as exc:
        parser.error(f"{args.sweep}: {str(exc).splitlines()[0]}")
    choices, splits, failed = gemm_choices(gemm)
    ranked, wrong = repack_choices(repack)
    stream_k = stream_k_rows(gemm)
    md = markdown(choices, splits, failed, ranked, wrong, stream_k)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "picks.json").write_text(json.dumps({"gemm": choices, "splits": splits, "stream_k": stream_k,
                                                    "repack": ranked,
                                                    "failed": failed, "wrong_bytes": wrong}, indent=1) + "\n")
        (out / "picks.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
