"""The compliance report's cells: which (operation, scale scheme, dtype, feature) one law check exercised.

`properties.laws.check` calls `note_cell(backend, row, case, outcome)` once per check, with
outcome "passed", "failed" or "not provided". While the compliance plugin (properties.reporting.compliance)
records a test, the call counts into that test's tally; outside a recording it does nothing, so
`python -m properties.laws` and plain library use pay nothing. Only checks on the backend under test
are counted (a meta test that calls a law on a planted mutant is not that backend's verdict).

A case is a small JSON dict (properties.cases.strategies); `cell_of` reads its axes from the case fields:

    scheme   the checkpoint scale scheme ("channel", "tensor", "shard_equal", "shard_widths", "block";
             MoE: "w13/w2" when they differ), "mx" for the MXFP8 e8m0 path, "channel" / "group=<g>"
             for the scale permutation and padding helpers, "-" where no scale is involved (the layouts)
    dtype    the activation dtype (orig_dtype), the MX intermediate dtype, the scale or bias dtype,
             "<b>-bit" for the repack, the weight's carrier for the pack, "-" for the padding helpers
    feature  "bias" for a layer or GEMM case with a bias, "perm" for a repack with an act-order perm, else "-"

    >>> cell_of("prepare_fp8_moe_layer_for_marlin", {"scheme": "channel", "w2_scheme": "tensor",
    ...                                                "orig_dtype": "bfloat16", "bias": True})
    Cell(op='prepare_fp8_moe_layer_for_marlin', scheme='channel/tensor', dtype='bfloat16', feature='bias')
    >>> cell_of("convert_fp8_moe_scales", {"scheme": "channel", "w2_scheme": "tensor", "orig_dtype": "float16",
    ...                                    "bias": True}, transform="convert_fp8_moe_scales[w2]")[1:]
    ('tensor', 'float16', '-')
    >>> cell_of("marlin_permute_scales", {"group_size": 64, "dtype": "float32"})[1:]
    ('group=64', 'float32', '-')
    >>> cell_of("gptq_marlin_repack", {"num_bits": 4, "perm": "reverse"})[1:], cell_of("pack_fp8_to_int32", {"codes": "uint8"})[1:]
    (('-', '4-bit', 'perm'), ('-', 'uint8', '-'))
"""

from __future__ import annotations

import contextlib
from collections import Counter

from properties.seam.capabilities import NO_AXIS, Cell

# operations whose cases may carry a bias the operation itself applies (the "bias" feature)
BIAS_OPS = frozenset({"prepare_fp8_layer_for_marlin", "prepare_fp8_moe_layer_for_marlin",
                      "prepare_mxfp8_layer_for_marlin", "marlin_gemm", "marlin_moe_gemm", "apply_fp8_marlin_linear",
                      "apply_mxfp8_marlin_linear"})
ACT_ORDER_PERMS = ("random", "reverse")     # strategies.ACT_ORDER_PERMS: a perm that reorders rows
OUTCOMES = ("passed", "failed", "not provided")
# the carrier of a pack case's fp8 weight (strategies.pack_cases "codes") as a dtype name
_PACK_DTYPES = {"fp8": "float8_e4m3fn", "uint8": "uint8"}


def _group(case: dict) -> str:
    """"channel", "group=<g>", or "group=K" for a scale grid of one group spanning K (any K: the channel-wise
    permutation, §2.4)."""
    if case["group_size"] == -1:
        return "channel"
    if case.get("groups") == 1 and case["group_size"] == case.get("size_k"):
        return "group=K"
    return f"group={case['group_size']}"


def cell_of(op: str, case: dict, *, transform: str | None = None) -> Cell:
    """The Cell of one case of `op` (see the module docstring); `transform` is the registry row name, which
    tells the w13 and w2 rows of the MoE scale conversion apart."""
    if "scheme" in case:
        w13, w2 = case["scheme"], case.get("w2_scheme")
        if transform is not None and transform.endswith("[w2]"):
            scheme = w2
        elif w2 in (None, w13) or (transform is not None and transform.endswith("[w13]")):
            scheme = w13
        else:
            scheme = f"{w13}/{w2}"      # an MoE layer: w13's scheme / w2's scheme
    elif "mxfp8" in op:
        scheme = "mx"
    elif "group_size" in case:
        scheme = _group(case)
    else:
        scheme = NO_AXIS
    if op == "unpack_fp8_from_int32":
        dtype = "int32"
    elif "codes" in case and op == "pack_fp8_to_int32":
        dtype = _PACK_DTYPES.get(case["codes"], case["codes"])
    elif "num_bits" in case:
        dtype = f"{case['num_bits']}-bit"
    else:
        dtype = case.get("orig_dtype") or case.get("intermediate_dtype") or case.get("dtype") or NO_AXIS
    if op in BIAS_OPS:
        feature = "bias" if case.get("bias") else NO_AXIS
    elif op == "gptq_marlin_repack":
        feature = "perm" if case.get("perm") in ACT_ORDER_PERMS else NO_AXIS
    else:
        feature = NO_AXIS
    return Cell(op, str(scheme), str(dtype), feature)


class Tally:
    """One test's checks: {Cell: Counter(outcome -> checks)}, and whether the test is a Hypothesis test (then
    each check is one example)."""

    def __init__(self, backend: str, *, hypothesis: bool):
        self.backend, self.hypothesis = backend, hypothesis
        self.cells: dict[Cell, Counter] = {}
        self.classes: dict[Cell, Counter] = {}      # shape classes reached (properties.cases.shape_classes)

    def add(self, cell: Cell, outcome: str, classes=()) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"Tally.add: outcome={outcome!r} must be one of {OUTCOMES}")
        cell = Cell(*cell)
        self.cells.setdefault(cell, Counter())[outcome] += 1
        self.classes.setdefault(cell, Counter()).update(classes)


_ACTIVE: list[Tally | None] = [None]   # the tally of the running test (the compliance plugin sets it)


def start(tally: Tally | None) -> None:
    """Count the following checks into `tally` (None: stop counting)."""
    _ACTIVE[0] = tally


@contextlib.contextmanager
def recording(tally: Tally | None):
    """Count into `tally` inside the block, then go back to the recording that was active."""
    previous = _ACTIVE[0]
    start(tally)
    try:
        yield tally
    finally:
        start(previous)


def note_cell(backend: str, row, case: dict, outcome: str, classes=()) -> None:
    """Count one law check on `row` (a properties.cases.transforms.Transform) with `case` on the backend
    named `backend`, and the shape classes it reached; a no-op unless a recording for that backend is active."""
    tally = _ACTIVE[0]
    if tally is None or backend != tally.backend:
        return
    tally.add(cell_of(row.op, case, transform=row.name), outcome, classes)
