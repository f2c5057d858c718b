"""The mutant catalogue: backends that wrap a correct one and break exactly one thing, as real code did.

Each `Mutant` names the bug, the spec section and the real issue or PR it imitates (spec §6.1, §6.3),
the contract operations it replaces, and the smallest case that can show it. `mutant.backend(base)`
is `base.replaced("mutant:<name>", ...)` (properties/seam/backends.py): every other operation is the
correct one, and the laws never change. The kill matrix (properties/strength/kill_matrix.py) requires the
property suite to kill every mutant.

Selecting one on the command line (the default base is the `torch` backend):

    --marlin-backend mutant:interleave8_identity          the `mutant` scheme (registered on import
                                                          of this module, see `register`)
    --marlin-backend mutant:interleave8_identity@ref      the same bug on top of the NumPy oracle
    --marlin-backend properties.strength.mutants:interleave8_identity   the plain module:attribute form

    >>> sorted(MUTANTS)[:3]
    ['act_order_perm_ignored', 'bias_grouped_perm', 'bias_not_permuted']
    >>> MUTANTS["square_weight_untransposed"].reference
    'vLLM issue #44110 (heuristic from PR #38092; fixed by PR #44735)'
"""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np

from marlin_ref.formats import BF16, exponent_bias_of
from marlin_ref.layout import TILE_N
from properties.strength import mutations as mu
from properties.seam.backends import OPERATIONS, Backend, get_backend, register_scheme

DEFAULT_BASE = "torch"
SCHEME = "mutant"
DENSE = ("prepare_fp8_layer_for_marlin", "prepare_mxfp8_layer_for_marlin")
MOE = ("prepare_fp8_moe_layer_for_marlin", "prepare_mxfp8_moe_layer_for_marlin")
MX = ("prepare_mxfp8_layer_for_marlin", "prepare_mxfp8_moe_layer_for_marlin")
FP8 = ("prepare_fp8_layer_for_marlin", "prepare_fp8_moe_layer_for_marlin")
PAD_CODE = 0x38        # fp8 1.0: what an uninitialised (torch.empty) pad might hold instead of 0x00


@dataclass(frozen=True)
class Mutant:
    name: str
    summary: str                       # what is broken, in one line
    spec: str                          # spec sections
    reference: str                     # the real bug (issue/PR) or the natural mistake it imitates
    operations: tuple[str, ...]        # contract operations it replaces
    build: Callable[[Backend], dict]   # correct backend -> {operation: replacement}
    minimal: dict | None = None        # {op: case fields}: the smallest case that shows it, per operation
    gpu_only: bool = False             # shows only at shapes the GPU tier draws (model shapes): killed under `gpu`

    def backend(self, base: Backend | str | None = None) -> Backend:
        base = get_backend(base or DEFAULT_BASE) if not isinstance(base, Backend) else base
        ops = self.build(base)
        if set(ops) != set(self.operations):   # the catalogue's record must say what is replaced
            raise RuntimeError(f"Mutant {self.name}: operations={sorted(self.operations)} but the "
                               f"build replaces {sorted(ops)}")
        return base.replaced(f"{SCHEME}:{self.name}", **ops)


MUTANTS: dict[str, Mutant] = {}


def _mutant(name, summary, spec, reference, operations, minimal=None, gpu_only=False):
    """Decorator: register build(base) -> {op: fn} as a Mutant."""
    def register_build(build):
        MUTANTS[name] = Mutant(name, summary, spec, reference, tuple(operations), build, minimal, gpu_only)
        return build
    return register_build


# --- wrapping helpers ------------------------------------------------------------------------------
# Replacements see the call's arguments as one dict named as in the contract (design.md), bound with
# the oracle's signature, and call the correct op lazily: a missing op stays "not provided".

def _marlin_gemm_contract(a, b_q_weight, b_scales, b_bias=None, *, size_n, size_k):
    """marlin_gemm's contract signature (design.md): the oracle has marlin_gemm_reference, not this name."""


_CONTRACT_ONLY = {"marlin_gemm": _marlin_gemm_contract}   # operations without a marlin_ref function


@functools.lru_cache(maxsize=None)
def _signature(op: str) -> inspect.Signature:
    if op in _CONTRACT_ONLY:
        return inspect.signature(_CONTRACT_ONLY[op])
    return inspect.signature(getattr(importlib.import_module(f"marlin_ref.{OPERATIONS[op]}"), op))


def _bind(op: str, a: tuple, kw: dict) -> dict | None:
    """{parameter: value} with defaults applied, or None when the call does not fit the contract."""
    try:
        bound = _signature(op).bind(*a, **kw)
    except TypeError:
        return None
    bound.apply_defaults()
    return dict(bound.arguments)


def _named(op: str, fn):
    fn.__name__ = fn.__qualname__ = op
    return fn


def _after(base: Backend, op: str, fix):
    """op's result passed through fix(result, args)."""
    def call(*a, **kw):
        out = base.op(op)(*a, **kw)
        return fix(out, _bind(op, a, kw))
    return _named(op, call)


def _before(base: Backend, op: str, change):
    """op called with change(args) instead of args (a call that does not bind goes through as is)."""
    def call(*a, **kw):
        args = _bind(op, a, kw)
        return base.op(op)(*a, **kw) if args is None else base.op(op)(**change(args))
    return _named(op, call)


def _layers(base: Backend, ops, fix) -> dict:
    """{op: layer-rewriting wrapper} for prepare ops; fix(layer, op) -> layer."""
    return {op: _after(base, op, functools.partial(lambda op, layer, args: fix(layer, op), op)) for op in ops}


def _qweights(layer, fix):
    """Apply fix(words) to the Marlin weight field(s) of a MarlinLayer / MarlinMoeLayer."""
    if hasattr(layer, "qweight"):
        return layer._replace(qweight=fix(layer.qweight))
    return layer._replace(w13_qweight=fix(layer.w13_qweight), w2_qweight=fix(layer.w2_qweight))


def _scale_fields(layer):
    """(field, size_k of its permutation, group_size) for every scale grid of a layer."""
    if hasattr(layer, "qweight"):
        return [("scales", layer.padded_k, layer.group_size)]
    return [("w13_scales", layer.hidden_size, layer.group_size),
            ("w2_scales", layer.padded_intermediate, layer.group_size)]


def _scales(base: Backend, ops, fix) -> dict:
    """{op: wrapper} rewriting every scale grid with fix(s, size_k, group_size, mx) -> s."""
    def rewrite(layer, op):
        return layer._replace(**{f: fix(getattr(layer, f), k, g, op in MX) for f, k, g in _scale_fields(layer)})
    return _layers(base, ops, rewrite)


def _biases(layer, fix):
    fields = ("bias",) if hasattr(layer, "qweight") else ("w13_bias", "w2_bias")
    return layer._replace(**{f: fix(getattr(layer, f)) for f in fields if getattr(layer, f) is not None})


def _is_false(flag) -> bool:
    """size_k_first=False given as a bool (anything else is left to the correct op to reject)."""
    return isinstance(flag, (bool, np.bool_)) and not flag


def _marlin_ok(m, size_k, size_n, num_bits) -> bool:
    """A well-formed Marlin weight (else the correct op is left to raise its own error)."""
    try:
        pf = 32 // int(num_bits)
        return (isinstance(m, np.ndarray) and m.dtype == np.int32 and m.ndim == 2 and size_k % 16 == 0
                and size_n % TILE_N == 0 and num_bits in (4, 8) and m.shape == (size_k // 16, size_n * 16 // pf))
    except (TypeError, ValueError, ZeroDivisionError):
        return False


def _layout_bug(base: Backend, bug: str, bits=(4, 8), prepares=DENSE + MOE) -> dict:
    """Repack writes (and unrepack reads) with the buggy table; the prepare ops' weights likewise."""
    def repack(words, args):
        nb = args["num_bits"]
        return mu.rewrite_weight(words, lambda w: w, nb, bug) if nb in bits else words

    def unrepack_input(args):
        m, nb = args["marlin_q_weight"], args["num_bits"]
        if nb in bits and _marlin_ok(m, args["size_k"], args["size_n"], nb):
            m = mu.encode(mu.decode(m, nb, bug), nb)
        return {**args, "marlin_q_weight": m}

    ops = {"gptq_marlin_repack": _after(base, "gptq_marlin_repack", repack),
           "gptq_marlin_unrepack": _before(base, "gptq_marlin_unrepack", unrepack_input)}
    if 8 in bits:
        ops.update(_layers(base, prepares, lambda layer, op: _qweights(
            layer, lambda w: mu.rewrite_weight(w, lambda x: x, 8, bug))))
    return ops


# --- the weight layout (§2.3, §6.1 items 1-4) -------------------------------------------------------

REPACK_OPS = ("gptq_marlin_repack", "gptq_marlin_unrepack")


def _smallest(size_k: int, size_n: int, prepare_kn: tuple = (128, 64)) -> dict:
    """The shrunk case a tile-level bug must reach: (size_k, size_n) for the repack and unrepack rows,
    and the smallest prepare shape (K=128, N=64 unless given) for the dense pipeline it also breaks."""
    tile = {"size_k": size_k, "size_n": size_n}
    return {"gptq_marlin_repack": tile, "gptq_marlin_unrepack": tile,
            "prepare_fp8_layer_for_marlin": {"size_k": prepare_kn[0], "size_n": prepare_kn[1]}}


_mutant("interleave8_identity", "8-bit bytes in natural order [0,1,2,3] instead of [0,2,1,3]",
        "§2.3.2, §6.1 item 1", "natural mistake; is_a_8bit's [0,1,2,3] order used for W8A16 (§2.3.1, §6.1 item 26)",
        REPACK_OPS + DENSE + MOE, _smallest(16, 64))(
    lambda base: _layout_bug(base, "interleave", bits=(8,)))
_mutant("interleave4_as_8bit", "4-bit nibbles interleaved with the 8-bit [0,2,1,3] per quadruple",
        "§2.3.2, §6.1 item 1", "natural mistake: the two interleaves swapped (§6.1 item 1)",
        REPACK_OPS,
        {op: {"size_k": 16, "size_n": 64} for op in REPACK_OPS})(
    lambda base: _layout_bug(base, "interleave", bits=(4,), prepares=()))
_mutant("word_index_warp_major", "word index 64j + 2t + h (warp-major) instead of 8t + 2j + h",
        "§2.3.1, §6.1 item 2", "natural mistake named in §6.1 item 2",
        REPACK_OPS + DENSE + MOE, _smallest(16, 64))(
    lambda base: _layout_bug(base, "word_index"))
_mutant("row_set_consecutive", "lane q holds rows 4q..4q+3 instead of (2q, 2q+1, 2q+8, 2q+9)",
        "§2.3.2, §6.1 item 3", "natural mistake: the m16n8k16 B-fragment rows misread",
        REPACK_OPS + DENSE + MOE, _smallest(16, 64))(
    lambda base: _layout_bug(base, "row_set"))
_mutant("tile_order_n_reversed", "the 16x64 tiles of a row stored in decreasing n",
        "§2.3.1, §6.1 item 4", "natural mistake in the tile walk",
        REPACK_OPS + DENSE + MOE, _smallest(16, 128, (128, 128)))(
    lambda base: _layout_bug(base, "tile_n_reversed"))
_mutant("tile_order_k_major", "tiles stored k-major (nt*(K/16) + kt) instead of one row per k slab",
        "§2.3.1, §6.1 item 4", "natural mistake in the tile walk",
        REPACK_OPS + DENSE + MOE, _smallest(32, 128, (128, 128)))(
    lambda base: _layout_bug(base, "tile_k_major"))


@_mutant("act_order_perm_ignored", "gptq_marlin_repack ignores a non-empty perm (act-order)",
         "§2.3.1 'With perm', §6.1 item 27", "act-order support being removed (vLLM RFC #48148)",
         ("gptq_marlin_repack",), {"gptq_marlin_repack": {"size_k": 16, "size_n": 64}})
def _act_order(base):
    return {"gptq_marlin_repack": _before(base, "gptq_marlin_repack", lambda args: {**args, "perm": None})}


# --- pack_fp8_to_int32 and orientation (§2.2, §6.1 items 5-6) -------------------------------------

@_mutant("pack_nk_transposed", "pack_fp8_to_int32(size_k_first=False) returns [K/4, N] instead of [N, K/4]",
         "§2.2, §6.1 item 5", "the asymmetry every caller must undo with .T (§2.2)",
         ("pack_fp8_to_int32", "unpack_fp8_from_int32"), {"pack_fp8_to_int32": {"size_k_first": False}})
def _pack_transposed(base):
    def pack(out, args):
        return np.ascontiguousarray(out.T) if _is_false(args["size_k_first"]) and out.ndim == 2 else out

    def unpack_input(args):
        packed = args["packed"]
        if _is_false(args["size_k_first"]) and isinstance(packed, np.ndarray) and packed.ndim == 2:
            packed = np.ascontiguousarray(packed.T)
        return {**args, "packed": packed}
    return {"pack_fp8_to_int32": _after(base, "pack_fp8_to_int32", pack),
            "unpack_fp8_from_int32": _before(base, "unpack_fp8_from_int32", unpack_input)}


@_mutant("pack_big_endian", "pack_fp8_to_int32 puts k = 4r + 3 - j in byte j (big endian)",
         "§2.2, §6.1 item 5", "natural mistake (byte order of the int32 view)",
         ("pack_fp8_to_int32", "unpack_fp8_from_int32") + DENSE + MOE, {"pack_fp8_to_int32": {"size_k": 4}})
def _big_endian(base):
    def swap(a):
        return a.byteswap() if isinstance(a, np.ndarray) and a.dtype == np.int32 else a

    def reverse_k4(w):   # logical [..., K, N]: rows reversed inside every group of 4
        k = np.arange(w.shape[-2])
        return w[..., 4 * (k // 4) + 3 - k % 4, :]
    return {"pack_fp8_to_int32": _after(base, "pack_fp8_to_int32", lambda out, args: swap(out)),
            "unpack_fp8_from_int32": _before(base, "unpack_fp8_from_int32",
                                             lambda args: {**args, "packed": swap(args["packed"])}),
            **_layers(base, DENSE + MOE, lambda layer, op: _qweights(
                layer, lambda w: mu.rewrite_weight(w, reverse_k4)))}


@_mutant("square_weight_untransposed", "an [N, K] weight with N == K is taken as [K, N] (shape heuristic)",
         "§2.8 step 3, §6.1 item 6", "vLLM issue #44110 (heuristic from PR #38092; fixed by PR #44735)",
         ("prepare_fp8_layer_for_marlin",))
def _square(base):
    def change(args):
        weight = args["weight"]
        if _is_false(args["size_k_first"]) and np.ndim(weight) == 2 and weight.shape[0] == weight.shape[1]:
            # read as [K, N]: the same as handing the correct op the transposed array
            return {**args, "weight": np.ascontiguousarray(weight.T)}
        return args
    return {"prepare_fp8_layer_for_marlin": _before(base, "prepare_fp8_layer_for_marlin", change)}


# --- scale permutations (§2.4, §2.7, §6.1 items 7-8) ---------------------------------------------

SCALE_OPS = ("marlin_permute_scales", "marlin_unpermute_scales")


def _repermute(base: Backend, wrong_grouped, prepares) -> dict:
    """Permute with the order wrong_grouped(size_k, size_n, group_size) picks instead of §2.4's."""
    def permute(out, args):    # out: the correct result (so the input was valid)
        k, n, g = args["size_k"], args["size_n"], args["group_size"]
        logical = mu.unpermute_chunks(out, mu.scale_order(mu.is_grouped(k, g)))
        return mu.permute_chunks(logical, mu.scale_order(wrong_grouped(k, n, g)))

    def unpermute(out, args):
        k, n, g = args["size_k"], args["size_n"], args["group_size"]
        return mu.unpermute_chunks(args["s"], mu.scale_order(wrong_grouped(k, n, g)))

    def fix(s, size_k, group_size, mx):
        wrong = wrong_grouped(size_k, s.shape[-1], group_size)
        return mu.to_kernel(mu.to_logical(s, size_k, group_size, mx), wrong, mx)
    return {"marlin_permute_scales": _after(base, "marlin_permute_scales", permute),
            "marlin_unpermute_scales": _after(base, "marlin_unpermute_scales", unpermute),
            **_scales(base, prepares, fix)}


_mutant("scale_perm_swapped", "grouped and single scale permutations swapped",
        "§2.4, §6.1 item 7", "natural mistake: get_scale_perms' two tables confused",
        SCALE_OPS + DENSE + MOE, {"marlin_permute_scales": {"group_size": -1, "size_n": 64}})(
    lambda base: _repermute(base, lambda k, n, g: not mu.is_grouped(k, g), DENSE + MOE))
_mutant("scale_selection_uses_size_n", "grouped iff group_size < size_n (instead of size_k)",
        "§2.4, §6.1 item 7", "vLLM PR #50196 (wrong size_k passed to marlin_moe_permute_scales)",
        SCALE_OPS + FP8)(
    lambda base: _repermute(base, lambda k, n, g: mu.is_grouped(n, g), FP8))


@_mutant("mx_reorder_missing", "mxfp8_marlin_process_scales skips the [0,2,1,3] reorder",
         "§2.7, §6.1 item 8", "natural mistake (the reorder looks like a no-op on uniform scales)",
         ("mxfp8_marlin_process_scales", "mxfp8_marlin_unprocess_scales") + MX)
def _mx_missing(base):
    def unprocess_input(args):
        e8m0 = args["e8m0"]
        if isinstance(e8m0, np.ndarray) and e8m0.ndim == 2 and e8m0.size % 4 == 0:
            e8m0 = mu.swap_quads(e8m0)
        return {**args, "e8m0": e8m0}
    return {"mxfp8_marlin_process_scales": _after(base, "mxfp8_marlin_process_scales",
                                                  lambda out, args: mu.swap_quads(out)),
            "mxfp8_marlin_unprocess_scales": _before(base, "mxfp8_marlin_unprocess_scales", unprocess_input),
            **_scales(base, MX, lambda s, k, g, mx: mu.swap_quads(s))}


_mutant("mx_reorder_before_permute", "MX [0,2,1,3] applied before the grouped permutation, not after",
        "§2.7, §6.1 item 8", "order of operations named in §6.1 item 8", MX)(
    lambda base: _scales(base, MX, lambda s, k, g, mx: mu.permute_chunks(
        mu.swap_quads(mu.to_logical(s, k, g, mx)), mu.scale_order(True))))
_mutant("mx_reorder_on_fp8_scales", "the MX [0,2,1,3] reorder also applied to 16-bit FP8 scales",
        "§2.7, §6.1 item 8", "§6.1 item 8 ('or to the FP8-scale (16-bit) path')", FP8)(
    lambda base: _scales(base, FP8, lambda s, k, g, mx: mu.swap_quads(s)))


# --- exponent bias (§2.6, §6.1 item 9) --------------------------------------------------------------

def _unbias(s):
    return mu.times_power_of_two(s, -exponent_bias_of(s.dtype))


_mutant("exponent_bias_missing_moe", "the MoE FP8 prep forgets fp8_fused_exponent_bias_into_scales",
        "§2.6, §2.9 step 5, §6.1 item 9", "vLLM PR #18026", ("prepare_fp8_moe_layer_for_marlin",))(
    lambda base: _scales(base, ("prepare_fp8_moe_layer_for_marlin",), lambda s, k, g, mx: _unbias(s)))
_mutant("exponent_bias_doubled", "the dense FP8 prep fuses the exponent bias twice",
        "§2.6, §6.1 item 9", "§6.1 item 9 ('applied exactly once')", ("prepare_fp8_layer_for_marlin",))(
    lambda base: _scales(base, ("prepare_fp8_layer_for_marlin",),
                         lambda s, k, g, mx: mu.times_power_of_two(s, exponent_bias_of(s.dtype))))


@_mutant("exponent_bias_beta8_for_bf16", "β = 8 (the fp16 value) used for bf16 scales instead of 120",
         "§2.6, §6.1 item 9", "§6.1 item 9 (a 2^112 error); cf. vLLM issue #34694 (missing bf16 re-bias)",
         ("fp8_fused_exponent_bias_into_scales", "fp8_unfuse_exponent_bias_from_scales") + FP8,
         {"prepare_fp8_layer_for_marlin": {"orig_dtype": "bfloat16"}})
def _beta8(base):
    fp16_beta = 8

    def fuse(out, args):
        return mu.times_power_of_two(args["s"], fp16_beta) if out.dtype == BF16 else out

    def unfuse(out, args):
        return mu.times_power_of_two(args["s"], -fp16_beta) if out.dtype == BF16 else out

    def fix(s, k, g, mx):
        return mu.times_power_of_two(_unbias(s), fp16_beta) if s.dtype == BF16 else s
    return {"fp8_fused_exponent_bias_into_scales": _after(base, "fp8_fused_exponent_bias_into_scales", fuse),
            "fp8_unfuse_exponent_bias_from_scales": _after(base, "fp8_unfuse_exponent_bias_from_scales", unfuse),
            **_scales(base, FP8, fix)}


_mutant("exponent_bias_on_mx", "the exponent bias (×2^120) also fused into MXFP8 scales",
        "§2.6, §2.10, §6.1 item 9", "§2.6 ('Never applied to MXFP8 scales')", MX)(
    lambda base: _scales(base, MX, lambda s, k, g, mx: mu.e8m0_times_power_of_two(s)))


# --- scale schemes (§2.8 step 4, §2.9 step 3, §6.1 items 10-12) -------------------------------------

def _block_rewrite(base: Backend, regrid) -> dict:
    """Block scales rebuilt by regrid(per_block [..., G, ⌈N/bn⌉], block_n, block_k, size_n) from the
    correct grid, in convert_fp8_scales, convert_fp8_moe_scales and the dense prep."""
    def convert(out, args):
        if args["weight_block_size"] is None:
            return out
        bn, bk = args["weight_block_size"]
        return regrid(out[..., ::bn], bn, bk, args["size_n"])

    def prep(layer, args):
        if args["weight_block_size"] is None:
            return layer
        bn, bk = args["weight_block_size"]
        logical = mu.to_logical(layer.scales, layer.padded_k, layer.group_size)         # [G', pn]
        grid = regrid(logical[..., :layer.size_n:bn], bn, bk, layer.size_n)
        if grid.shape[-1] > layer.padded_n:   # where vLLM's zero-pad of the scale grid would fail
            raise ValueError(f"marlin_pad_scales: scale grid has {grid.shape[-1]} columns, more than "
                             f"padded_n={layer.padded_n}")
        new = np.zeros_like(logical)
        new[..., :grid.shape[-1]] = grid
        return layer._replace(scales=mu.to_kernel(new, mu.is_grouped(layer.padded_k, layer.group_size)))
    return {"convert_fp8_scales": _after(base, "convert_fp8_scales", convert),
            "convert_fp8_moe_scales": _after(base, "convert_fp8_moe_scales", convert),
            "prepare_fp8_layer_for_marlin": _after(base, "prepare_fp8_layer_for_marlin", prep)}


BLOCK_OPS = ("convert_fp8_scales", "convert_fp8_moe_scales", "prepare_fp8_layer_for_marlin")
_mutant("block_scales_repeat_block_k", "block scales repeated block_k (not block_n) times along N",
        "§2.8 step 4, §6.1 item 11", "natural mistake (repeat_interleave with the wrong block dim)",
        BLOCK_OPS)(
    lambda base: _block_rewrite(base, lambda cols, bn, bk, n: np.repeat(cols, bk, axis=-1)[..., :n]))
_mutant("block_scales_not_truncated", "block scales repeated block_n times but not cut to N (ragged N)",
        "§2.8 step 4, §6.1 item 11", "§6.1 item 11 (repeat_interleave(bn) then truncate)",
        BLOCK_OPS,
        {"convert_fp8_scales": {"scheme": "block", "size_k": 128, "size_n": 112}})(
    lambda base: _block_rewrite(base, lambda cols, bn, bk, n: np.repeat(cols, bn, axis=-1)))
_mutant("block_scales_truncated_from_the_end", "block scales repeated block_n times, then the last N columns kept "
        "instead of the first (visible once a ragged N has 2+ block columns)", "§2.8 step 4, §6.1 item 11",
        "natural mistake (a negative slice); the shape vLLM's own padding test uses (N = 192, 200 with 128 x 128)",
        BLOCK_OPS, {"convert_fp8_scales": {"scheme": "block", "size_k": 128, "size_n": 240}})(
    lambda base: _block_rewrite(base, lambda cols, bn, bk, n: np.repeat(cols, bn, axis=-1)[..., -n:]))


@_mutant("block_scales_transposed_k_first", "block scales transposed when size_k_first is True (not when False)",
         "§2.8 step 4, §6.1 item 11", "§6.1 item 11 ('transposes only when size_k_first is False')",
         ("convert_fp8_scales", "prepare_fp8_layer_for_marlin"))
def _block_transposed(base):
    def flip(key):   # the inverted condition == handing the correct op the transpose
        def change(args):
            if args["weight_block_size"] is None or np.ndim(args[key]) != 2:
                return args
            return {**args, key: np.ascontiguousarray(np.asarray(args[key]).T)}
        return change
    return {"convert_fp8_scales": _before(base, "convert_fp8_scales", flip("scale")),
            "prepare_fp8_layer_for_marlin": _before(base, "prepare_fp8_layer_for_marlin", flip("weight_scale"))}


@_mutant("per_shard_equal_widths", "per-shard scales spread as equal shards, logical_widths ignored",
         "§2.8 step 4, §6.1 item 12", "§6.1 item 12 (fused QKV with unequal widths)",
         ("convert_fp8_scales", "prepare_fp8_layer_for_marlin"))
def _equal_widths(base):
    def drop(args):
        return {**args, "logical_widths": None}
    return {op: _before(base, op, drop) for op in ("convert_fp8_scales", "prepare_fp8_layer_for_marlin")}


@_mutant("scales_kept_fp32", "checkpoint scales not cast to orig_dtype (fp32 values kept)",
         "§2.8 step 4, §6.1 items 9-10", "§6.1 item 10; vLLM PR #53278 (scale dtype compatibility)",
         ("convert_fp8_scales", "convert_fp8_moe_scales"))
def _kept_fp32(base):
    def make(op):
        def kept(out, args):   # out: the correct result (so the call was valid)
            values = np.asarray(args["scale"]).astype(np.float32)
            where = mu.gather_map(lambda digits: base.op(op)(**{**args, "scale": digits, "orig_dtype": "float16"}),
                                  values.shape)
            return values.reshape(-1)[where]
        return _after(base, op, kept)
    return {op: make(op) for op in ("convert_fp8_scales", "convert_fp8_moe_scales")}


# --- bias (§2.5, §6.1 item 14) -------------------------------------------------------------------

BIAS_OPS = ("marlin_permute_bias", "marlin_unpermute_bias")
BIAS_PREPARES = ("prepare_fp8_layer_for_marlin", "prepare_mxfp8_layer_for_marlin", "prepare_fp8_moe_layer_for_marlin")


def _bias_order(base: Backend, order) -> dict:
    """Biases permuted with `order` (None: left in logical order) instead of the single permutation."""
    single = mu.scale_order(False)

    def forward(b):
        logical = mu.unpermute_chunks(b, single)
        if order is not None and logical.size % order.size:
            raise ValueError(f"marlin_permute_bias: bias.size={logical.size} must be a multiple of {order.size}")
        return logical if order is None else mu.permute_chunks(logical, order)

    def backward(b):
        return mu.permute_chunks(b if order is None else mu.unpermute_chunks(b, order), single)
    return {"marlin_permute_bias": _after(base, "marlin_permute_bias", lambda out, args: forward(out)),
            "marlin_unpermute_bias": _after(base, "marlin_unpermute_bias", lambda out, args: backward(args["bias"])),
            **_layers(base, BIAS_PREPARES, lambda layer, op: _biases(layer, forward))}


_mutant("bias_not_permuted", "the bias passed into the kernel left in logical order",
        "§2.5, §6.1 item 14", "sglang PR #35020 (b_bias order mismatch; also #14978, #14986, #15951)",
        BIAS_OPS + BIAS_PREPARES, {"marlin_permute_bias": {"shape": [32]}})(lambda base: _bias_order(base, None))
_mutant("bias_grouped_perm", "the bias permuted with the grouped (64) instead of the single (32) table",
        "§2.5, §6.1 item 14", "§2.5 (the bias follows the accumulator layout, like channel-wise scales)",
        BIAS_OPS + BIAS_PREPARES, {"marlin_permute_bias": {"shape": [32]}})(
    lambda base: _bias_order(base, mu.scale_order(True)))


# --- MoE stacking and padding (§2.9, §2.11, §6.1 item 13) ------------------------------------------

_mutant("moe_experts_rolled", "stacked expert weights shifted by one (expert e holds e-1's)",
        "§2.9 step 2, §5", "natural mistake (off-by-one in the per-expert loop)", MOE,
        {"prepare_fp8_moe_layer_for_marlin": {"experts": 2}, "prepare_mxfp8_moe_layer_for_marlin": {"experts": 2}})(
    lambda base: _layers(base, MOE, lambda layer, op: _qweights(layer, lambda w: np.roll(w, 1, axis=0))))


def _w13_columns_at_end(layer):
    n, pn = layer.intermediate_size, layer.padded_intermediate

    def move(w):   # logical [E, k, 2pn]: [gate | pad | up | pad] -> [gate | up | pad pad]
        out = np.zeros_like(w)
        out[..., :n], out[..., n:2 * n] = w[..., :n], w[..., pn:pn + n]
        return out
    return layer._replace(w13_qweight=mu.rewrite_weight(layer.w13_qweight, move))


_mutant("w13_padded_at_end", "w13 zero-padded after [gate | up] instead of per shard",
        "§2.9 step 1, §6.1 item 13", "vLLM PR #50568, PR #51125 (per-shard padding of w13)", MOE,
        {"prepare_fp8_moe_layer_for_marlin": {"experts": 1, "intermediate": 48}})(
    lambda base: _layers(base, MOE, lambda layer, op: _w13_columns_at_end(layer)))


def _fill_padding(layer):
    def dense(w):   # logical [pk, pn]
        out = w.copy()
        out[layer.size_k:, :] = out[:, layer.size_n:] = PAD_CODE
        return out

    if hasattr(layer, "qweight"):
        return layer._replace(qweight=mu.rewrite_weight(layer.qweight, dense))
    n, pn = layer.intermediate_size, layer.padded_intermediate

    def w13(w):     # logical [E, k, 2pn]
        out = w.copy()
        out[..., n:pn] = out[..., pn + n:] = PAD_CODE
        return out

    def w2(w):      # logical [E, pn, k]
        out = w.copy()
        out[..., n:, :] = PAD_CODE
        return out
    return layer._replace(w13_qweight=mu.rewrite_weight(layer.w13_qweight, w13),
                          w2_qweight=mu.rewrite_weight(layer.w2_qweight, w2))


_mutant("padding_not_zero", f"padded fp8 weights hold 0x{PAD_CODE:02X} instead of 0x00",
        "§2.11, §6.1 item 13", "§6.1 item 13 ('padded fp8 weights 0x00'); torch.empty instead of zeros",
        DENSE + MOE, {"prepare_fp8_layer_for_marlin": {"size_k": 128, "size_n": 48}})(
    lambda base: _layers(base, DENSE + MOE, lambda layer, op: _fill_padding(layer)))


# --- MXFP8 intermediate dtype (§2.10, §6.1 item 16) -------------------------------------------------

@_mutant("e8m0_through_fp16", "e8m0 scales pushed through float16 whatever the intermediate dtype",
         "§2.10 hazard, §6.1 item 16", "§6.1 item 16 (torch.get_default_dtype() == float16)",
         ("mxfp8_scales_to_float",) + MX)
def _through_fp16(base):
    def change(args):
        return {**args, "intermediate_dtype": "float16"}
    return {op: _before(base, op, change) for op in ("mxfp8_scales_to_float",) + MX}


# --- the GEMM and the linear layer: properties.strength.gemm_mutants (imported below, it registers its own) ---

# --- registry ----------------------------------------------------------------------------------

def mutant_backend(spec: str) -> Backend:
    """"<name>" or "<name>@<base backend>" -> the mutant's Backend (the `mutant:` scheme)."""
    name, _, base = spec.partition("@")
    if name not in MUTANTS:
        raise ValueError(f"mutant_backend: mutant {name!r} is not one of {sorted(MUTANTS)}")
    return MUTANTS[name].backend(base or DEFAULT_BASE)


def register() -> None:
    """Make `mutant:<name>` resolvable by properties.seam.backends.get_backend (idempotent)."""
    register_scheme(SCHEME, mutant_backend)


register()
importlib.import_module("properties.strength.gemm_mutants")      # the GEMM and linear-layer mutants join MUTANTS


def __getattr__(name: str):
    """`properties.strength.mutants:<name>` on the command line: a factory returning the mutant backend."""
    if name in MUTANTS:
        return _named(name, lambda: mutant_backend(name))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
