"""Shape classes: the kinds of case where real Marlin bugs live, named, tagged on every case, and guaranteed a share.

A law can exist and still never meet the shape that shows a bug: block scales whose last block column is partial
*and* that have two block columns or more (the truncation of vLLM's block scales), a weight with N == K (vLLM #44110),
a K or N that the pipeline pads. Each class here says which cells it concerns (`applies(cell)`) and which cases fall
in it (`holds(case)`); `properties.laws.run_counted` tags every checked case with its classes (`hypothesis.event`,
seen with --hypothesis-show-statistics) and the compliance report lists, per cell, the classes its examples reached.
tests/meta/test_shape_classes.py fails when a class falls under MIN_SHARE of a cell's examples under the ci profile.

    >>> case = {"scheme": "block", "size_k": 256, "size_n": 200, "block_n": 128}
    >>> classes_of(Cell("prepare_fp8_layer_for_marlin", "block", "bfloat16"), case)
    ['ragged block, 2+ block columns', 'block + tile padding']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from properties.seam.capabilities import Cell

MIN_SHARE = 0.05          # each class in at least 5% of the examples of every cell it concerns
TILE_N, WIDE_K = 64, 128  # the kernel's N tile and K multiple (§2.11): smaller or unaligned sizes are padded

DENSE_FP8 = frozenset({"prepare_fp8_layer_for_marlin", "convert_fp8_scales", "apply_fp8_marlin_linear"})
MOE_FP8 = frozenset({"prepare_fp8_moe_layer_for_marlin", "convert_fp8_moe_scales"})
MOE = MOE_FP8 | {"prepare_mxfp8_moe_layer_for_marlin"}
MX_CODES = frozenset({"mxfp8_marlin_process_scales", "mxfp8_marlin_unprocess_scales", "prepare_mxfp8_layer_for_marlin",
                      "prepare_mxfp8_moe_layer_for_marlin", "mxfp8_scales_to_float"})
PADDED = frozenset({"prepare_fp8_layer_for_marlin", "apply_fp8_marlin_linear", "prepare_mxfp8_layer_for_marlin",
                    "apply_mxfp8_marlin_linear"})


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _ragged_columns(n: int, block_n: int) -> bool:
    return n % block_n != 0 and _ceil(n, block_n) >= 2


def _moe_ragged(case: dict) -> bool:
    """An MoE block layer whose w2 (N = hidden) ends in a partial block column after two or more."""
    return case.get("scheme") == "block" and _ragged_columns(case["hidden"], case["block_n"])


@dataclass(frozen=True)
class ShapeClass:
    name: str
    why: str                                   # the bug it is there for
    applies: Callable[[Cell], bool]            # the cells whose examples must reach it
    holds: Callable[[dict], bool]              # the cases in it


CLASSES = (
    ShapeClass("ragged block, 2+ block columns",
               "block scales truncated to N at the wrong end, or not at all, once there are 2+ block columns",
               lambda cell: cell.scheme.startswith("block") and cell.op in DENSE_FP8 | MOE_FP8,
               lambda case: _moe_ragged(case) if "hidden" in case else
               case.get("scheme") == "block" and _ragged_columns(case["size_n"], case["block_n"])),
    ShapeClass("block + tile padding", "block scales expanded to N, then padded to the 64-column tile (§2.11)",
               lambda cell: cell.scheme == "block" and cell.op in DENSE_FP8,
               lambda case: case.get("scheme") == "block" and case["size_n"] % TILE_N != 0),
    ShapeClass("N == K", "a square weight left untransposed (vLLM #44110)",
               lambda cell: cell.op in {"pack_fp8_to_int32", "prepare_fp8_layer_for_marlin"} and cell.scheme != "block",
               lambda case: case.get("size_n") == case.get("size_k")),
    ShapeClass("K padded", "the K padding of the prepared weight and of the activations (§2.11)",
               lambda cell: cell.op in PADDED and cell.scheme != "block",
               lambda case: "size_k" in case and case["size_k"] % WIDE_K != 0),
    ShapeClass("N padded", "the N padding of the weight, scales and bias, and the output's N slice (§2.11, §2.13)",
               lambda cell: cell.op in PADDED and cell.scheme != "block",
               lambda case: "size_n" in case and case["size_n"] % TILE_N != 0),
    ShapeClass("unequal shard widths", "per-shard scales that assume equal shards (§2.8)",
               lambda cell: cell.scheme == "shard_widths",
               lambda case: len(set(case.get("logical_widths") or [])) > 1),
    ShapeClass("several experts", "experts shifted, or one expert's data for all (§5)",
               lambda cell: cell.op in MOE, lambda case: case.get("experts", 1) >= 2),
    ShapeClass("act-order perm", "the perm ignored or applied twice (§2.3.1)",
               lambda cell: cell.feature == "perm", lambda case: case.get("perm") in ("random", "reverse")),
    ShapeClass("every e8m0 boundary code", "byte 0 and 255, and the ends of the fp16 range (§2.10, §3.5)",
               lambda cell: cell.op in MX_CODES or (cell.op == "marlin_gemm" and cell.scheme == "mx"),
               # the MX builders plant every boundary code the grid can hold; a GEMM case only unless specials none
               lambda case: case.get("scheme") != "mx" or case.get("specials") != "none"),
    ShapeClass("M <= 8", "the kernel's M <= 8 branch (transposed MMA, §4.2)", lambda cell: cell.op == "marlin_gemm",
               lambda case: case.get("rows", 0) <= 8),
    ShapeClass("8 < M <= 16", "one 16-row tile, beyond the M <= 8 branch (§4.2)", lambda cell: cell.op == "marlin_gemm",
               lambda case: 8 < case.get("rows", 0) <= 16),
    ShapeClass("M > 16", "several 16-row tiles (§4.2)", lambda cell: cell.op == "marlin_gemm",
               lambda case: case.get("rows", 0) > 16),
)
BY_NAME = {c.name: c for c in CLASSES}


def classes_of(cell: Cell, case: dict) -> list[str]:
    """The names of the classes that concern `cell` and that `case` falls in, in CLASSES' order."""
    return [c.name for c in CLASSES if c.applies(cell) and c.holds(case)]


def classes_for(cell: Cell) -> list[str]:
    """The classes whose share a cell's examples must reach."""
    return [c.name for c in CLASSES if c.applies(cell)]
