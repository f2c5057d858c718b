"""Failure reports: which bytes differ, and where they sit in both layouts (style habit 13).

A `Layout` turns a byte offset of a compared array into words: for a Marlin weight the expert, the
Marlin row/word/byte and the lane/register/half that loads it, and the logical (k, n) with its k-tile
and n-tile (through `marlin_ref.layout.locate`); for scales the group, the column, the position in its
chunk and the lanes that read it (`marlin_ref.layout.locate_scale`). `assert_bit_exact` compares bytes
(never values: -0 != +0 and NaN payloads count) and raises an AssertionError that says how many bytes
differ and shows the first few with got/want in hex. The one-line reproduction is added by the laws
(`properties.laws.check`) with `exc.add_note`.

    >>> import numpy as np
    >>> assert_bit_exact(np.zeros(2, np.float16), np.array([0.0, -0.0], np.float16), where="demo")
    Traceback (most recent call last):
    ...
    AssertionError: demo: 1 of 4 bytes differ (1 of 2 elements; float16, shape (2,))
      byte 3: got 0x00, want 0x80 in element [1] (got 0x0000, want 0x8000)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from marlin_ref.layout import TILE_K, TILE_N, TILE_SLOTS, locate, locate_scale, pack_factor

SHOWN = 4   # differing bytes listed in a message


@functools.lru_cache(maxsize=None)
def _tile_inverse(num_bits: int) -> np.ndarray:
    """slot offset inside a 16x64 tile block -> (k, n) inside the tile, tabulated from locate()."""
    inverse = np.zeros((TILE_SLOTS, 2), np.int64)
    for k in range(TILE_K):
        for n in range(TILE_N):
            inverse[locate(k, n, size_n=TILE_N, num_bits=num_bits).byte_offset] = (k, n)
    return inverse


@functools.lru_cache(maxsize=None)
def _scale_inverse(grouped: bool, mx: bool) -> np.ndarray:
    """position inside a 64-column chunk -> logical column, tabulated from locate_scale()."""
    inverse = np.zeros(TILE_N, np.int64)
    for c in range(TILE_N):
        inverse[locate_scale(c, grouped=grouped, mx=mx).position] = c
    return inverse


def _index(shape: tuple, flat: int) -> str:
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(flat, shape)) + "]" if shape else "[]"


@dataclass(frozen=True)
class Layout:
    """Plain array: element index only. Subclasses add the Marlin meaning of a position."""

    def describe(self, shape: tuple, itemsize: int, offset: int) -> str:
        return f"element {_index(shape, offset // itemsize)}"


@dataclass(frozen=True)
class MarlinWeight(Layout):
    """int32 [(E,) K/16, 16N/pf] Marlin words (§2.3.1); size_k/size_n may include padding past the
    logical valid_k/valid_n."""

    size_k: int
    size_n: int
    num_bits: int = 8
    valid_k: int | None = None
    valid_n: int | None = None
    experts: bool = False

    def _where(self, slot: int) -> str:
        per_expert = self.size_k * self.size_n
        expert, slot = divmod(slot, per_expert)
        kt, rest = divmod(slot, TILE_K * self.size_n)
        nt, in_tile = divmod(rest, TILE_SLOTS)
        kl, nl = _tile_inverse(self.num_bits)[in_tile]
        k, n = TILE_K * kt + int(kl), TILE_N * nt + int(nl)
        loc = locate(k, n, size_n=self.size_n, num_bits=self.num_bits)
        unit = "byte" if self.num_bits == 8 else "nibble"
        pad = " (padding)" if k >= (self.valid_k or self.size_k) or n >= (self.valid_n or self.size_n) else ""
        head = f"expert {expert}, " if self.experts else ""
        return (f"{head}Marlin row {loc.row} word {loc.word} {unit} {loc.slot} "
                f"(lane {loc.lane}, register {loc.register}, half {loc.half}, block {loc.block_j}, "
                f"n8 {loc.n8_half}) <- W[k={k}, n={n}]{pad} (k-tile {loc.k_tile}, n-tile {loc.n_tile}, "
                f"GPTQ word [{k // pack_factor(self.num_bits)}, {n}] {unit} {k % pack_factor(self.num_bits)})")

    def describe(self, shape: tuple, itemsize: int, offset: int) -> str:
        if self.num_bits == 8:
            return self._where(offset)
        return f"nibble {2 * offset}: {self._where(2 * offset)}; nibble {2 * offset + 1}: {self._where(2 * offset + 1)}"


@dataclass(frozen=True)
class GptqWords(Layout):
    """int32 GPTQ-packed words: [K/pf, N], or [N, K/pf] when transposed (pack with size_k_first=False)."""

    num_bits: int = 8
    transposed: bool = False

    def describe(self, shape: tuple, itemsize: int, offset: int) -> str:
        pf = pack_factor(self.num_bits)
        word, byte = divmod(offset, itemsize)
        row, col = np.unravel_index(word, shape[-2:])
        r, n = (col, row) if self.transposed else (row, col)
        slots = f"k={pf * r + 2 * byte}, {pf * r + 2 * byte + 1}" if self.num_bits == 4 else f"k={pf * r + byte}"
        return f"word [{row}, {col}] byte {byte} <- W[{slots}, n={n}]"


@dataclass(frozen=True)
class Scales(Layout):
    """[(E,) G, N] scales after marlin_permute_scales (grouped or single) and, with mx, the [0,2,1,3]
    reorder of mxfp8_marlin_process_scales (§2.4, §2.7); also the bias (single, any leading dims)."""

    grouped: bool
    mx: bool = False
    kind: str = "scale"

    def describe(self, shape: tuple, itemsize: int, offset: int) -> str:
        element = offset // itemsize
        size_n = shape[-1] if shape else 1
        row, position = divmod(element, size_n)
        chunk, p = divmod(position, TILE_N)
        column = TILE_N * chunk + int(_scale_inverse(self.grouped, self.mx)[p])
        loc = locate_scale(column, grouped=self.grouped, mx=self.mx)
        lead = _index(shape[:-1], row) if len(shape) > 1 else "[]"
        perm = ("grouped + [0,2,1,3]" if self.mx else "grouped") if self.grouped else "single"
        lanes = f"lanes {loc.lanes[0]}..{loc.lanes[-1]} step {loc.lanes[1] - loc.lanes[0]}"
        return (f"{self.kind} {lead} (group/expert) position {position} = chunk {chunk} position {p} "
                f"<- column {column} ({perm} permutation; {lanes})")


@dataclass(frozen=True)
class Quads(Layout):
    """[G, N] e8m0 scales after mxfp8_marlin_process_scales: each run of 4 reordered [0, 2, 1, 3] (§2.7)."""

    def describe(self, shape: tuple, itemsize: int, offset: int) -> str:
        element = offset // itemsize
        quad, p = divmod(element, 4)
        source = 4 * quad + (0, 2, 1, 3)[p]              # the reorder is an involution
        return f"element {_index(shape, element)} <-> {_index(shape, source)} ([0,2,1,3] within each 4)"


def _hex(a: np.ndarray, flat: int) -> str:
    raw = a.reshape(-1)[flat:flat + 1].tobytes()
    return f"0x{int.from_bytes(raw, 'little'):0{2 * len(raw)}x}"


def _bytes(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)   # ascontiguousarray: 0-d becomes [1]


def _canonical_nans(a: np.ndarray) -> np.ndarray:
    """A copy with every NaN replaced by the dtype's default NaN (payload and sign dropped)."""
    if a.dtype.kind != "f" and a.dtype.name not in ("bfloat16", "float8_e4m3fn", "float8_e8m0fnu"):
        return a
    with np.errstate(invalid="ignore"):
        nan = np.isnan(a.astype(np.float32))
    return np.where(nan, np.array(np.nan, a.dtype), a).astype(a.dtype) if nan.any() else a


def value_mismatches(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """The indices [count, ndim] where got != want as values (NaN matches NaN, +0 matches -0): the one-hot laws.

    >>> value_mismatches(np.array([1.0, np.nan, 0.0]), np.array([1.0, np.nan, -0.0])).tolist()
    []
    >>> value_mismatches(np.array([[1.0, 2.0]]), np.array([[1.0, np.nan]])).tolist()
    [[0, 1]]
    """
    return np.argwhere(~((got == want) | (np.isnan(got) & np.isnan(want))))


def assert_values_equal(got: np.ndarray, want: np.ndarray, *, where: str, what: str, locate) -> None:
    """got == want as values (value_mismatches), else an AssertionError naming the first SHOWN outputs that differ:
    "{where}: 3 of 64 {what}: {locate(i, j)}: got x, want y; ...". `locate(i, j)` says what output [i, j] is.

    >>> assert_values_equal(np.array([[1.0, 2.0]]), np.array([[1.0, 3.0]]), where="gemm", what="outputs differ",
    ...                     locate=lambda i, j: f"out[{i}, {j}]")
    Traceback (most recent call last):
    AssertionError: gemm: 1 of 2 outputs differ: out[0, 1]: got 2.0, want 3.0
    """
    __tracebackhide__ = True
    bad = value_mismatches(got, want)
    if len(bad):
        shown = "; ".join(f"{locate(i, j)}: got {float(got[i, j])!r}, want {float(want[i, j])!r}"
                          for i, j in bad[:SHOWN])
        raise AssertionError(f"{where}: {len(bad)} of {got.size} {what}: {shown}")


def assert_bit_exact(got, want, *, where: str, layout: Layout | None = None, nan_payloads: bool = True) -> None:
    """got and want are the same kind of value, and arrays agree in dtype, shape and every byte.
    nan_payloads=False: a NaN must meet a NaN, but its payload and sign may differ (only for values
    decoded into floats, never for layouts: see properties.laws.NAN_PAYLOAD_FREE)."""
    __tracebackhide__ = True
    if not nan_payloads and isinstance(got, np.ndarray) and isinstance(want, np.ndarray) and got.dtype == want.dtype:
        got, want = _canonical_nans(got), _canonical_nans(want)
    if not isinstance(want, np.ndarray):
        if type(got) is not type(want) and not (_is_int(got) and _is_int(want)) or got != want:
            raise AssertionError(f"{where}: got {got!r} ({type(got).__name__}), want {want!r} ({type(want).__name__})")
        return
    if not isinstance(got, np.ndarray):
        raise AssertionError(f"{where}: got {type(got).__name__}, want a numpy array {want.dtype}{list(want.shape)}")
    if got.dtype != want.dtype or got.shape != want.shape:
        raise AssertionError(f"{where}: got {got.dtype}{list(got.shape)}, want {want.dtype}{list(want.shape)}")
    got_b, want_b = _bytes(got), _bytes(want)
    diff = np.flatnonzero(got_b != want_b)
    if diff.size == 0:
        return
    itemsize = want.dtype.itemsize
    elements = np.unique(diff // itemsize)
    lines = [f"{where}: {diff.size} of {want_b.size} bytes differ ({elements.size} of {want.size} elements; "
             f"{want.dtype}, shape {tuple(want.shape)})"]
    layout = layout or Layout()
    for offset in diff[:SHOWN]:
        element = int(offset) // itemsize
        lines.append(f"  byte {offset}: got 0x{got_b[offset]:02x}, want 0x{want_b[offset]:02x} in "
                     f"{layout.describe(tuple(want.shape), itemsize, int(offset))}"
                     + (f" (got {_hex(got, element)}, want {_hex(want, element)})" if itemsize > 1
                        or type(layout) is Layout else ""))
    if diff.size > SHOWN:
        lines.append(f"  ... and {diff.size - SHOWN} more bytes")
    raise AssertionError("\n".join(lines))


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def assert_fields_bit_exact(got, want, *, where: str, layouts: dict) -> None:
    """Two NamedTuples (MarlinLayer, MarlinMoeLayer) agree field by field; layouts: field -> Layout."""
    __tracebackhide__ = True
    got_fields, want_fields = getattr(got, "_fields", None), getattr(want, "_fields", None)
    if got_fields != want_fields:
        raise AssertionError(f"{where}: got a {type(got).__name__} with fields {got_fields}, "
                             f"want {type(want).__name__} fields {want_fields}")
    for name in want_fields:
        assert_bit_exact(getattr(got, name), getattr(want, name), where=f"{where}.{name}",
                         layout=layouts.get(name))


def repro_command(law: str, transform: str, case: dict, backend: str, loads=None) -> str:
    """One shell line that replays a law on one case without Hypothesis (run from the repo root); `loads`:
    what to load first (default: what this process loaded, properties.seam.loading)."""
    import json

    from properties.seam.loading import load_arguments

    return (f"python -m properties.laws {law} '{transform}' '{json.dumps(case, separators=(',', ':'))}' "
            f"--backend '{backend}'{load_arguments(loads)}")
