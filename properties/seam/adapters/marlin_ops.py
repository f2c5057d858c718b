"""The `marlin-ops:<namespace>` scheme: vLLM's compiled Marlin ops, registered in any `torch.ops.<namespace>`.

A build of vLLM's kernels (vLLM's own `_C`, or a standalone build such as kernels-community's) registers
`gptq_marlin_repack` and `marlin_gemm` (or `gptq_marlin_gemm`) with one of the schemas of spec §4.3. This
adapter reads the registered schema (`torch.ops.<ns>.<op>.default._schema`, arguments by name), fills every
argument by its name and wraps the op as our contract op; every other transform comes from our own torch
fast path `marlin_fast`, so the kernels are tested with our transforms around them (the version string says
so). Load the library before resolving the name (import its package, or `torch.ops.load_library(path)`).

    gptq_marlin_repack(b_q_weight, perm, size_k, size_n, num_bits)          our contract (§2.3)
        2025 snapshot   (b_q_weight, perm, size_k, size_n, num_bits)
        current         (b_q_weight, perm, size_k, size_n, num_bits, is_a_8bit)     is_a_8bit = False
        newest          (b_q_weight, size_k, size_n, num_bits, is_a_8bit)           no perm: a non-empty
                                                                                  perm is "not provided"
    marlin_gemm(a, b_q_weight, b_scales, b_bias=None, *, size_n, size_k)    our contract (marlin_fast.cuda)
        2025 snapshot   gptq_marlin_gemm(a, c, b_q_weight, b_scales, global_scale, b_zeros, g_idx, perm,
                        workspace, b_q_type, size_m, size_n, size_k, is_k_full, use_atomic_add,
                        use_fp32_reduce, is_zp_float): no b_bias and no e8m0 scale type (§7), so its
                        capability leaves out the "bias" feature and the "mx" scheme: those cells are "not
                        provided", and such a case is never sent (the library would reject it, and on some
                        images a rejection with a formatted message kills the process, §9)
        current         marlin_gemm(a, c, b_q_weight, b_bias, b_scales, a_scales, global_scale, b_zeros,
                        g_idx, perm, workspace, b_type_id, size_m, ..., is_zp_float): bias into the kernel
        newest          the same without g_idx, perm and is_k_full

    Values given (§2.13, §4.1, §4.4): c, a_scales, global_scale, zeros, g_idx, perm = None;
    workspace = int32 zeros of length #SMs (1 on the CPU); b_type_id = FLOAT8_E4M3FN_TYPE_ID (MXFP8 is the
    same weight type with float8_e8m0fnu scales: uint8 scale codes are viewed as such); size_m = a.shape[0];
    is_k_full = True, use_atomic_add = False, use_fp32_reduce = True, is_zp_float = False.

    >>> FLOAT8_E4M3FN_TYPE_ID                      # scalar_types.float8_e4m3fn.id (§1)
    2814749767172868
    >>> schema_label(REPACK_SCHEMAS, ("b_q_weight", "size_k", "size_n", "num_bits", "is_a_8bit"))
    'newest (no perm)'

An argument name we do not know, or a missing one we need, makes the op "not provided" with the schema
in the reason; a namespace without any operator makes every op "not provided". Nothing here crashes.
"""

from __future__ import annotations

import importlib
from typing import Callable

from properties.seam.backends import (OPERATIONS, Backend, NotProvided, _package_version, adapt, register_scheme,
                                 torch_adapter)
from properties.seam.capabilities import EVERYTHING, Capability

SCHEME = "marlin-ops"

# ScalarType id of float8_e4m3fn (§1): exponent 4 | mantissa 3 << 8 | signed << 16 | bias 0 << 17
# | finite-only << 49 | NaN repr EXTD_RANGE_MAX_MIN (2) << 50. The C++ side keys on kFE4M3fn.
FLOAT8_E4M3FN_TYPE_ID = 4 | 3 << 8 | 1 << 16 | 0 << 17 | 1 << 49 | 2 << 50
DENSE_BLOCKS_PER_SM = 1            # marlin_make_workspace_new(device, max_blocks_per_sm=1) for dense GEMMs
CPU_WORKSPACE = 1                  # a CPU build has no SMs; one lock is enough for a sequential kernel
CPU_DISPATCH_KEYS = ("CPU", "CompositeExplicitAutograd", "CompositeImplicitAutograd")

REPACK_NAMES = ("gptq_marlin_repack",)
MOE_NAMES = ("moe_wna16_marlin_gemm",)            # vLLM's Marlin MoE GEMM (namespace _moe_C in vLLM itself, §4.3)
MOE_BLOCK_SIZES = (8, 16, 32, 48, 64)             # moe_block_size the kernel takes (§5)
MOE_BLOCKS_PER_SM = 4                             # the MoE workspace: #SMs · 4 (§5)
GEMM_NAMES = ("marlin_gemm", "gptq_marlin_gemm")   # current/newest name; the 2025 snapshot's (and older Python name)

REPACK_SCHEMAS = {
    ("b_q_weight", "perm", "size_k", "size_n", "num_bits"): "2025 snapshot (perm)",
    ("b_q_weight", "perm", "size_k", "size_n", "num_bits", "is_a_8bit"): "current (perm, is_a_8bit)",
    ("b_q_weight", "size_k", "size_n", "num_bits", "is_a_8bit"): "newest (no perm)",
}
REPACK_ARGS = frozenset(("b_q_weight", "perm", "size_k", "size_n", "num_bits", "is_a_8bit"))
REPACK_REQUIRED = frozenset(("b_q_weight", "size_k", "size_n", "num_bits"))

_GEMM_HEAD = ("a", "c_or_none", "b_q_weight")
_GEMM_FLAGS = ("use_atomic_add", "use_fp32_reduce", "is_zp_float")
_SIZES = ("size_m", "size_n", "size_k")
GEMM_SCHEMAS = {
    _GEMM_HEAD + ("b_scales", "global_scale", "b_zeros_or_none", "g_idx_or_none", "perm_or_none", "workspace",
                  "b_q_type") + _SIZES + ("is_k_full",) + _GEMM_FLAGS:
        "2025 snapshot (no b_bias: bias added after the GEMM in logical order)",
    _GEMM_HEAD + ("b_bias_or_none", "b_scales", "a_scales", "global_scale", "b_zeros_or_none", "g_idx_or_none",
                  "perm_or_none", "workspace", "b_type_id") + _SIZES + ("is_k_full",) + _GEMM_FLAGS:
        "current (b_bias into the kernel, g_idx/perm/is_k_full)",
    _GEMM_HEAD + ("b_bias_or_none", "b_scales", "a_scales", "global_scale", "b_zeros_or_none", "workspace",
                  "b_type_id") + _SIZES + _GEMM_FLAGS:
        "newest (b_bias into the kernel, no g_idx/perm/is_k_full)",
}
GEMM_ARGS = frozenset(name for names in GEMM_SCHEMAS for name in names)
GEMM_REQUIRED = frozenset(("a", "b_q_weight", "b_scales", "workspace") + _SIZES)
GEMM_TYPE_ARGS = frozenset(("b_type_id", "b_q_type"))   # renamed between the snapshot and current vLLM
MOE_ARGS = frozenset(("a", "c_or_none", "b_q_weight", "b_bias_or_none", "b_scales", "a_scales", "global_scale",
                      "b_zeros_or_none", "g_idx_or_none", "perm_or_none", "workspace", "sorted_token_ids",
                      "expert_ids", "num_tokens_past_padded", "topk_weights", "moe_block_size", "top_k",
                      "mul_topk_weights", "b_type_id", "size_m", "size_n", "size_k", "is_k_full", "use_atomic_add",
                      "use_fp32_reduce", "is_zp_float", "thread_k", "thread_n", "blocks_per_sm", "is_ep"))
MOE_REQUIRED = frozenset(("a", "b_q_weight", "b_scales", "workspace", "sorted_token_ids", "expert_ids",
                          "num_tokens_past_padded", "topk_weights", "moe_block_size", "top_k", "b_type_id",
                          "size_m", "size_n", "size_k"))


class Unsupported(Exception):
    """An op cannot be adapted; str(exc) is the "not provided" reason."""


def schema_label(table: dict, names: tuple) -> str:
    """The version name of a known argument list, else a neutral description."""
    return table.get(tuple(names), "a schema of known argument names")


# --- reading registered ops and signatures ------------------------------------------------------------

def registered_ops(namespace: str) -> list[str] | None:
    """Qualified names of the operators registered under `namespace` (None if torch cannot list them)."""
    import torch
    try:
        names = torch._C._dispatch_get_all_op_names()   # private, stable since torch 1.x; only a diagnostic
    except Exception:  # noqa: BLE001 - without the listing each op is looked up on its own
        return None
    return sorted(n for n in names if n.split("::")[0] == namespace)


def find_op(namespace: str, names: tuple[str, ...]):
    """(name, torch.ops.<namespace>.<name>) for the first registered name, else None."""
    import torch
    space = getattr(torch.ops, namespace)
    for name in names:
        try:
            return name, getattr(space, name)
        except (AttributeError, RuntimeError):   # torch raises AttributeError for a missing op
            continue
    return None


def signature(fn) -> tuple[tuple[str, ...], frozenset[str], str]:
    """(argument names in order, names without a default, printable signature) of a torch op or a
    Python callable. Raises Unsupported when neither a schema nor a Python signature can be read."""
    packet = fn
    if hasattr(packet, "overloads") and callable(packet.overloads):   # an OpOverloadPacket: its default
        overloads = packet.overloads()
        pick = "default" if "default" in overloads else (overloads[0] if len(overloads) == 1 else None)
        if pick is None:
            raise Unsupported(f"{packet} has overloads {overloads} and none is 'default'")
        packet = getattr(packet, pick)
    schema = getattr(packet, "_schema", None)
    if schema is not None:
        args = schema.arguments
        return (tuple(a.name for a in args), frozenset(a.name for a in args if not a.has_default_value()),
                str(schema))
    import inspect
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise Unsupported(f"cannot read the signature of {fn!r}: {exc}") from None
    params = [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return (tuple(p.name for p in params), frozenset(p.name for p in params if p.default is p.empty),
            f"{getattr(fn, '__qualname__', fn)}{sig}")


def check_arguments(where: str, sig: tuple, known: frozenset, required: frozenset) -> None:
    """Every argument without a default must be one we can fill, and every argument we need must exist."""
    names, without_default, text = sig
    unknown = sorted(without_default - known)
    lacking = sorted(required - set(names))
    if unknown or lacking:
        raise Unsupported(f"{where} has an unknown schema {text}"
                          + (f"; unknown arguments {unknown}" if unknown else "")
                          + (f"; lacks {lacking}" if lacking else ""))


def _has_kernel(qualname: str, key: str) -> bool:
    import torch
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key(qualname, key))
    except Exception:  # noqa: BLE001 - private API; assume no kernel
        return False


def kernel_gap(qualname: str, device: str) -> str | None:
    """Why `qualname` cannot run on `device` ("cpu"/"cuda"), or None."""
    import torch
    if device.startswith("cuda"):
        return None if torch.cuda.is_available() else "there is no CUDA device"
    if _has_kernel(qualname, "CUDA") and not any(_has_kernel(qualname, k) for k in CPU_DISPATCH_KEYS):
        return (f"torch.ops.{qualname.replace('::', '.')} has a CUDA kernel only and there is no CUDA device "
                f"(torch.cuda.is_available() is False)")
    return None


def op_device(qualname: str, device: str | None) -> str:
    """The device an op runs on: `device` if given, else CUDA when it has a CUDA kernel and a device exists."""
    import torch
    if device is None:
        device = "cuda" if torch.cuda.is_available() and _has_kernel(qualname, "CUDA") else "cpu"
    gap = kernel_gap(qualname, device)
    if gap:
        raise Unsupported(gap)
    return device


# --- the two wrappers (torch tensors in and out) -----------------------------------------------------

def repack_caller(fn: Callable, sig: tuple, backend: str, where: str) -> Callable:
    """Our gptq_marlin_repack(b_q_weight, perm, size_k, size_n, num_bits) on a vLLM repack of any §4.3 version."""
    names = sig[0]

    def gptq_marlin_repack(b_q_weight, perm, size_k, size_n, num_bits):
        import torch
        kwargs = {"b_q_weight": b_q_weight, "size_k": size_k, "size_n": size_n, "num_bits": num_bits}
        if "perm" in names:
            kwargs["perm"] = torch.empty(0, dtype=torch.int32, device=b_q_weight.device) if perm is None else perm
        elif perm is not None and perm.numel() > 0:
            raise NotProvided(backend, "gptq_marlin_repack",
                              f"{where} takes no perm (act-order was removed in the newest vLLM, spec §4.3), "
                              "so a non-empty perm cannot be passed")
        if "is_a_8bit" in names:
            kwargs["is_a_8bit"] = False        # 16-bit activations: the FP8 W8A16 layout (§2.3.1)
        return fn(**kwargs)

    return gptq_marlin_repack


def sm_count(device) -> int:
    """The length of a Marlin workspace on `device` (marlin_make_workspace_new: one lock per SM)."""
    import torch
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return CPU_WORKSPACE


def gemm_caller(fn: Callable, sig: tuple, backend: str) -> Callable:
    """Our marlin_gemm(a, b_q_weight, b_scales, b_bias=None, *, size_n, size_k) on a vLLM GEMM op."""
    names = sig[0]
    takes_bias = "b_bias_or_none" in names

    def marlin_gemm(a, b_q_weight, b_scales, b_bias=None, *, size_n, size_k, out=None):
        import torch
        if b_scales.dtype == torch.uint8:   # MXFP8: the kernel keys on the e8m0 dtype of b_scales (§4.1)
            b_scales = b_scales.view(torch.float8_e8m0fnu)
        workspace = torch.zeros(sm_count(a.device) * DENSE_BLOCKS_PER_SM, dtype=torch.int32, device=a.device)
        values = {
            "a": a, "c_or_none": out, "b_q_weight": b_q_weight, "b_bias_or_none": b_bias,
            "b_scales": b_scales, "a_scales": None, "global_scale": None, "b_zeros_or_none": None,
            "g_idx_or_none": None, "perm_or_none": None, "workspace": workspace,
            "b_type_id": FLOAT8_E4M3FN_TYPE_ID, "b_q_type": FLOAT8_E4M3FN_TYPE_ID,
            "size_m": a.shape[0], "size_n": size_n, "size_k": size_k,
            "is_k_full": True, "use_atomic_add": False, "use_fp32_reduce": True, "is_zp_float": False,
        }
        if b_bias is not None and not takes_bias:   # the capability keeps such cases away; never drop a bias
            raise NotProvided(backend, "marlin_gemm", "this schema has no b_bias argument (in-kernel bias)")
        return fn(**{name: values[name] for name in names if name in values})

    return marlin_gemm


def _resolve(namespace: str, names, args, required, device, *, missing: str):
    """(op packet, 'torch.ops.<ns>.<name>', its signature, device to run on) of the first of `names` in the
    namespace whose schema has the known arguments; raises Unsupported."""
    found = find_op(namespace, names)
    if found is None:
        raise Unsupported(f"torch.ops.{namespace} has {'no ' if not missing.startswith('neither') else ''}{missing}")
    name, packet = found
    where = f"torch.ops.{namespace}.{name}"
    sig = signature(packet)
    check_arguments(where, sig, args, required)
    return packet, where, sig, op_device(f"{namespace}::{name}", device)


def repack_capability(names: tuple[str, ...]) -> Capability:
    """The newest repack takes no perm: act-order cells are not provided (§4.3)."""
    if "perm" in names:
        return EVERYTHING
    return Capability(features=frozenset(), why="this gptq_marlin_repack takes no perm: act-order was removed in "
                                                "the newest vLLM (spec §4.3)")


# vLLM's marlin_mm rejects M = 0 ("Invalid MNK", a message with numbers: on some images the rejection kills the
# process, §9), and vLLM never calls it on an empty batch: a zero-row case is "not provided", never sent
GEMM_LIMITS = {"min_rows": 1}


def gemm_capability(names: tuple[str, ...]) -> Capability:
    """A GEMM schema without b_bias is the 2025 snapshot's: no in-kernel bias, no e8m0 scale type (§7)."""
    if "b_bias_or_none" in names:
        return Capability(limits=GEMM_LIMITS, why="vLLM's marlin_mm rejects M = 0")
    return Capability(schemes=frozenset({"channel", "group128"}), features=frozenset(), limits=GEMM_LIMITS,
                      why="the 2025 snapshot's gptq_marlin_gemm has no b_bias argument and no e8m0 scale type, "
                          "spec §7; its marlin_mm rejects M = 0")


def repack_op(namespace: str, backend: str, device: str | None = None) -> tuple[Callable, str, Capability]:
    """(NumPy-level gptq_marlin_repack on torch.ops.<namespace>, label, capability); raises Unsupported."""
    packet, where, sig, run_on = _resolve(namespace, REPACK_NAMES, REPACK_ARGS, REPACK_REQUIRED, device,
                                          missing="gptq_marlin_repack")
    return (torch_adapter(repack_caller(packet, sig, backend, where), run_on),
            f"{where} [{schema_label(REPACK_SCHEMAS, sig[0])}] on {run_on}", repack_capability(sig[0]))


def gemm_op(namespace: str, backend: str, device: str | None = None) -> tuple[Callable, str, Capability]:
    """(NumPy-level marlin_gemm on torch.ops.<namespace>, label, capability); raises Unsupported. The NumPy-level
    op keeps the library's torch-level GEMM as `.torch_gemm` (the linear layer is composed on it)."""
    packet, where, sig, run_on = _resolve(namespace, GEMM_NAMES, GEMM_ARGS, GEMM_REQUIRED, device,
                                          missing=f"neither {' nor '.join(GEMM_NAMES)}")
    if not GEMM_TYPE_ARGS & set(sig[0]):
        raise Unsupported(f"{where} has an unknown schema {sig[2]}; lacks one of {sorted(GEMM_TYPE_ARGS)}")
    label = f"{where} [{schema_label(GEMM_SCHEMAS, sig[0])}] on {run_on}"
    gemm = gemm_caller(packet, sig, backend)
    op = torch_adapter(gemm, run_on)
    op.torch_gemm, op.takes_bias, op.device = gemm, "b_bias_or_none" in sig[0], run_on
    return op, label, gemm_capability(sig[0])


def moe_block_size(tokens: int, top_k: int, experts: int) -> int:
    """fused_marlin_moe's choice (§5): the first block size with M·top_k/E/bm < 0.9, else the largest."""
    return next((bm for bm in MOE_BLOCK_SIZES if tokens * top_k / max(experts, 1) / bm < 0.9), MOE_BLOCK_SIZES[-1])


def align_tokens(topk_ids, experts: int, block: int):
    """(sorted_token_ids, expert_ids, num_tokens_past_padded) as vLLM's moe_align_block_size gives them: the rows
    m·top_k + j grouped by expert in blocks of `block`, padded with M·top_k; a slot routed to no expert (-1) is in no
    block, so its row is never written (the output starts zeroed)."""
    import torch

    flat = topk_ids.reshape(-1).to(torch.int64)                              # [M·top_k]
    pad = flat.numel()
    sorted_ids, expert_ids = [], []
    for e in range(experts):
        rows = torch.nonzero(flat == e).reshape(-1).to(torch.int32)
        for start in range(0, rows.numel(), block):
            chunk = rows[start:start + block]
            sorted_ids.append(torch.cat([chunk, chunk.new_full((block - chunk.numel(),), pad)]))
            expert_ids.append(e)
    device = topk_ids.device
    sorted_t = torch.cat(sorted_ids) if sorted_ids else torch.empty(0, dtype=torch.int32, device=device)
    return (sorted_t.to(device), torch.tensor(expert_ids, dtype=torch.int32, device=device),
            torch.tensor([sorted_t.numel()], dtype=torch.int32, device=device))


def moe_caller(fn: Callable, sig: tuple) -> Callable:
    """Our marlin_moe_gemm(a, b_q_weight, b_scales, b_bias=None, *, topk_ids, topk_weights=None, size_n, size_k,
    mul_topk_weights=False) on vLLM's moe_wna16_marlin_gemm (§4.3, §5): the tokens aligned by expert as vLLM's
    moe_align_block_size does, a zeroed output and workspace, every other argument as fused_marlin_moe passes it."""
    names = sig[0]

    def marlin_moe_gemm(a, b_q_weight, b_scales, b_bias=None, *, topk_ids, topk_weights=None, size_n, size_k,
                        mul_topk_weights=False):
        import torch
        if b_scales.dtype == torch.uint8:
            b_scales = b_scales.view(torch.float8_e8m0fnu)
        experts, top_k, tokens = b_q_weight.shape[0], topk_ids.shape[1], a.shape[0]
        block = moe_block_size(tokens, top_k, experts)
        sorted_ids, expert_ids, past_padded = align_tokens(topk_ids, experts, block)
        weights = (torch.ones(topk_ids.shape, dtype=torch.float32, device=a.device) if topk_weights is None
                   else topk_weights.to(torch.float32))
        values = {
            "a": a, "c_or_none": torch.zeros((tokens * top_k, size_n), dtype=a.dtype, device=a.device),
            "b_q_weight": b_q_weight, "b_bias_or_none": b_bias, "b_scales": b_scales, "a_scales": None,
            "global_scale": None, "b_zeros_or_none": None, "g_idx_or_none": None, "perm_or_none": None,
            "workspace": torch.zeros(sm_count(a.device) * MOE_BLOCKS_PER_SM, dtype=torch.int32, device=a.device),
            "sorted_token_ids": sorted_ids, "expert_ids": expert_ids, "num_tokens_past_padded": past_padded,
            "topk_weights": weights, "moe_block_size": block, "top_k": top_k, "mul_topk_weights": mul_topk_weights,
            "is_ep": False, "b_type_id": FLOAT8_E4M3FN_TYPE_ID, "size_m": tokens, "size_n": size_n, "size_k": size_k,
            "is_k_full": True, "use_atomic_add": False, "use_fp32_reduce": True, "is_zp_float": False,
            "thread_k": -1, "thread_n": -1, "blocks_per_sm": -1,
        }
        return fn(**{name: values[name] for name in names if name in values})

    return marlin_moe_gemm


def moe_op(namespace: str, backend: str, device: str | None = None) -> tuple[Callable, str, Capability]:
    """(NumPy-level marlin_moe_gemm on torch.ops.<namespace>.moe_wna16_marlin_gemm, label, capability)."""
    packet, where, sig, run_on = _resolve(namespace, MOE_NAMES, MOE_ARGS, MOE_REQUIRED, device,
                                          missing=MOE_NAMES[0])
    return torch_adapter(moe_caller(packet, sig), run_on), f"{where} on {run_on}", EVERYTHING


def linear_ops(gemm_op_: Callable, capability: Capability) -> tuple[dict, dict]:
    """({op: NumPy-level op}, {op: capability}) of the linear layer composed on a library's GEMM with marlin_fast's
    padding and slicing (§2.13). A GEMM without b_bias gets the bias as the 2025 snapshot's Python layer added it:
    after the GEMM, in logical order, RT(RT(acc) + b) (the prepared bias is in kernel order: un-permuted first)."""
    from marlin_fast.apply_fp8_marlin_linear import apply_with
    from marlin_fast.marlin_permute_bias import marlin_unpermute_bias

    gemm, takes_bias = gemm_op_.torch_gemm, gemm_op_.takes_bias

    def gemm_then_bias(a, b_q_weight, b_scales, b_bias=None, *, size_n, size_k):
        if b_bias is None or takes_bias:
            return gemm(a, b_q_weight, b_scales, b_bias, size_n=size_n, size_k=size_k)
        out = gemm(a, b_q_weight, b_scales, None, size_n=size_n, size_k=size_k)
        return (out.double() + marlin_unpermute_bias(b_bias).double()).to(out.dtype)   # one rounding, like half2

    ops = {"apply_fp8_marlin_linear": torch_adapter(apply_with(gemm_then_bias), gemm_op_.device),
           "apply_mxfp8_marlin_linear": torch_adapter(apply_with(gemm_then_bias, mx=True), gemm_op_.device)}
    without_mx = capability.schemes is not None and "mx" not in capability.schemes
    mx = Capability(schemes=frozenset(), why=capability.why) if without_mx else EVERYTHING
    return ops, {"apply_fp8_marlin_linear": EVERYTHING, "apply_mxfp8_marlin_linear": mx}


# --- the backend ---------------------------------------------------------------------------------

def marlin_ops_backend(namespace: str, *, device: str | None = None) -> Backend:
    """The Backend "marlin-ops:<namespace>". device: where every op runs (default: the two vLLM ops on CUDA
    when they have a CUDA kernel and a device exists, else the CPU; marlin_fast on CUDA when available)."""
    import torch

    name = f"{SCHEME}:{namespace}"
    if not namespace.isidentifier():
        raise ValueError(f"get_backend: {name!r}: the namespace {namespace!r} must be a Python identifier "
                         f"naming a torch.ops namespace, e.g. '{SCHEME}:_C'")
    registered = registered_ops(namespace)
    why = None
    if registered == []:
        why = (f"torch.ops.{namespace} has no registered operators: no such namespace, or the library that "
               f"defines it is not loaded (import its package or call torch.ops.load_library(path) before "
               f"resolving {name!r})")
    elif not any(find_op(namespace, names) for names in (REPACK_NAMES, GEMM_NAMES, MOE_NAMES)):
        why = (f"torch.ops.{namespace} registers none of {', '.join(REPACK_NAMES + GEMM_NAMES + MOE_NAMES)}: it is "
               f"not a build of vLLM's Marlin ops")
    if why:
        return Backend(name, f"torch.ops.{namespace}: no Marlin ops", {}, {op: why for op in OPERATIONS})
    rest_device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    marlin_fast = importlib.import_module("marlin_fast")
    base = adapt(name, "", marlin_fast, convention="torch", device=rest_device, stems=True)
    ops, missing, labels, capabilities = dict(base.ops), dict(base.missing), [], {}
    for op, build in (("gptq_marlin_repack", repack_op), ("marlin_gemm", gemm_op), ("marlin_moe_gemm", moe_op)):
        ops.pop(op, None)
        try:
            ops[op], label, capabilities[op] = build(namespace, name, device)
            missing.pop(op, None)
        except Unsupported as exc:
            missing[op], label = str(exc), "not provided"
        labels.append(f"{op}: {label}")
    if "marlin_gemm" in ops:          # the linear layer: marlin_fast's padding and slicing around the library's GEMM
        linear, linear_capabilities = linear_ops(ops["marlin_gemm"], capabilities["marlin_gemm"])
        ops.update(linear)
        capabilities.update(linear_capabilities)
        labels.append("apply_*_marlin_linear: composed on its marlin_gemm")
    else:
        for op in ("apply_fp8_marlin_linear", "apply_mxfp8_marlin_linear"):
            ops.pop(op, None)
            missing[op] = f"the linear layer needs the library's GEMM: {missing['marlin_gemm']}"
    version = (f"{'; '.join(labels)}; every other transform from marlin_fast "
               f"{_package_version(marlin_fast)} (torch {torch.__version__}, {rest_device})")
    return Backend(name, version, ops, missing, capabilities)


def register() -> None:
    """Make get_backend resolve "marlin-ops:<namespace>"."""
    register_scheme(SCHEME, marlin_ops_backend)
