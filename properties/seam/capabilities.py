"""Capabilities: what a backend provides of each operation, cell by cell, and the limits it enforces.

A *cell* is one (operation, scale scheme, dtype, feature) of the contract: the unit the compliance report gives a
verdict on, and the unit the laws are parametrized over, so each provided cell gets its own example budget and an
unprovided one is "not provided" without drawing a single example.

    scheme    the scale scheme a case exercises ("channel", "group128", "mx", "block", "group=64", ...; "-" none)
    dtype     the activation / scale / carrier dtype ("float16", "bfloat16", "8-bit", ...)
    feature   an optional part of the contract a kernel may lack: "bias" (added by the op itself), "perm"
              (act-order rows in the repack); "-" when the case uses none

A `Capability` says which values of each axis a backend accepts for one operation (None: every value the contract
has) and its `limits`: the largest sizes it takes ("max_size_k", "max_size_n", "max_rows", "max_experts") and the
fewest rows ("min_rows": 1 for a kernel that rejects an empty batch, as vLLM's Marlin does). A case outside them
is never sent to the implementation (a kernel library may abort the process on what it rejects).
Adapters derive capabilities from what they detect (e.g. the 2025 snapshot's schema has no bias argument and no
e8m0 scale type); a `module:attribute` backend declares its own with an attribute

    MARLIN_CAPABILITIES = {"marlin_gemm": {"schemes": ["channel", "group128"], "dtypes": ["float16", "bfloat16"],
                                           "features": [], "limits": {"max_size_n": 8192},
                                           "why": "no MXFP8 and no in-kernel bias in this build"}}

    >>> gemm = Capability(schemes=frozenset({"channel", "group128"}), features=frozenset(), why="2025 snapshot")
    >>> gemm.gap(Cell("marlin_gemm", "mx", "bfloat16")), gemm.gap(Cell("marlin_gemm", "channel", "float16", "bias"))
    ("scheme 'mx' is not provided (2025 snapshot)", "feature 'bias' is not provided (2025 snapshot)")
    >>> gemm.gap(Cell("marlin_gemm", "group128", "bfloat16")) is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

NO_AXIS = "-"
FEATURES = ("bias", "perm")
LIMIT_KEYS = ("max_size_k", "max_size_n", "max_rows", "max_experts", "min_rows")
_AXES = ("schemes", "dtypes", "features")


class Cell(NamedTuple):
    """One cell of the contract: (operation, scale scheme, dtype, feature)."""

    op: str
    scheme: str = NO_AXIS
    dtype: str = NO_AXIS
    feature: str = NO_AXIS

    def label(self) -> str:
        """The pytest id of a cell (without its operation)."""
        return "-".join(v for v in (self.scheme, self.dtype, self.feature) if v != NO_AXIS) or "any"


@dataclass(frozen=True)
class Capability:
    """What a backend provides of one operation: accepted schemes, dtypes and features (None: all), limits."""

    schemes: frozenset[str] | None = None
    dtypes: frozenset[str] | None = None
    features: frozenset[str] | None = None
    limits: Mapping[str, int] = field(default_factory=dict)
    why: str = ""                     # the reason for what is left out (shown in the "not provided" verdict)

    def gap(self, cell: Cell) -> str | None:
        """Why `cell` is not provided, or None."""
        for axis, value in (("scheme", cell.scheme), ("dtype", cell.dtype)):
            accepted = getattr(self, f"{axis}s")
            if accepted is not None and value not in accepted:
                return f"{axis} {value!r} is not provided{self._because()}"
        if cell.feature != NO_AXIS and self.features is not None and cell.feature not in self.features:
            return f"feature {cell.feature!r} is not provided{self._because()}"
        return None

    def admits(self, **sizes: int) -> bool:
        """Whether sizes (size_k=, size_n=, rows=, experts=) are within the limits.

        >>> Capability(limits={"max_size_n": 4096}).admits(size_n=8192, size_k=128)
        False
        >>> Capability(limits={"min_rows": 1}).admits(rows=0), Capability(limits={"min_rows": 1}).admits(rows=1)
        (False, True)
        """
        def within(key: str, bound: int) -> bool:
            bound_is, size = key.split("_", 1)                    # "max" / "min", the size it bounds
            return sizes.get(size) is None or (sizes[size] <= bound if bound_is == "max" else sizes[size] >= bound)
        return all(within(key, bound) for key, bound in self.limits.items())

    def _because(self) -> str:
        return f" ({self.why})" if self.why else ""


EVERYTHING = Capability()


def from_declaration(op: str, declared: Any, where: str) -> Capability:
    """A Capability from a user's MARLIN_CAPABILITIES entry (a dict); ValueError/TypeError naming what is wrong."""
    if isinstance(declared, Capability):
        return declared
    if not isinstance(declared, Mapping):
        raise TypeError(f"{where}: MARLIN_CAPABILITIES[{op!r}] must be a dict, got {type(declared).__name__}")
    unknown = sorted(set(declared) - {*_AXES, "limits", "why"})
    if unknown:
        raise ValueError(f"{where}: MARLIN_CAPABILITIES[{op!r}] has unknown keys {unknown}; "
                         f"known: {[*_AXES, 'limits', 'why']}")
    values = {}
    for axis in _AXES:
        given = declared.get(axis)
        if given is not None and (isinstance(given, str) or not all(isinstance(v, str) for v in given)):
            raise TypeError(f"{where}: MARLIN_CAPABILITIES[{op!r}][{axis!r}] must be a list of names, got {given!r}")
        values[axis] = None if given is None else frozenset(given)
    if values["features"] is not None and not values["features"] <= set(FEATURES):
        raise ValueError(f"{where}: MARLIN_CAPABILITIES[{op!r}]['features'] must be among {list(FEATURES)}, "
                         f"got {sorted(values['features'])}")
    limits = dict(declared.get("limits") or {})
    bad = {k: v for k, v in limits.items()
           if k not in LIMIT_KEYS or isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad:
        raise ValueError(f"{where}: MARLIN_CAPABILITIES[{op!r}]['limits'] must map {list(LIMIT_KEYS)} to positive "
                         f"integers, got {bad}")
    return Capability(**values, limits=limits, why=str(declared.get("why", "")))
