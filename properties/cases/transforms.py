"""TRANSFORMS: one registry row per operation under test, so each law is one parametrized test body.

A row names the operation, the strategy of its cases (`properties.cases.strategies`), how a case becomes the
operation's keyword arguments (`build`, deterministic: `np.random.default_rng(seed)`), its inverse (if
any) and what the inverse must give back (`restore`), and the layouts a failure report speaks in.

    >>> row = by_name("gptq_marlin_repack[8bit]")
    >>> kwargs = row.build({"size_k": 16, "size_n": 64, "num_bits": 8, "perm": "none", "seed": 0,
    ...                     "specials": "none", "plants": []})
    >>> kwargs["b_q_weight"].shape, kwargs["b_q_weight"].dtype, row.inverse
    ((4, 64), dtype('int32'), 'gptq_marlin_unrepack')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

from marlin_ref.layout import MX_BLOCK, pack_factor
from properties.cases import strategies as S
from properties.reporting import report
from properties.seam.capabilities import NO_AXIS, Cell

E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)
DTYPES = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16),
          "float32": np.dtype(np.float32)}
# (exponent bias, explicit mantissa bits) of the 16-bit dtypes, to enumerate their codes
_CODE_FIELDS = {"float16": (15, 10), "bfloat16": (127, 7)}
SPECIAL_DENSITY = {"none": 0.0, "some": 1 / 16, "many": 1 / 2}
SCALE_EXPONENTS = (-12, 4)       # distinct scales in [2^-12, 2^5): realistic, finite once fused (§2.6)
BIAS_EXPONENTS = (-8, 4)
EXPONENT_BIAS = {"float16": 8, "bfloat16": 120}   # β of §2.6


# --- content from a case ----------------------------------------------------------------------

def rng_for(case: dict, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([case.get("seed", 0), salt])


def fp8_codes(case: dict, shape: tuple, salt: int = 0) -> np.ndarray:
    """uint8 [shape]: random bytes, special codes at the case's density, then the planted codes."""
    rng, size = rng_for(case, salt), math.prod(shape)
    codes = rng.integers(0, 256, size, dtype=np.uint8)
    mask = rng.random(size) < SPECIAL_DENSITY[case.get("specials", "none")]
    codes[mask] = rng.choice(np.array(S.FP8_SPECIAL_CODES, np.uint8), int(mask.sum()))
    for index, code in case.get("plants", []):
        codes[index % size] = code
    return codes.reshape(shape)


def distinct(rng: np.random.Generator, count: int, dtype: str, exponents=SCALE_EXPONENTS, *,
             signed: bool = False, shift: int = 0) -> np.ndarray:
    """`count` distinct values of dtype with |v| in [2^lo, 2^(hi+1)) * 2^shift; the window grows down
    by whole binades when count needs more codes (bf16 has 128 per binade), so values never repeat."""
    lo, hi = exponents[0] + shift, exponents[1] + shift
    if dtype == "float32":
        values = np.ldexp(1 + rng.random(count), rng.integers(lo, hi + 1, count)).astype(np.float32)
    else:
        bias, mant = _CODE_FIELDS[dtype]
        lo = min(lo, hi + 1 - -(-count // (1 << mant)))
        window = np.arange((lo + bias) << mant, (hi + bias + 1) << mant, dtype=np.uint16)
        picks = rng.permutation(window)[:count]
        values = picks.view(np.float16 if dtype == "float16" else ml_dtypes.bfloat16)
    if signed:
        values = np.where(rng.random(count) < 0.5, -values, values).astype(values.dtype)
    return values


def e8m0_codes(case: dict, shape: tuple, dtype: str, *, finite_only: bool = False, salt: int = 0) -> np.ndarray:
    """uint8 codes the float `dtype` can carry (§2.10), with every legal boundary code planted."""
    rng, size = rng_for(case, salt), math.prod(shape)
    lo, hi = S.E8M0_FP16_RANGE if dtype == "float16" else (0, 254 if finite_only else 255)
    codes = rng.integers(lo, hi + 1, size).astype(np.uint8)
    boundary = [c for c in S.E8M0_BOUNDARY_CODES if lo <= c <= hi]
    places = rng.permutation(size)[:len(boundary)]
    codes[places] = boundary[:len(places)]
    return codes.reshape(shape)


def gptq_pack(codes: np.ndarray, num_bits: int = 8) -> np.ndarray:
    """uint8 values [K, N] -> int32 [K/pf, N], value k at slot k mod pf of word k // pf (§2.1)."""
    pf = pack_factor(num_bits)
    slots = codes.astype(np.uint32).reshape(codes.shape[0] // pf, pf, codes.shape[1])   # [K/pf, pf, N]
    shifts = (num_bits * np.arange(pf, dtype=np.uint32)).reshape(1, pf, 1)
    return np.bitwise_or.reduce(slots << shifts, axis=1).view(np.int32)                  # [K/pf, N]


def gptq_unpack(words: np.ndarray, num_bits: int = 8) -> np.ndarray:
    """int32 [K/pf, N] -> uint8 values [K, N] (the inverse of gptq_pack)."""
    pf = pack_factor(num_bits)
    shifts = (num_bits * np.arange(pf, dtype=np.uint32)).reshape(1, pf, 1)
    slots = (words.view(np.uint32)[:, None, :] >> shifts) & ((1 << num_bits) - 1)        # [K/pf, pf, N]
    return slots.reshape(-1, words.shape[1]).astype(np.uint8)                            # [K, N]


def perm_for(case: dict) -> np.ndarray | None:
    k, kind = case["size_k"], case.get("perm", "none")
    if kind == "none":
        return None
    if kind == "empty":
        return np.empty(0, np.int32)
    if kind == "reverse":
        return np.arange(k, dtype=np.int32)[::-1].copy()
    return rng_for(case, 3).permutation(k).astype(np.int32)


# --- the registry row -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Transform:
    name: str                                    # pytest id
    op: str                                      # operation in properties.seam.backends.OPERATIONS
    family: str                                  # "layout", "scales", "helper", "prepare"
    cases: Callable[[], st.SearchStrategy]       # valid cases, shrinking to the smallest
    build: Callable[[dict], dict]                # case -> keyword arguments of op
    layout: Callable[[dict, Any], Any] = lambda case, want: report.Layout()  # (case, oracle output)
    inverse: str | None = None
    inverse_args: Callable[[dict, dict, Any], dict] | None = None   # (case, kwargs, output) -> kwargs
    restore: Callable[[dict, dict], Any] | None = None              # (case, kwargs) -> inverse's result
    roundtrip_cases: Callable[..., st.SearchStrategy] | None = None  # where the inverse is exact
    cells: tuple[Cell, ...] = ()                 # the contract's cells this row's cases fall in
    restrict: Callable[[Cell], dict] = lambda cell: {}   # cell -> keyword arguments of `cases` drawing only it

    def __str__(self) -> str:
        return self.name

    def cases_in(self, cell: Cell, *, roundtrip: bool = False, **variant) -> st.SearchStrategy:
        """The cases of one cell (and of a law's variant, e.g. aligned=True)."""
        if cell not in self.cells:
            raise ValueError(f"Transform.cases_in: {cell} is not a cell of {self.name} ({len(self.cells)} cells)")
        cases = self.roundtrip_cases if roundtrip and self.roundtrip_cases else self.cases
        return cases(**self.restrict(cell), **variant)


def _first(case, kwargs):
    return next(v for v in kwargs.values() if isinstance(v, np.ndarray))


# pack_fp8_to_int32 / unpack (§2.2)
def _pack(case):
    w = fp8_codes(case, (case["size_k"], case["size_n"]))                  # [K, N]
    w = w if case["size_k_first"] else np.ascontiguousarray(w.T)          # [K, N] or [N, K]
    return {"fp8": w.view(E4M3) if case["codes"] == "fp8" else w, "size_k_first": case["size_k_first"]}


def _unpack(case):
    k4, n = case["size_k"] // S.PACK_K, case["size_n"]
    shape = (k4, n) if case["size_k_first"] else (n, k4)
    return {"packed": rng_for(case).integers(-2**31, 2**31, shape, dtype=np.int64).astype(np.int32),
            "size_k_first": case["size_k_first"]}


# gptq_marlin_repack / unrepack (§2.3)
def _repack(case):
    k, n, bits = case["size_k"], case["size_n"], case["num_bits"]
    if bits == 8:
        words = gptq_pack(fp8_codes(case, (k, n)))
    else:
        words = gptq_pack(rng_for(case).integers(0, 16, (k, n)).astype(np.uint8), 4)
    return {"b_q_weight": words, "perm": perm_for(case), "size_k": k, "size_n": n, "num_bits": bits}


def _repack_restore(case, kwargs):
    perm = kwargs["perm"]
    if perm is None or perm.size == 0:
        return kwargs["b_q_weight"]
    bits = kwargs["num_bits"]
    return gptq_pack(gptq_unpack(kwargs["b_q_weight"], bits)[perm], bits)   # unrepack leaves perm applied


def _unrepack(case):
    k, n, bits = case["size_k"], case["size_n"], case["num_bits"]
    shape = (k // 16, 16 * n // pack_factor(bits))
    return {"marlin_q_weight": rng_for(case).integers(-2**31, 2**31, shape, dtype=np.int64).astype(np.int32),
            "size_k": k, "size_n": n, "num_bits": bits}


def _sizes(kwargs, *names):
    return {name: kwargs[name] for name in names}


def _weight_layout(case, want):
    return report.MarlinWeight(case["size_k"], case["size_n"], case["num_bits"])


# marlin_permute_scales / unpermute (§2.4)
def _scale_grid(case):
    s = distinct(rng_for(case), case["groups"] * case["size_n"], case["dtype"])
    s = s.reshape(case["groups"], case["size_n"])                          # [G, N]
    return {"s": s, "size_k": case["size_k"], "size_n": case["size_n"], "group_size": case["group_size"]}


def _grouped(case):
    return case["group_size"] != -1 and case["group_size"] < case["size_k"]


# marlin_permute_bias (§2.5), exponent bias (§2.6)
def _bias(case):
    return {"bias": distinct(rng_for(case), math.prod(case["shape"]), case["dtype"], BIAS_EXPONENTS,
                             signed=True).reshape(case["shape"])}


def _fused(case):
    rng, dtype, count = rng_for(case), case["dtype"], math.prod(case["shape"])
    shift = EXPONENT_BIAS[dtype] if case["fused"] else 0
    s = distinct(rng, count, dtype, shift=shift)
    if case["magnitudes"] == "extreme":  # overflow once fused (>= 256), subnormal, zero, negative
        lo = -24 if dtype == "float16" else -133
        odd = np.array([256.0, 300.0, 2.0 ** lo, 0.0, -0.0, -1.5, 255.875], np.float32)
        with np.errstate(over="ignore"):  # 256 * 2^8 overflows fp16 on purpose
            odd = (rng.choice(odd, count) * np.float32(2.0 ** shift)).astype(s.dtype)
        s = np.where(rng.random(count) < 0.5, odd, s).astype(s.dtype)
    return {"s": s.reshape(case["shape"])}


# MXFP8 scale processing (§2.7)
def _ms(case):
    codes = e8m0_codes(case, (case["groups"], case["size_n"]), case["dtype"], finite_only=case["finite_only"])
    return {"ms": codes.view(E8M0).astype(np.float32).astype(DTYPES[case["dtype"]])}


def _e8m0(case):
    codes = e8m0_codes(case, (case["groups"], case["size_n"]), case["dtype"])
    return {"e8m0": codes.view(E8M0), "dtype": case["dtype"]}


def _scales_to_float(case):
    codes = rng_for(case).integers(0, 256, case["shape"]).astype(np.uint8)
    return {"scale_u8": codes.view(E8M0) if case["codes"] == "e8m0" else codes,
            "intermediate_dtype": case["dtype"]}


# scale schemes (§2.8 step 4, §2.9 step 3)
def fp8_scale(case, size_n: int, size_k: int, salt: int = 1, exponents=SCALE_EXPONENTS) -> np.ndarray:
    """The checkpoint scale of a dense FP8 case, in its scheme, rank and dtype (distinct values in the binades of
    `exponents`)."""
    scheme, rank, dtype = case["scheme"], case["scale_rank"], case["scale_dtype"]
    if scheme == "block":
        nb, kb = -(-size_n // case["block_n"]), -(-size_k // S.FP8_BLOCK_K)
        shape = (kb, nb) if case["size_k_first"] else (nb, kb)
    else:
        count = {"tensor": 1, "channel": size_n, "shard_equal": case.get("shards"),
                 "shard_widths": len(case["logical_widths"] or [])}[scheme]
        shape = [(), (count,), (count, 1)][rank]
    return distinct(rng_for(case, salt), math.prod(shape), dtype, exponents).reshape(shape)


def _block(case):
    return [case["block_n"], S.FP8_BLOCK_K] if case["scheme"] == "block" else None


def _convert(case):
    n, k = case["size_n"], case["size_k"]
    return {"scale": fp8_scale(case, n, k), "size_n": n, "size_k": k, "orig_dtype": case["orig_dtype"],
            "weight_block_size": _block(case), "logical_widths": case["logical_widths"],
            "size_k_first": case["size_k_first"]}


def moe_scale(case, which: str) -> np.ndarray:
    """Checkpoint scale of w13 ([E, 2n, k] weight) or w2 ([E, k, n]) for an MoE case (§2.9)."""
    e, k, n = case["experts"], case["hidden"], case["intermediate"]
    size_n, size_k = (2 * n, k) if which == "w13" else (k, n)
    scheme = case["scheme"] if which == "w13" else case["w2_scheme"]
    shape = {"tensor": (e,), "shard_equal": (e, 2), "channel": (e, size_n),
             "block": (e, -(-size_n // case["block_n"]), -(-size_k // S.FP8_BLOCK_K))}[scheme]
    return distinct(rng_for(case, 1 if which == "w13" else 2), math.prod(shape), case["scale_dtype"]).reshape(shape)


def _convert_moe(which):
    def build(case):
        e, k, n = case["experts"], case["hidden"], case["intermediate"]
        size_n, size_k = (2 * n, k) if which == "w13" else (k, n)
        return {"scale": moe_scale(case, which), "num_experts": e, "size_n": size_n, "size_k": size_k,
                "orig_dtype": case["orig_dtype"], "weight_block_size": _block(case)}
    return build


# prepare pipelines (§2.8-§2.10)
def _prepare_fp8(case):
    k, n = case["size_k"], case["size_n"]
    w = fp8_codes(case, (k, n))                                            # [K, N]
    w = w if case["size_k_first"] else np.ascontiguousarray(w.T)          # [K, N] or [N, K]
    bias = distinct(rng_for(case, 4), n, case["orig_dtype"], BIAS_EXPONENTS, signed=True) if case["bias"] else None
    return {"weight": w.view(E4M3), "weight_scale": fp8_scale(case, n, k), "orig_dtype": case["orig_dtype"],
            "size_k_first": case["size_k_first"], "weight_block_size": _block(case),
            "logical_widths": case["logical_widths"], "bias": bias, "input_dtype": None}


def _moe_weights(case):
    e, k, n = case["experts"], case["hidden"], case["intermediate"]
    return fp8_codes(case, (e, 2 * n, k), 5).view(E4M3), fp8_codes(case, (e, k, n), 6).view(E4M3)


def _prepare_fp8_moe(case):
    e, k, n, dtype = case["experts"], case["hidden"], case["intermediate"], case["orig_dtype"]
    w13, w2 = _moe_weights(case)
    biases = {"w13_bias": None, "w2_bias": None}
    if case["bias"]:
        w13_bias = distinct(rng_for(case, 7), e * 2 * n, dtype, BIAS_EXPONENTS, signed=True)
        w2_bias = distinct(rng_for(case, 8), e * k, dtype, BIAS_EXPONENTS, signed=True)
        biases = {"w13_bias": w13_bias.reshape(e, 2 * n),                 # [E, 2n]
                  "w2_bias": w2_bias.reshape(e, k)}                       # [E, k]
    return {"w13": w13, "w2": w2, "w13_scale": moe_scale(case, "w13"), "w2_scale": moe_scale(case, "w2"),
            "orig_dtype": dtype, "weight_block_size": _block(case), **biases}


def _prepare_mxfp8(case):
    k, n, dtype = case["size_k"], case["size_n"], case["intermediate_dtype"]
    codes = e8m0_codes(case, (n + case["extra_rows"], k // MX_BLOCK + case["extra_cols"]), dtype, salt=1)
    bias = distinct(rng_for(case, 4), n, "bfloat16", BIAS_EXPONENTS, signed=True) if case["bias"] else None
    return {"weight": fp8_codes(case, (n, k)).view(E4M3),
            "weight_scale": codes.view(E8M0) if case["scale_codes"] == "e8m0" else codes,
            "bias": bias, "intermediate_dtype": dtype}


def _prepare_mxfp8_moe(case):
    e, k, n, dtype = case["experts"], case["hidden"], case["intermediate"], case["intermediate_dtype"]
    w13, w2 = _moe_weights(case)
    return {"w13": w13, "w2": w2,
            "w13_scale": e8m0_codes(case, (e, 2 * n, k // MX_BLOCK), dtype, salt=1),
            "w2_scale": e8m0_codes(case, (e, k, n // MX_BLOCK), dtype, salt=2), "intermediate_dtype": dtype}


def _scale_layout(s, mx=False, kind="scale"):
    return report.Scales(grouped=s is not None and s.ndim >= 2 and s.shape[-2] > 1, mx=mx, kind=kind)


def _layer_layouts(case, want, mx=False):
    return {"qweight": report.MarlinWeight(want.padded_k, want.padded_n, 8, valid_k=want.size_k, valid_n=want.size_n),
            "scales": _scale_layout(want.scales, mx), "bias": report.Scales(grouped=False, kind="bias")}


def _moe_layouts(case, want, mx=False):
    k, pn = want.hidden_size, want.padded_intermediate
    bias = report.Scales(grouped=False, kind="bias")
    return {"w13_qweight": report.MarlinWeight(k, 2 * pn, 8, experts=True),
            "w2_qweight": report.MarlinWeight(pn, k, 8, experts=True),
            "w13_scales": _scale_layout(want.w13_scales, mx), "w2_scales": _scale_layout(want.w2_scales, mx),
            "w13_bias": bias, "w2_bias": bias}


# --- the cells of each row (properties.seam.capabilities) and how a strategy draws only one ------------------

def grid(op: str, schemes=(NO_AXIS,), dtypes=(NO_AXIS,), features=(NO_AXIS,)) -> tuple[Cell, ...]:
    """Every (scheme, dtype, feature) combination of `op`."""
    return tuple(Cell(op, s, d, f) for s in schemes for d in dtypes for f in features)


BIAS_FEATURE = (NO_AXIS, "bias")
SCALE_GRID_SCHEMES = ("channel", *(f"group={g}" for g in S.GROUP_SIZES), "group=K")
PADDING_SCHEMES = ("channel", *(f"group={g}" for g in S.GROUP_SIZES))
MOE_PAIRS = (*((w13, w2) for w13 in S.MOE_W13_SCHEMES[:-1] for w2 in S.MOE_W2_SCHEMES), ("block", "block"))
_PACK_CODES = {"float8_e4m3fn": "fp8", "uint8": "uint8"}


def moe_label(w13: str, w2: str) -> str:
    """The scheme axis of an MoE layer: w13's scheme, then w2's where it differs (reporting.cells.cell_of)."""
    return w13 if w13 == w2 else f"{w13}/{w2}"


def _in_dtype(cell: Cell) -> dict:
    return {"dtypes": (cell.dtype,)}


def _in_bias(cell: Cell) -> dict:
    return {"bias": (cell.feature == "bias",)}


def _in_scale_grid(cell: Cell) -> dict:
    if cell.scheme == "channel":
        return {"schemes": ("channel",), **_in_dtype(cell)}
    if cell.scheme == "group=K":
        return {"schemes": ("group_is_k",), **_in_dtype(cell)}
    return {"schemes": ("grouped",), "group_sizes": (int(cell.scheme.removeprefix("group=")),), **_in_dtype(cell)}


def _in_group(cell: Cell) -> dict:
    return {"group_sizes": (-1 if cell.scheme == "channel" else int(cell.scheme.removeprefix("group=")),)}


def _in_moe_pair(cell: Cell) -> dict:
    w13, _, w2 = cell.scheme.partition("/")          # "channel/tensor", or "channel" for channel/channel
    return {"schemes": (w13,), "w2_schemes": S.MOE_W2_SCHEMES if w13 == "block" else (w2 or w13,)}


def _in_moe_w2(cell: Cell) -> dict:
    if cell.scheme == "block":
        return {"schemes": ("block",), **_in_dtype(cell)}
    return {"schemes": S.MOE_W13_SCHEMES[:-1], "w2_schemes": (cell.scheme,), **_in_dtype(cell)}


def _rows() -> list[Transform]:
    def unrepack_args(case, kw, out):
        return {"marlin_q_weight": out, **_sizes(kw, "size_k", "size_n", "num_bits")}

    def repack_args(case, kw, out):
        return {"b_q_weight": out, "perm": None, **_sizes(kw, "size_k", "size_n", "num_bits")}

    def scale_args(case, kw, out):
        return {"s": out, **_sizes(kw, "size_k", "size_n", "group_size")}

    def only(name):
        return lambda case, kw, out: {name: out}

    def typical(cases):   # the fusion is invertible only where it does not overflow (§2.6)
        return lambda **kw: cases(**kw).map(lambda c: {**c, "magnitudes": "typical"})

    bias_layout = lambda case, want: report.Scales(grouped=False, kind="bias")   # noqa: E731
    quads = lambda case, want: report.Quads()                                      # noqa: E731
    act = S.ACTIVATION_DTYPES
    rows = [
        Transform("pack_fp8_to_int32", "pack_fp8_to_int32", "layout", S.pack_cases, _pack,
                  layout=lambda case, want: report.GptqWords(8, transposed=not case["size_k_first"]),
                  inverse="unpack_fp8_from_int32",
                  inverse_args=lambda case, kw, out: {"packed": out, "size_k_first": kw["size_k_first"]},
                  restore=lambda case, kw: kw["fp8"].view(E4M3),
                  cells=grid("pack_fp8_to_int32", dtypes=tuple(_PACK_CODES)),
                  restrict=lambda cell: {"codes": (_PACK_CODES[cell.dtype],)}),
        Transform("unpack_fp8_from_int32", "unpack_fp8_from_int32", "layout", S.packed_cases, _unpack,
                  inverse="pack_fp8_to_int32",
                  inverse_args=lambda case, kw, out: {"fp8": out, "size_k_first": kw["size_k_first"]},
                  restore=_first, cells=grid("unpack_fp8_from_int32", dtypes=("int32",))),
    ]
    for bits in (8, 4):
        rows += [
            Transform(f"gptq_marlin_repack[{bits}bit]", "gptq_marlin_repack", "layout",
                      lambda bits=bits, **kw: S.repack_cases(num_bits=bits, **kw), _repack, layout=_weight_layout,
                      inverse="gptq_marlin_unrepack", inverse_args=unrepack_args, restore=_repack_restore,
                      cells=grid("gptq_marlin_repack", dtypes=(f"{bits}-bit",), features=(NO_AXIS, "perm")),
                      restrict=lambda cell: {"perms": S.ACT_ORDER_PERMS if cell.feature == "perm"
                                             else tuple(p for p in S.PERMS if p not in S.ACT_ORDER_PERMS)}),
            Transform(f"gptq_marlin_unrepack[{bits}bit]", "gptq_marlin_unrepack", "layout",
                      lambda bits=bits: S.marlin_words_cases(num_bits=bits), _unrepack,
                      layout=lambda case, want: report.GptqWords(case["num_bits"]),
                      inverse="gptq_marlin_repack", inverse_args=repack_args, restore=_first,
                      cells=grid("gptq_marlin_unrepack", dtypes=(f"{bits}-bit",))),
        ]
    rows += [
        Transform("marlin_permute_scales", "marlin_permute_scales", "scales", S.scale_grid_cases, _scale_grid,
                  layout=lambda case, want: report.Scales(grouped=_grouped(case)),
                  inverse="marlin_unpermute_scales", inverse_args=scale_args, restore=_first,
                  cells=grid("marlin_permute_scales", SCALE_GRID_SCHEMES, S.SCALE_DTYPES), restrict=_in_scale_grid),
        Transform("marlin_unpermute_scales", "marlin_unpermute_scales", "scales", S.scale_grid_cases, _scale_grid,
                  inverse="marlin_permute_scales", inverse_args=scale_args, restore=_first,
                  cells=grid("marlin_unpermute_scales", SCALE_GRID_SCHEMES, S.SCALE_DTYPES), restrict=_in_scale_grid),
        Transform("marlin_permute_bias", "marlin_permute_bias", "scales", S.bias_cases, _bias, layout=bias_layout,
                  inverse="marlin_unpermute_bias", inverse_args=only("bias"), restore=_first,
                  cells=grid("marlin_permute_bias", dtypes=S.SCALE_DTYPES), restrict=_in_dtype),
        Transform("marlin_unpermute_bias", "marlin_unpermute_bias", "scales", S.bias_cases, _bias,
                  inverse="marlin_permute_bias", inverse_args=only("bias"), restore=_first,
                  cells=grid("marlin_unpermute_bias", dtypes=S.SCALE_DTYPES), restrict=_in_dtype),
        Transform("fp8_fused_exponent_bias_into_scales", "fp8_fused_exponent_bias_into_scales", "scales",
                  S.fused_scale_cases, _fused, inverse="fp8_unfuse_exponent_bias_from_scales",
                  inverse_args=only("s"), restore=_first, roundtrip_cases=typical(S.fused_scale_cases),
                  cells=grid("fp8_fused_exponent_bias_into_scales", dtypes=act), restrict=_in_dtype),
        Transform("fp8_unfuse_exponent_bias_from_scales", "fp8_unfuse_exponent_bias_from_scales", "scales",
                  lambda **kw: S.fused_scale_cases(fused=True, **kw), _fused,
                  inverse="fp8_fused_exponent_bias_into_scales", inverse_args=only("s"), restore=_first,
                  roundtrip_cases=typical(lambda **kw: S.fused_scale_cases(fused=True, **kw)),
                  cells=grid("fp8_unfuse_exponent_bias_from_scales", dtypes=act), restrict=_in_dtype),
        Transform("mxfp8_marlin_process_scales", "mxfp8_marlin_process_scales", "scales", S.e8m0_grid_cases, _ms,
                  layout=quads, inverse="mxfp8_marlin_unprocess_scales",
                  inverse_args=lambda case, kw, out: {"e8m0": out, "dtype": case["dtype"]}, restore=_first,
                  roundtrip_cases=lambda **kw: S.e8m0_grid_cases(finite_only=True, **kw),
                  cells=grid("mxfp8_marlin_process_scales", ("mx",), S.MX_FLOAT_DTYPES), restrict=_in_dtype),
        Transform("mxfp8_marlin_unprocess_scales", "mxfp8_marlin_unprocess_scales", "scales", S.e8m0_grid_cases,
                  _e8m0, layout=quads, inverse="mxfp8_marlin_process_scales", inverse_args=only("ms"),
                  restore=_first,   # float64 too: an output dtype the oracle documents (exact, like float32)
                  cells=grid("mxfp8_marlin_unprocess_scales", ("mx",), S.MX_FLOAT_DTYPES + ("float64",)),
                  restrict=_in_dtype),
        Transform("mxfp8_scales_to_float", "mxfp8_scales_to_float", "scales", S.e8m0_byte_cases, _scales_to_float,
                  cells=grid("mxfp8_scales_to_float", ("mx",), S.MX_FLOAT_DTYPES), restrict=_in_dtype),
        Transform("convert_fp8_scales", "convert_fp8_scales", "scales", S.fp8_layer_cases, _convert,
                  cells=grid("convert_fp8_scales", S.FP8_SCHEMES, act),
                  restrict=lambda cell: {"schemes": (cell.scheme,), **_in_dtype(cell)}),
        Transform("convert_fp8_moe_scales[w13]", "convert_fp8_moe_scales", "scales", S.fp8_moe_cases,
                  _convert_moe("w13"), cells=grid("convert_fp8_moe_scales", S.MOE_W13_SCHEMES, act),
                  restrict=lambda cell: {"schemes": (cell.scheme,), **_in_dtype(cell)}),
        Transform("convert_fp8_moe_scales[w2]", "convert_fp8_moe_scales", "scales", S.fp8_moe_cases,
                  _convert_moe("w2"), cells=grid("convert_fp8_moe_scales", (*S.MOE_W2_SCHEMES, "block"), act),
                  restrict=_in_moe_w2),
        Transform("uses_grouped_scale_permutation", "uses_grouped_scale_permutation", "helper", S.padding_cases,
                  lambda case: _sizes(case, "size_k", "group_size"),
                  cells=grid("uses_grouped_scale_permutation", PADDING_SCHEMES), restrict=_in_group),
        Transform("marlin_padded_nk", "marlin_padded_nk", "helper", S.padding_cases,
                  lambda case: _sizes(case, "size_n", "size_k", "group_size"),
                  cells=grid("marlin_padded_nk", PADDING_SCHEMES), restrict=_in_group),
        Transform("marlin_moe_padded_intermediate", "marlin_moe_padded_intermediate", "helper", S.padding_cases,
                  lambda case: _sizes(case, "size_n", "group_size"),
                  cells=grid("marlin_moe_padded_intermediate", PADDING_SCHEMES), restrict=_in_group),
        Transform("prepare_fp8_layer_for_marlin", "prepare_fp8_layer_for_marlin", "prepare", S.fp8_layer_cases,
                  _prepare_fp8, layout=_layer_layouts,
                  cells=grid("prepare_fp8_layer_for_marlin", S.FP8_SCHEMES, act, BIAS_FEATURE),
                  restrict=lambda cell: {"schemes": (cell.scheme,), **_in_dtype(cell), **_in_bias(cell)}),
        Transform("prepare_fp8_moe_layer_for_marlin", "prepare_fp8_moe_layer_for_marlin", "prepare",
                  S.fp8_moe_cases, _prepare_fp8_moe, layout=_moe_layouts,
                  cells=grid("prepare_fp8_moe_layer_for_marlin", tuple(moe_label(*p) for p in MOE_PAIRS), act,
                             BIAS_FEATURE),
                  restrict=lambda cell: {**_in_moe_pair(cell), **_in_dtype(cell), **_in_bias(cell)}),
        Transform("prepare_mxfp8_layer_for_marlin", "prepare_mxfp8_layer_for_marlin", "prepare",
                  S.mxfp8_layer_cases, _prepare_mxfp8, layout=lambda case, want: _layer_layouts(case, want, mx=True),
                  cells=grid("prepare_mxfp8_layer_for_marlin", ("mx",), S.MX_INTERMEDIATE_DTYPES, BIAS_FEATURE),
                  restrict=lambda cell: {**_in_dtype(cell), **_in_bias(cell)}),
        Transform("prepare_mxfp8_moe_layer_for_marlin", "prepare_mxfp8_moe_layer_for_marlin", "prepare",
                  S.mxfp8_moe_cases, _prepare_mxfp8_moe,
                  layout=lambda case, want: _moe_layouts(case, want, mx=True),
                  cells=grid("prepare_mxfp8_moe_layer_for_marlin", ("mx",), S.MX_INTERMEDIATE_DTYPES[:2]),
                  restrict=_in_dtype),
    ]
    return rows


TRANSFORMS: list[Transform] = _rows()
_BY_NAME = {t.name: t for t in TRANSFORMS}


def by_name(name: str) -> Transform:
    if name not in _BY_NAME:
        raise ValueError(f"by_name: transform {name!r} is not one of {sorted(_BY_NAME)}")
    return _BY_NAME[name]


def rows(family: str | None = None, *, invertible: bool = False, op: str | None = None) -> list[Transform]:
    """Registry rows filtered by family, by having an inverse, or by operation."""
    return [t for t in TRANSFORMS if (family is None or t.family == family) and (not invertible or t.inverse)
            and (op is None or t.op == op)]


def cells_of(rows: list[Transform], where: Callable[[Cell], bool] = lambda cell: True) -> list[tuple]:
    """(row, cell) pairs to parametrize a law over: every cell of every row, where `where` holds."""
    return [(row, cell) for row in rows for cell in row.cells if where(cell)]


def cell_ids(pairs: list[tuple]) -> list[str]:
    """pytest ids of (row, cell, ...) parameters: "<row>-<cell label>"."""
    return [f"{pair[0].name}-{pair[1].label()}" for pair in pairs]
