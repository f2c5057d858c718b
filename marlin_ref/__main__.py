"""`python -m marlin_ref`: the layout debugger (marlin_ref.debugger). NumPy only; torch only for .pt files.

    python -m marlin_ref locate --k 7 --n 5 [--size-n 64] [--num-bits 8] [--expert E --size-k K]
    python -m marlin_ref unrepack WEIGHT [--scales S] --size-k K --size-n N [--dtype bf16] [--out PATH]
    python -m marlin_ref show-tile [--num-bits 8] [--cell fragment|storage] [--k 0 1 2 8 9] [--n 0 1 8 16]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from marlin_ref.debugger import (SCALE_DTYPES, DebuggerError, check_output_path, check_sizes, describe_location,
                                 load_array, logical_scales, logical_weight, save_arrays)
from marlin_ref.layout import SUPPORTED_NUM_BITS, TILE_N, show_tile


def _locate(args) -> str:
    size_n = args.size_n if args.size_n is not None else TILE_N * (max(args.n, 0) // TILE_N + 1)
    return describe_location(args.k, args.n, size_n=size_n, num_bits=args.num_bits, expert=args.expert,
                             size_k=args.size_k)


def _unrepack(args) -> str:
    check_sizes(args.size_k, args.size_n)
    if args.out:
        check_output_path(args.out)                   # before any work: refuse a suffix we cannot write
    q = load_array(args.weight, args.key)
    weight = logical_weight(q, args.size_k, args.size_n, args.num_bits)
    lines = [f"weight: {args.weight} int32{list(q.shape)} -> logical {weight.dtype}{list(weight.shape)} "
             f"[K, N] (an act-order perm, if any, stays applied)"]
    arrays = {"weight": weight}
    if args.scales:
        s = load_array(args.scales, args.scales_key)
        scales = logical_scales(s, args.size_k, args.size_n, args.dtype)
        kind = "e8m0 decoded to float32" if scales.dtype == np.float32 else f"{scales.dtype}, exponent bias removed"
        lines.append(f"scales: {args.scales} {s.dtype}{list(s.shape)} -> logical {list(scales.shape)} ({kind})")
        arrays["scales"] = scales
    if args.out:
        written = save_arrays(args.out, arrays)
        note = " (.npy/.npz: fp8 as uint8 codes, bf16 as float32)" if written[0].suffix in (".npy", ".npz") else ""
        lines.append("wrote " + ", ".join(str(p) for p in written) + note)
    else:
        with np.printoptions(threshold=64, edgeitems=4, linewidth=120):
            lines.append("weight codes (uint8):\n" + str(weight.view(np.uint8) if weight.itemsize == 1 else weight))
    return "\n".join(lines)


def _show_tile(args) -> str:
    kwargs = {"cell": args.cell}
    if args.k:
        kwargs["k_rows"] = tuple(args.k)
    if args.n:
        kwargs["n_cols"] = tuple(args.n)
    return show_tile(args.num_bits, **kwargs)


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) instead of the usage block plus the error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="python -m marlin_ref", description="Marlin FP8 layout debugger (spec §2.3).")
    sub = p.add_subparsers(dest="command", required=True)

    loc = sub.add_parser("locate", help="where a logical (expert, k, n) lands and which lane reads it")
    loc.add_argument("--k", type=int, required=True)
    loc.add_argument("--n", type=int, required=True)
    loc.add_argument("--size-n", type=int, default=None, help="N of the weight (default: the 64-column tile holding n)")
    loc.add_argument("--size-k", type=int, default=None, help="K of one expert (needed with --expert)")
    loc.add_argument("--expert", type=int, default=None)
    loc.add_argument("--num-bits", type=int, choices=SUPPORTED_NUM_BITS, default=8)
    loc.set_defaults(run=_locate)

    un = sub.add_parser("unrepack", help="a saved Marlin weight (and scales) back to logical [K, N]")
    un.add_argument("weight", help=".npy, .npz, .pt or .safetensors holding int32 [(E,) K/16, 4N]")
    un.add_argument("--scales", default=None, help="the kernel scales [(E,) G, N] (fp16/bf16 fused, or e8m0)")
    un.add_argument("--size-k", type=int, required=True)
    un.add_argument("--size-n", type=int, required=True)
    un.add_argument("--num-bits", type=int, choices=SUPPORTED_NUM_BITS, default=8)
    un.add_argument("--dtype", choices=sorted(SCALE_DTYPES), default=None,
                    help="how to read the scales (needed for raw 2-byte .npy, i.e. bf16)")
    un.add_argument("--key", default=None, help="tensor name inside a .npz/.pt/.safetensors weight file")
    un.add_argument("--scales-key", default=None, help="tensor name inside the scales file")
    un.add_argument("--out", default=None, help="write weight (and scales) to .npz, .npy, .pt or .safetensors")
    un.set_defaults(run=_unrepack)

    tile = sub.add_parser("show-tile", help="the lane:register map of a 16x64 tile")
    tile.add_argument("--num-bits", type=int, choices=SUPPORTED_NUM_BITS, default=8)
    tile.add_argument("--cell", choices=("fragment", "storage"), default="fragment")
    tile.add_argument("--k", type=int, nargs="*", help="rows to show (0..15)")
    tile.add_argument("--n", type=int, nargs="*", help="columns to show (0..63)")
    tile.set_defaults(run=_show_tile)
    return p


def main(argv=None) -> int:
    """Exit 0 with the answer on stdout, or 2 with exactly one line on stderr (bad options or files)."""
    args = parser().parse_args(argv)
    try:
        print(args.run(args))
    except (DebuggerError, ValueError, TypeError, OSError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = f" {exc.filename}:" if isinstance(exc, OSError) and exc.filename else ""
        print(f"python -m marlin_ref {args.command}:{where} {' '.join(detail.split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
