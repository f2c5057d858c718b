"""The `vllm` backend: vLLM's own functions behind the backend seam, when vLLM is importable.

Each contract op is looked up on its own, in every place vLLM has kept it, newest first (`SOURCES`). The first
place that has it and can serve (a signature this adapter knows, a kernel for the device) is used, called the
way that place is called; the version string names where each op was found. What vLLM has nowhere is "not
provided", with each place looked in and why; without vLLM every op is "not provided: vllm is not importable"
(nothing is ever installed or fetched).

    contract op                          places, newest first (fp8, utils, ops, _C: below)
    pack_fp8_to_int32                    fp8.pack_fp8_to_int32(fp8_tensor, size_k_first) (uint8 codes viewed as e4m3fn)
    fp8_fused_exponent_bias_into_scales  fp8.fp8_fused_exponent_bias_into_scales(scales)
    mxfp8_marlin_process_scales          fp8.mxfp8_marlin_process_scales(marlin_scales);
                                         ops.mxfp4_marlin_process_scales(s, input_dtype=None): vLLM's MXFP4 op is
                                         §2.7's [0,2,1,3] reorder and e8m0 cast for 16-bit activations
    marlin_permute_scales                ops.marlin_permute_scales(s, size_k, size_n, group_size, is_a_8bit=False)
                                         (current, §9: the wrapper of _C.marlin_permute_scales_out);
                                         _C.marlin_permute_scales_out(s, out, single, tile_groups=32) (§4.3:
                                         writes `out`, single = not grouped, §2.4);
                                         utils.marlin_permute_scales(s, size_k, size_n, group_size) (older)
    marlin_permute_bias, marlin_padded_nk, marlin_moe_padded_intermediate
                                         utils.<same name>
    gptq_marlin_repack                   ops.gptq_marlin_repack; _C.gptq_marlin_repack: signature detected
                                         (perm, is_a_8bit, §4.3)
    prepare_fp8_layer_for_marlin         fp8.prepare_fp8_layer_for_marlin(layer, size_k_first, input_dtype)
    prepare_fp8_moe_layer_for_marlin     fp8.prepare_fp8_moe_layer_for_marlin(layer, w13, w2, s13, s2);
                                         fp8.prepare_moe_fp8_layer_for_marlin(layer, size_k_first) (older)
    prepare_mxfp8_layer_for_marlin       fp8.prepare_mxfp8_layer_for_marlin(layer)
    prepare_mxfp8_moe_layer_for_marlin   fp8.prepare_mxfp8_moe_layer_for_marlin(layer, w13, w2, s13, s2)
    marlin_gemm                          _C.marlin_gemm or _C.gptq_marlin_gemm, through properties.seam.adapters.marlin_ops

    fp8 = marlin_utils_fp8 and utils = marlin_utils (in vllm.model_executor.layers.quantization.utils);
    ops = vllm._custom_ops, Python wrappers of the compiled ops; _C = torch.ops._C, the compiled ops.

vLLM @ c54390e keeps marlin_permute_scales only as ops.marlin_permute_scales (marlin_utils has no Python one any
more; its prepare_* call the op, and the repack without perm); every other op is where the older layout had it.
vLLM's compiled ops have CUDA kernels only: on the CPU an op that runs one (found in ops or _C) is "not
provided", and so is each prepare_* whose vLLM code runs one (`USES`: the repack, the scale permutation, for
MXFP8 the scale processing). A build that has CPU kernels, like the tests' stand-in, is used as it is.

vLLM's prepare_* take a `layer` (a torch.nn.Module) and replace its parameters, or return new tensors. The
adapter builds the layer vLLM would hold, with CLONES of our inputs (vLLM may rewrite a parameter in place;
our inputs are never mutated), calls vLLM, and reads the result back into marlin_ref's MarlinLayer /
MarlinMoeLayer:

    layer attribute (spec)                           from our arguments
    weight, weight_scale, bias (§2.8, §2.10)         weight (fp8), weight_scale, bias cast to orig_dtype
                                                     (bfloat16 for MXFP8, its only activation dtype, §4.2)
    input_size_per_partition / output_size_...       K / N of the weight
    orig_dtype = params_dtype, weight_block_size,    orig_dtype, weight_block_size, logical_widths (set
    logical_widths (§2.8)                            only when given: vLLM reads getattr(.., [])))
    num_experts, hidden_size,                        E, k, n of w13 [E, 2n, k] and w2 [E, k, n] (§2.9);
    intermediate_size_per_partition, w13_weight...   the older MoE prep reads w13/w2 weights and scales
                                                     from the layer and is called with size_k_first=False
    torch.get_default_dtype() (§2.10 hazard)         intermediate_dtype, set around the MXFP8 calls only

    read back: qweight = layer.weight (or the returned tensor); padded_k = rows * 16, padded_n = cols / 4
    (marlin_repacked_nk, §2.11); group_size = block_k or -1 (32 for MXFP8).

MoE biases: vLLM's newest MoE prep takes none; vLLM permutes MoE biases with marlin_permute_bias per expert
(§2.9 item 6), which the adapter applies after casting to orig_dtype and zero-padding w13_bias per shard.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Callable, NamedTuple

from marlin_ref.prepare_fp8_layer_for_marlin import MarlinLayer
from marlin_ref.prepare_fp8_moe_layer_for_marlin import MarlinMoeLayer
from properties.seam.adapters.marlin_ops import (REPACK_ARGS, REPACK_REQUIRED, REPACK_SCHEMAS, Unsupported,
                                            check_arguments, find_op, gemm_op, kernel_gap, moe_op, repack_capability,
                                            repack_caller, schema_label, signature, sm_count)
from properties.seam.backends import OPERATIONS, Backend, BackendError, NotProvided, register_backend, torch_adapter

NAME = "vllm"
_UTILS = "vllm.model_executor.layers.quantization.utils"
FP8_UTILS, UTILS, CUSTOM_OPS = f"{_UTILS}.marlin_utils_fp8", f"{_UTILS}.marlin_utils", "vllm._custom_ops"
COMPILED = "torch.ops"     # a place in vLLM's compiled ops, torch.ops.<namespace>
VLLM_OPS_NAMESPACE = "_C"
VLLM_MOE_NAMESPACE = "_moe_C"   # moe_wna16_marlin_gemm: the one MoE GEMM of the contract (fused_marlin_moe is a whole
                                # MoE layer, gate/up, activation, down and the top-k sum: not this contract's op)
MARLIN_TILE = 16           # Marlin weight rows hold 16 k (§2.3): padded_k = rows * 16
FP8_PACK_FACTOR = 4        # 8-bit: 4 codes per int32, so padded_n = cols * 4 / 16 (§2.11)
MX_BLOCK = 32              # OCP MX: one e8m0 scale per 32 weights along K (§2.10)

_INVERSE = "vLLM has no inverse transforms (they are this suite's own)"
_INLINE = "vLLM converts scales inline in its prepare_* functions (no function of its own; tested through them)"
NO_EQUIVALENT = {
    **dict.fromkeys(("unpack_fp8_from_int32", "gptq_marlin_unrepack", "marlin_unpermute_scales",
                     "marlin_unpermute_bias", "fp8_unfuse_exponent_bias_from_scales",
                     "mxfp8_marlin_unprocess_scales"), _INVERSE),
    **dict.fromkeys(("convert_fp8_scales", "convert_fp8_moe_scales", "mxfp8_scales_to_float"), _INLINE),
    "uses_grouped_scale_permutation": "vLLM makes this choice inside marlin_permute_scales (no function of its own)",
}


# --- torch helpers -----------------------------------------------------------------------------

def _e4m3(t):
    """fp8 weights as vLLM asserts them: float8_e4m3fn (our uint8 codes are viewed, not converted)."""
    import torch
    return t.view(torch.float8_e4m3fn) if t.dtype == torch.uint8 else t


def _rank(op: str, name: str, t, rank: int):
    if t.dim() != rank:
        raise ValueError(f"{op}: {name} must be {rank}-D, got shape {tuple(t.shape)}")
    return t


def _layer(tensors: dict, **attrs):
    """A torch.nn.Module holding clones of `tensors` as frozen Parameters (None kept) and plain `attrs`."""
    import torch
    layer = torch.nn.Module()
    for name, t in tensors.items():
        layer.register_parameter(name, None if t is None else torch.nn.Parameter(t.clone(), requires_grad=False))
    for name, value in attrs.items():
        setattr(layer, name, value)
    return layer


@contextlib.contextmanager
def _default_dtype(dtype):
    """vLLM's MXFP8 prep converts scales through torch.get_default_dtype() (§2.10): set it for one call."""
    import torch
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _padded_nk(qweight) -> tuple[int, int]:
    """(padded_k, padded_n) of a Marlin FP8 weight [..., K/16, 4N] (marlin_repacked_nk, §2.11)."""
    rows, cols = qweight.shape[-2:]
    return rows * MARLIN_TILE, cols * FP8_PACK_FACTOR // MARLIN_TILE


def _dtypes():
    from marlin_fast.formats import as_activation_dtype, as_float_dtype, as_torch_dtype
    return as_activation_dtype, as_float_dtype, as_torch_dtype


# --- one builder per calling convention: (vLLM function, context, where) -> torch-level callable -------

class _Context:
    def __init__(self):
        self.fns = {}       # contract op -> the vLLM function chosen for it
        self.first = {}     # contract op -> (where, kernel gap or None) of the first place vLLM has it
        self.labels = {}    # where -> what was detected there (a signature's version), for the version string
        self.capabilities = {}  # contract op -> what the detected signature provides (properties.seam.capabilities)

    def permute_bias(self, op: str):
        fn = self.fns.get("marlin_permute_bias")
        if fn is None:
            raise NotProvided(NAME, op, "MoE biases need vLLM's marlin_permute_bias, which this vLLM lacks")
        return fn


# vLLM's parameter names differ from the contract's (laws call by keyword), so each op gets a wrapper

def _fuse(fn, ctx, where):
    def fp8_fused_exponent_bias_into_scales(s):
        return fn(s)
    return fp8_fused_exponent_bias_into_scales


def _process(fn, ctx, where):
    def mxfp8_marlin_process_scales(ms):
        return fn(ms)
    return mxfp8_marlin_process_scales


def _process_mxfp4(fn, ctx, where):
    """ops.mxfp4_marlin_process_scales(s, input_dtype=None): input_dtype None means 16-bit activations, for
    which the compiled op is §2.7's [0,2,1,3] reorder and c10's e8m0 cast (marlin_scales.cu @ c54390e)."""
    sig = signature(fn)
    first = frozenset(sig[0][:1])
    check_arguments(where, sig, first | {"input_dtype"}, first)

    def mxfp8_marlin_process_scales(ms):
        return fn(ms, input_dtype=None) if "input_dtype" in sig[0] else fn(ms)
    return mxfp8_marlin_process_scales


def _permute_bias(fn, ctx, where):
    def marlin_permute_bias(bias):
        return fn(bias)
    return marlin_permute_bias


def _padded_nk_op(fn, ctx, where):
    def marlin_padded_nk(size_n, size_k, group_size=-1):
        return tuple(fn(size_n, size_k, group_size))
    return marlin_padded_nk


def _moe_padded(fn, ctx, where):
    def marlin_moe_padded_intermediate(size_n, group_size=-1):
        return fn(size_n, group_size)
    return marlin_moe_padded_intermediate


LINEAR_ARGS = frozenset(("input", "weight", "weight_scale", "workspace", "size_n", "size_k", "bias"))


def _apply_linear(fn, ctx, where):
    """vLLM's apply_*_marlin_linear(input, weight, weight_scale, workspace, size_n, size_k, bias, ...) (§2.13): a
    zeroed workspace of #SMs ints as marlin_make_workspace_new gives, the prepared layer's tensors as they are."""
    sig = signature(fn)
    check_arguments(where, sig, LINEAR_ARGS, LINEAR_ARGS - {"workspace"})

    def apply(input, weight, weight_scale, *, size_n, size_k, bias=None):
        import torch
        if weight_scale.dtype == torch.uint8:        # e8m0 codes: the dtype vLLM's MXFP8 path keys on (§4.1)
            weight_scale = weight_scale.view(torch.float8_e8m0fnu)
        workspace = torch.zeros(sm_count(input.device), dtype=torch.int32, device=input.device)
        given = {"input": input, "weight": weight, "weight_scale": weight_scale, "workspace": workspace,
                 "size_n": size_n, "size_k": size_k, "bias": bias}
        return fn(**{name: value for name, value in given.items() if name in sig[0]})
    return apply


def _pack(fn, ctx, where):
    def pack_fp8_to_int32(fp8, size_k_first=True):
        return fn(_e4m3(fp8), size_k_first=size_k_first)
    return pack_fp8_to_int32


PERMUTE_SCALES_ARGS = frozenset(("s", "size_k", "size_n", "group_size", "is_a_8bit"))
PERMUTE_SCALES_OUT_ARGS = frozenset(("s", "out", "single", "tile_groups"))


def _permute_scales(fn, ctx, where):
    """The older Python function and the current ops wrapper take the same names: (s, size_k, size_n,
    group_size[, is_a_8bit=False]); vLLM's own call sites pass them by keyword."""
    sig = signature(fn)
    check_arguments(where, sig, PERMUTE_SCALES_ARGS, PERMUTE_SCALES_ARGS - {"is_a_8bit"})
    extra = {"is_a_8bit": False} if "is_a_8bit" in sig[0] else {}   # 16-bit activations (§2.4)

    def marlin_permute_scales(s, size_k, size_n, group_size):
        return fn(s=s, size_k=size_k, size_n=size_n, group_size=group_size, **extra)
    return marlin_permute_scales


def _permute_scales_out(fn, ctx, where):
    """_C.marlin_permute_scales_out(s, out, single, tile_groups=32) writes the permuted [G, N] scales into
    `out`; the caller picks the table: grouped iff group_size != -1 and group_size < size_k (§2.4)."""
    check_arguments(where, signature(fn), PERMUTE_SCALES_OUT_ARGS, PERMUTE_SCALES_OUT_ARGS - {"tile_groups"})

    def marlin_permute_scales(s, size_k, size_n, group_size):
        import torch
        out = torch.empty(s.shape, dtype=s.dtype, device=s.device)        # contiguous, as the op requires
        fn(s=s, out=out, single=not (group_size != -1 and group_size < size_k))
        return out.reshape(-1, size_n)                                      # [G, N]
    return marlin_permute_scales


def _repack(fn, ctx, where):
    sig = signature(fn)
    check_arguments(where, sig, REPACK_ARGS, REPACK_REQUIRED)
    ctx.labels[where] = schema_label(REPACK_SCHEMAS, sig[0])
    ctx.capabilities["gptq_marlin_repack"] = repack_capability(sig[0])
    return repack_caller(fn, sig, NAME, where)


def _prepare_fp8(fn, ctx, where):
    names = signature(fn)[0]

    def prepare_fp8_layer_for_marlin(weight, weight_scale, *, orig_dtype, size_k_first=True,
                                     weight_block_size=None, logical_widths=None, bias=None, input_dtype=None):
        op = "prepare_fp8_layer_for_marlin"
        as_activation_dtype, _, as_torch_dtype = _dtypes()
        dtype = as_activation_dtype(orig_dtype, op, "orig_dtype")
        weight = _rank(op, "weight", _e4m3(weight), 2)
        size_k, size_n = weight.shape if size_k_first else weight.shape[::-1]
        attrs = dict(orig_dtype=dtype, params_dtype=dtype, input_size_per_partition=size_k,
                     output_size_per_partition=size_n,
                     weight_block_size=None if weight_block_size is None else list(weight_block_size))
        if logical_widths is not None:
            attrs["logical_widths"] = list(logical_widths)
        layer = _layer({"weight": weight, "weight_scale": weight_scale,
                        "bias": None if bias is None else bias.to(dtype)}, **attrs)
        kwargs = {"size_k_first": size_k_first}
        if input_dtype is not None:
            if "input_dtype" not in names:
                raise NotProvided(NAME, op, f"this vLLM's {op}({', '.join(names)}) takes no input_dtype")
            kwargs["input_dtype"] = as_torch_dtype(input_dtype, op, "input_dtype")
        fn(layer, **kwargs)
        padded_k, padded_n = _padded_nk(layer.weight)
        group_size = -1 if weight_block_size is None else int(weight_block_size[1])
        return MarlinLayer(layer.weight.detach(), layer.weight_scale.detach(),
                           None if bias is None else layer.bias.detach(),
                           size_k, size_n, padded_k, padded_n, group_size)
    return prepare_fp8_layer_for_marlin


def _moe_bias(ctx, op: str, bias, shards: int, n: int, padded_n: int):
    """[E, shards*n] -> zero-padded per shard to [E, shards*padded_n], then vLLM's permutation per expert."""
    import torch
    permute = ctx.permute_bias(op)
    e = bias.shape[0]
    split = bias.reshape(e, shards, n)                                         # [E, shards, n]
    padded = torch.nn.functional.pad(split, (0, padded_n - n))                 # [E, shards, pn]
    padded = padded.reshape(e, shards * padded_n)                              # [E, shards*pn]
    return torch.stack([permute(padded[x].clone()) for x in range(e)])        # [E, shards*pn]


def _prepare_fp8_moe(fn, ctx, where):
    returns_tensors = "size_k_first" not in signature(fn)[0]   # newest (layer, w13, w2, s13, s2) -> tuple

    def prepare_fp8_moe_layer_for_marlin(w13, w2, w13_scale, w2_scale, *, orig_dtype, weight_block_size=None,
                                         w13_bias=None, w2_bias=None):
        op = "prepare_fp8_moe_layer_for_marlin"
        dtype = _dtypes()[0](orig_dtype, op, "orig_dtype")
        w13, w2 = _rank(op, "w13", _e4m3(w13), 3), _rank(op, "w2", _e4m3(w2), 3)
        e, k, n = w13.shape[0], w13.shape[2], w2.shape[2]
        attrs = dict(num_experts=e, hidden_size=k, intermediate_size_per_partition=n, orig_dtype=dtype,
                     params_dtype=dtype,
                     weight_block_size=None if weight_block_size is None else list(weight_block_size))
        biases = {name: b.to(dtype) for name, b in (("w13_bias", w13_bias), ("w2_bias", w2_bias)) if b is not None}
        if returns_tensors:
            layer = _layer({"w13_weight": w13, "w2_weight": w2}, **attrs)
            q13, q2, s13, s2 = fn(layer, w13.clone(), w2.clone(), w13_scale.clone(), w2_scale.clone())
            pn = _padded_nk(q2)[0]
            b13 = None if w13_bias is None else _moe_bias(ctx, op, biases["w13_bias"], 2, n, pn)
            b2 = None if w2_bias is None else _moe_bias(ctx, op, biases["w2_bias"], 1, k, k)
        else:   # the older prep rewrites the layer's parameters (and permutes the biases itself)
            layer = _layer({"w13_weight": w13, "w2_weight": w2, "w13_weight_scale": w13_scale,
                            "w2_weight_scale": w2_scale, **biases}, **attrs)
            fn(layer, size_k_first=False)
            q13, q2, s13, s2 = layer.w13_weight, layer.w2_weight, layer.w13_weight_scale, layer.w2_weight_scale
            b13 = layer.w13_bias.detach() if w13_bias is not None else None
            b2 = layer.w2_bias.detach() if w2_bias is not None else None
        group_size = -1 if weight_block_size is None else int(weight_block_size[1])
        return MarlinMoeLayer(q13.detach(), q2.detach(), s13.detach(), s2.detach(), b13, b2, e, k, n,
                              _padded_nk(q2)[0], group_size)
    return prepare_fp8_moe_layer_for_marlin


def _prepare_mxfp8(fn, ctx, where):
    def prepare_mxfp8_layer_for_marlin(weight, weight_scale, *, bias=None, intermediate_dtype="bfloat16"):
        import torch
        op = "prepare_mxfp8_layer_for_marlin"
        intermediate = _dtypes()[1](intermediate_dtype, op, "intermediate_dtype")
        weight = _rank(op, "weight", _e4m3(weight), 2)
        size_n, size_k = weight.shape                                              # [N, K]
        layer = _layer({"weight": weight, "weight_scale": weight_scale,
                        "bias": None if bias is None else bias.to(torch.bfloat16)},
                       input_size_per_partition=size_k, output_size_per_partition=size_n,
                       params_dtype=torch.bfloat16)
        with _default_dtype(intermediate):
            fn(layer)
        padded_k, padded_n = _padded_nk(layer.weight)
        return MarlinLayer(layer.weight.detach(), layer.weight_scale.detach(),
                           None if bias is None else layer.bias.detach(),
                           size_k, size_n, padded_k, padded_n, MX_BLOCK)
    return prepare_mxfp8_layer_for_marlin


def _prepare_mxfp8_moe(fn, ctx, where):
    def prepare_mxfp8_moe_layer_for_marlin(w13, w2, w13_scale, w2_scale, *, intermediate_dtype="bfloat16"):
        import torch
        op = "prepare_mxfp8_moe_layer_for_marlin"
        intermediate = _dtypes()[1](intermediate_dtype, op, "intermediate_dtype")
        w13, w2 = _rank(op, "w13", _e4m3(w13), 3), _rank(op, "w2", _e4m3(w2), 3)
        e, k, n = w13.shape[0], w13.shape[2], w2.shape[2]
        layer = _layer({}, num_experts=e, hidden_size=k, intermediate_size_per_partition=n,
                       params_dtype=torch.bfloat16)
        with _default_dtype(intermediate):
            q13, q2, s13, s2 = fn(layer, w13.clone(), w2.clone(), w13_scale.clone(), w2_scale.clone())
        return MarlinMoeLayer(q13.detach(), q2.detach(), s13.detach(), s2.detach(), None, None, e, k, n,
                              _padded_nk(q2)[0], MX_BLOCK)
    return prepare_mxfp8_moe_layer_for_marlin


class Place(NamedTuple):
    """One place a contract op may live in vLLM."""
    module: str                 # a vLLM module, or COMPILED: vLLM's compiled ops, torch.ops.<namespace>
    name: str                   # the function's (or operator's) name there
    build: Callable             # (what is found, context, where) -> callable with the contract's signature
    kernel: str | None = None   # the compiled op it runs (in vLLM's namespace): needs a kernel for the device


_PERMUTE_OUT = "marlin_permute_scales_out"
# contract op -> the places vLLM has kept it, newest first
SOURCES: dict[str, tuple[Place, ...]] = {
    "pack_fp8_to_int32": (Place(FP8_UTILS, "pack_fp8_to_int32", _pack),),
    "fp8_fused_exponent_bias_into_scales": (Place(FP8_UTILS, "fp8_fused_exponent_bias_into_scales", _fuse),),
    "mxfp8_marlin_process_scales": (
        Place(FP8_UTILS, "mxfp8_marlin_process_scales", _process),
        Place(CUSTOM_OPS, "mxfp4_marlin_process_scales", _process_mxfp4, "mxfp4_marlin_process_scales_out")),
    "prepare_fp8_layer_for_marlin": (Place(FP8_UTILS, "prepare_fp8_layer_for_marlin", _prepare_fp8),),
    "prepare_fp8_moe_layer_for_marlin": (Place(FP8_UTILS, "prepare_fp8_moe_layer_for_marlin", _prepare_fp8_moe),
                                         Place(FP8_UTILS, "prepare_moe_fp8_layer_for_marlin", _prepare_fp8_moe)),
    "prepare_mxfp8_layer_for_marlin": (Place(FP8_UTILS, "prepare_mxfp8_layer_for_marlin", _prepare_mxfp8),),
    "prepare_mxfp8_moe_layer_for_marlin": (
        Place(FP8_UTILS, "prepare_mxfp8_moe_layer_for_marlin", _prepare_mxfp8_moe),),
    "marlin_permute_scales": (Place(CUSTOM_OPS, "marlin_permute_scales", _permute_scales, _PERMUTE_OUT),
                              Place(COMPILED, _PERMUTE_OUT, _permute_scales_out, _PERMUTE_OUT),
                              Place(UTILS, "marlin_permute_scales", _permute_scales)),
    "marlin_permute_bias": (Place(UTILS, "marlin_permute_bias", _permute_bias),),
    "marlin_padded_nk": (Place(UTILS, "marlin_padded_nk", _padded_nk_op),),
    "marlin_moe_padded_intermediate": (Place(UTILS, "marlin_moe_padded_intermediate", _moe_padded),),
    "apply_fp8_marlin_linear": (Place(FP8_UTILS, "apply_fp8_marlin_linear", _apply_linear),),
    "apply_mxfp8_marlin_linear": (Place(FP8_UTILS, "apply_mxfp8_marlin_linear", _apply_linear),),
    "gptq_marlin_repack": (Place(CUSTOM_OPS, "gptq_marlin_repack", _repack, "gptq_marlin_repack"),
                           Place(COMPILED, "gptq_marlin_repack", _repack, "gptq_marlin_repack")),
}
_PLACE_ORDER = (FP8_UTILS, UTILS, CUSTOM_OPS, COMPILED)    # the version string lists places in this order
_PREP_USES = ("gptq_marlin_repack", "marlin_permute_scales")
USES = {   # prepare_* -> the ops vLLM's code for it calls (§2.8-§2.10): their kernels must run on the device
    "prepare_fp8_layer_for_marlin": _PREP_USES,
    "prepare_fp8_moe_layer_for_marlin": _PREP_USES,
    "prepare_mxfp8_layer_for_marlin": _PREP_USES + ("mxfp8_marlin_process_scales",),
    "prepare_mxfp8_moe_layer_for_marlin": _PREP_USES + ("mxfp8_marlin_process_scales",),
}


# --- discovery and the backend --------------------------------------------------------------------

def _broken(op: str, message: str, exc: BaseException) -> Callable:
    """vLLM is installed but a module of it raises on import: using the op fails, it is never skipped."""
    def call(*args, **kwargs):
        raise BackendError(f"{op}: {message}") from exc
    return call


def _import(module: str):
    """(module, None) or (None, reason) for a module vLLM lacks; other import errors propagate."""
    try:
        return importlib.import_module(module), None
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):   # it or a parent is absent
            return None, f"no module {module}"
        raise


def _resolve(op: str, ctx: _Context, modules: dict, namespace: str, device: str):
    """(torch-level contract op, its Place, where) from the first place of SOURCES[op] that vLLM has and that
    can serve; raises Unsupported naming every place looked in. A module that raises on import ends the
    search: the op fails on use (BackendError, Place None), never a skip. Records in ctx.first the first
    place vLLM has (the one vLLM's own prepare_* call) and its kernel gap."""
    looked = []
    for place in SOURCES[op]:
        if place.module == COMPILED:
            where = f"torch.ops.{namespace}.{place.name}"
            fn = (find_op(namespace, (place.name,)) or (None, None))[1]
        else:
            where = f"{place.module}.{place.name}"
            mod, why = modules[place.module]
            if isinstance(why, BaseException):
                return _broken(op, f"importing {place.module} failed: {type(why).__name__}: {why}", why), None, where
            fn = None if mod is None else getattr(mod, place.name, None)
            if why:
                looked.append(why)
                continue
        if not callable(fn):
            looked.append(f"no {where}")
            continue
        gap = place.kernel and kernel_gap(f"{namespace}::{place.kernel}", device)
        ctx.first.setdefault(op, (where, gap))
        if gap:
            looked.append(gap if place.module == COMPILED else f"{where}: {gap}")
            continue
        try:
            built = place.build(fn, ctx, where)
        except Unsupported as exc:     # a signature this adapter does not know
            looked.append(str(exc))
            continue
        ctx.fns[op] = fn
        return torch_adapter(built, device), place, where
    raise Unsupported("; ".join(dict.fromkeys(looked)))


def vllm_backend(device: str | None = None, *, ops_namespace: str = VLLM_OPS_NAMESPACE,
                 moe_namespace: str = VLLM_MOE_NAMESPACE) -> Backend:
    """The Backend "vllm". device: where tensors go (default: CUDA when available, else the CPU).
    ops_namespace / moe_namespace: the torch.ops namespaces of vLLM's compiled ops (tests pass stand-ins)."""
    try:
        vllm = importlib.import_module("vllm")
    except ModuleNotFoundError as exc:
        if exc.name == "vllm":
            return Backend(NAME, "absent", {}, {op: f"vllm is not importable ({exc})" for op in OPERATIONS})
        raise BackendError(f"backend {NAME!r}: importing vllm failed: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - installed but broken: a failure, never a skip
        raise BackendError(f"backend {NAME!r}: importing vllm failed: {type(exc).__name__}: {exc}") from exc
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    version = str(getattr(vllm, "__version__", "unknown"))
    modules = {}
    for module in dict.fromkeys(p.module for places in SOURCES.values() for p in places if p.module != COMPILED):
        try:
            modules[module] = _import(module)
        except Exception as exc:  # noqa: BLE001 - a broken vLLM fails the tests that use it
            modules[module] = (None, exc)
    ctx, ops, missing, found = _Context(), {}, dict(NO_EQUIVALENT), {}
    for op in SOURCES:
        try:
            ops[op], place, where = _resolve(op, ctx, modules, ops_namespace, device)
        except Unsupported as exc:
            missing[op] = f"vllm {version}: {exc}"
            continue
        if place is not None:
            entry = place.name + ("" if place.name == op else f" (as {op})")
            found[op] = (place.module, entry + (f" [{ctx.labels[where]}]" if where in ctx.labels else ""))
    # vLLM's prepare_* call, for each op they use, its first place (ctx.first): a compiled op there without
    # a kernel for the device (on the CPU: a CUDA kernel only) stops them too
    for op, uses in USES.items():
        gaps = [f"it runs {where}, and {gap}" for where, gap in (ctx.first.get(dep, ("", None)) for dep in uses)
                if gap]
        if gaps and op in found:
            del ops[op], found[op]
            missing[op] = "; ".join(gaps)
    mod, why = modules[CUSTOM_OPS]            # importing it loads vllm._C, whose ops marlin_gemm needs
    if isinstance(why, BaseException):
        ops["marlin_gemm"] = _broken("marlin_gemm", f"importing {CUSTOM_OPS} failed: {why}", why)
    elif mod is None:
        missing["marlin_gemm"] = f"vllm {version}: {why}, which loads vLLM's compiled ops"
    else:
        try:
            ops["marlin_gemm"], label, ctx.capabilities["marlin_gemm"] = gemm_op(ops_namespace, NAME, device)
            found["marlin_gemm"] = (COMPILED, label.removeprefix(f"torch.ops.{ops_namespace}."))
        except Unsupported as exc:
            missing["marlin_gemm"] = str(exc)
        try:
            ops["marlin_moe_gemm"], label, ctx.capabilities["marlin_moe_gemm"] = moe_op(moe_namespace, NAME, device)
            found["marlin_moe_gemm"] = (COMPILED, label.removeprefix(f"torch.ops.{moe_namespace}."))
        except Unsupported as exc:
            missing["marlin_moe_gemm"] = str(exc)
    groups: dict[str, list[str]] = {}
    for module, entry in sorted(found.values(), key=lambda f: _PLACE_ORDER.index(f[0])):   # stable: op order kept
        name = f"torch.ops.{ops_namespace}" if module == COMPILED else module.removeprefix(f"{_UTILS}.")
        groups.setdefault(name, []).append(entry)
    places = "".join(f"; {name}: {', '.join(entries)}" for name, entries in groups.items())
    return Backend(NAME, f"vllm {version} ({device}){places}", ops,
                   {op: why for op, why in missing.items() if op not in ops},
                   {op: c for op, c in ctx.capabilities.items() if op in ops})


def register() -> None:
    """Make get_backend resolve "vllm" (built lazily, on first use)."""
    register_backend(NAME, vllm_backend)
