"""CUDA kernels of the fast path: Marlin repack and the FP8 / MXFP8 W8A16 GEMM (dense and MoE).

Thin wrappers over the extension in ``csrc/`` (built on first use by ``_ext.load``). The C++ side
checks every precondition and raises ValueError/TypeError naming the rule and the value; these
wrappers only normalise Python-level arguments (None perms, router tables).

Layout card (spec §2.3.1, 8-bit): the Marlin weight int32 [K/16, 4N] stores logical (k, n) at byte
    16N*kt + 1024*nt + 128*c8 + 32*q + 8*w + 4*h + 2*e + g
    kt = k//16, nt = n//64, c8 = n%8, q = (k%8)//2, w = (n%64)//16, h = (n%16)//8, e = k%2, g = (k%16)//8
so lane t = 4*c8 + q of an mma.m16n8k16 warp finds its whole B operand of tile (kt, nt) in the 32
bytes at 1024*(kt*N/64 + nt) + 32*t: the GEMM loads them as they are (§2.14).

GEMM numerics (spec §3.2): fp32 accumulation on tensor cores; channel-wise fused scales F = S*2^beta
multiply the fp32 accumulator; group-128 scales give B = RT(u*S_g) in the activation dtype; MXFP8
B = RT(RT(u*2^-120*2^120)*2^(b-127)) (bf16 only; e8m0 byte 0 -> 0, 255 -> +inf). Output RT(acc),
bias added after rounding (RT(RT(acc)+b), bias in the single-permuted order of §2.5), MoE router
weights after that (RT(out*RT(w)), §5). Deterministic for fixed shapes: split-K partials are summed
by the last block in split order, no atomics on data. The bf16 channel-wise path keeps vLLM's
behaviour for tiny activations (products below 2^-29 * 2^120 underflow inside the MMA, §3.5, §3.7).

Example (needs a CUDA device)::

    q = gptq_marlin_repack(pack_fp8_to_int32(w_kn), None, K, N, 8)    # int32 [K/16, 4N]
    y = marlin_gemm(x, q, fused_scales, size_n=N, size_k=K)          # x: bf16 [M, K] -> bf16 [M, N]
"""

from __future__ import annotations

import torch

from . import _ext
from .apply_fp8_marlin_linear import apply_with

__all__ = [
    "gptq_marlin_repack",
    "fp8_marlin_repack_from_checkpoint",
    "marlin_gemm",
    "marlin_moe_gemm",
    "moe_align_block_rows",
    "apply_fp8_marlin_linear",
    "apply_mxfp8_marlin_linear",
]


_ERRORS = {1: ValueError, 2: TypeError, 3: RuntimeError}


def _result(returned):
    """The extension returns (tensor, kind, message) instead of throwing (see csrc/bindings.cpp)."""
    tensor, kind, message = returned
    if kind:
        raise _ERRORS.get(kind, RuntimeError)(message)
    return tensor


def _require_tensor(fn: str, name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def _require_int(fn: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{fn}: {name} must be an int, got {type(value).__name__}")
    return value


def gptq_marlin_repack(
    b_q_weight: torch.Tensor, perm: torch.Tensor | None, size_k: int, size_n: int, num_bits: int
) -> torch.Tensor:
    """GPTQ-packed int32 [K/pf, N] (CUDA) -> Marlin int32 [K/16, N*16/pf] (spec §2.3).

    perm: None, an empty tensor, or int32 [K] act-order permutation (output row-slot k takes source
    row perm[k]). num_bits: 8 (FP8) or 4. Bit-identical to the oracle's gptq_marlin_repack.
    """
    fn = "gptq_marlin_repack"
    _require_tensor(fn, "b_q_weight", b_q_weight)
    for name, v in (("size_k", size_k), ("size_n", size_n), ("num_bits", num_bits)):
        _require_int(fn, name, v)
    if perm is None:
        perm = torch.empty(0, dtype=torch.int32, device=b_q_weight.device)
    _require_tensor(fn, "perm", perm)
    return _result(_ext.load().gptq_marlin_repack(b_q_weight, perm, size_k, size_n, num_bits))


def fp8_marlin_repack_from_checkpoint(weight: torch.Tensor, size_k: int | None = None,
                                      size_n: int | None = None) -> torch.Tensor:
    """Checkpoint fp8 weight [N, K] (CUDA) straight to the Marlin int32 [K/16, 4N].

    Equals gptq_marlin_repack(pack_fp8_to_int32(weight, size_k_first=False).T.contiguous(), None, K, N, 8)
    (spec §2.2, §2.8 step 3) without materialising the packed or transposed copies: the [N, K] bytes
    viewed as int32 [N, K/4] are the transpose of the GPTQ-packed words, and the kernel reads them so.
    """
    fn = "fp8_marlin_repack_from_checkpoint"
    _require_tensor(fn, "weight", weight)
    if weight.dim() != 2:
        raise ValueError(f"{fn}: weight must be 2-D [size_n, size_k], got shape {tuple(weight.shape)}")
    size_n = weight.shape[0] if size_n is None else _require_int(fn, "size_n", size_n)
    size_k = weight.shape[1] if size_k is None else _require_int(fn, "size_k", size_k)
    return _result(_ext.load().fp8_marlin_repack_from_checkpoint(weight, size_k, size_n))


def marlin_gemm(
    a: torch.Tensor,
    b_q_weight: torch.Tensor,
    b_scales: torch.Tensor,
    b_bias: torch.Tensor | None = None,
    *,
    size_n: int,
    size_k: int,
    out: torch.Tensor | None = None,
    config: int | None = None,
    splits: int | None = None,
) -> torch.Tensor:
    """y = a . W (+ b_bias) with W the Marlin FP8 weight; output in a's dtype, shape [M, size_n].

    a: fp16/bf16 [M, size_k] on CUDA, stride(1) == 1, stride(0) % 8 == 0, 16-byte aligned.
    b_q_weight: Marlin int32 [size_k/16, 4*size_n].
    b_scales: [1, N] channel-wise or [K/128, N] group-128 fused scales in a's dtype (permuted, §2.4,
    exponent bias fused, §2.6), or MXFP8 e8m0 [K/32, N] (float8_e8m0fnu or uint8, processed per
    §2.7; bf16 activations only). b_bias: [N] in a's dtype, single-permuted (§2.5).
    out: optional contiguous [M, N] buffer to write into. config / splits: pin the thread-block
    configuration (0..7, see csrc/launch.h; 4 and 5 need sm_90, 6 sm_90a) and the split-K count (testing
    and benchmarking; None = by M and the weight's size, csrc/bindings.cpp dense_config, and the planner of
    csrc/gemm_dispatch.cu).
    Shapes: size_k % 16 == 0 (group-128: K = 128·G; MXFP8: K = 32·G with G >= 2), size_n % 64 == 0,
    any M >= 0. Deterministic for a fixed (shape, config, splits).
    """
    fn = "marlin_gemm"
    for name, t in (("a", a), ("b_q_weight", b_q_weight), ("b_scales", b_scales)):
        _require_tensor(fn, name, t)
    if b_bias is not None:
        _require_tensor(fn, "b_bias", b_bias)
    _require_int(fn, "size_n", size_n)
    _require_int(fn, "size_k", size_k)
    return _result(_ext.load().marlin_gemm(
        a, b_q_weight, b_scales, b_bias, out, size_n, size_k,
        -1 if config is None else config, -1 if splits is None else splits,
    ))


def moe_align_block_rows(topk_ids: torch.Tensor, num_experts: int, block_m: int):
    """Group the output rows of a MoE GEMM by expert, padded to blocks of block_m rows.

    Output row r = m*top_k + i (token m, its i-th expert topk_ids[m, i]). Returns int32
    (sorted_ids [blocks*block_m], expert_ids [blocks]): block b holds rows of expert expert_ids[b]
    in increasing r, padded with -1. A stable sort, so the grouping is deterministic.
    """
    flat = topk_ids.reshape(-1).to(torch.int64)                      # [rows]
    rows = flat.numel()
    device = flat.device
    counts = torch.bincount(flat, minlength=num_experts)            # [E]
    blocks_per_expert = (counts + block_m - 1) // block_m           # [E]
    order = torch.argsort(flat, stable=True)                        # rows sorted by expert
    sorted_experts = flat[order]
    first_row_of_expert = torch.cumsum(counts, 0) - counts           # [E]
    rank = torch.arange(rows, device=device) - first_row_of_expert[sorted_experts]
    first_block_of_expert = torch.cumsum(blocks_per_expert, 0) - blocks_per_expert
    dest = first_block_of_expert[sorted_experts] * block_m + rank
    total_blocks = int(blocks_per_expert.sum().item())
    sorted_ids = torch.full((total_blocks * block_m,), -1, dtype=torch.int32, device=device)
    sorted_ids[dest] = order.to(torch.int32)
    expert_ids = torch.repeat_interleave(
        torch.arange(num_experts, device=device, dtype=torch.int32), blocks_per_expert
    )
    return sorted_ids, expert_ids


def marlin_moe_gemm(
    a: torch.Tensor,
    b_q_weight: torch.Tensor,
    b_scales: torch.Tensor,
    b_bias: torch.Tensor | None = None,
    *,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor | None = None,
    size_n: int,
    size_k: int,
    mul_topk_weights: bool = False,
    out: torch.Tensor | None = None,
    config: int | None = None,
    splits: int | None = None,
) -> torch.Tensor:
    """MoE GEMM over stacked experts (spec §5): out[m*top_k + i] = a[m] . W[topk_ids[m, i]] (+ bias).

    a: [M, size_k]; topk_ids: integer [M, top_k] with values in [0, E); b_q_weight: int32
    [E, size_k/16, 4*size_n]; b_scales: [E, G, size_n]; b_bias: [E, size_n] or None.
    With mul_topk_weights, each output row is multiplied by RT(topk_weights[m, i]) after the bias
    add (RT(RT(RT(acc)+b)*RT(w)), §5). Returns [M*top_k, size_n] in a's dtype; summing over top_k
    is left to the caller, as in vLLM. For vLLM's second GEMM pass a = [M*top_k, K] and
    topk_ids = ids.reshape(-1, 1).
    """
    fn = "marlin_moe_gemm"
    for name, t in (("a", a), ("b_q_weight", b_q_weight), ("b_scales", b_scales), ("topk_ids", topk_ids)):
        _require_tensor(fn, name, t)
    if topk_ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{fn}: topk_ids.dtype={topk_ids.dtype} must be torch.int32 or torch.int64")
    if topk_ids.dim() != 2 or a.dim() != 2 or topk_ids.shape[0] != a.shape[0]:
        raise ValueError(
            f"{fn}: topk_ids.shape={tuple(topk_ids.shape)} must be [M, top_k] with M = a.shape[0] "
            f"(a.shape={tuple(a.shape)})"
        )
    if b_q_weight.dim() != 3:
        raise ValueError(f"{fn}: b_q_weight must be 3-D [E, size_k/16, 4*size_n], got {tuple(b_q_weight.shape)}")
    if topk_ids.device != a.device:
        raise ValueError(f"{fn}: topk_ids.device={topk_ids.device} must equal a.device={a.device}")
    num_experts = b_q_weight.shape[0]
    top_k = topk_ids.shape[1]
    rows = a.shape[0] * top_k
    routed = None
    if topk_ids.numel() > 0:
        lo, hi = int(topk_ids.min().item()), int(topk_ids.max().item())
        if lo < -1 or hi >= num_experts:
            raise ValueError(f"{fn}: topk_ids must lie in [0, E={num_experts}) or be -1 (no expert), "
                             f"got min {lo}, max {hi}")
        if lo == -1:    # slots routed to no expert: computed on expert 0, then zeroed (they leave no trace)
            routed = (topk_ids >= 0).reshape(-1, 1)
            topk_ids = topk_ids.clamp(min=0)
    weights = None
    if mul_topk_weights:
        if topk_weights is None:
            raise ValueError(f"{fn}: mul_topk_weights=True needs topk_weights [M, top_k]")
        _require_tensor(fn, "topk_weights", topk_weights)
        if tuple(topk_weights.shape) != tuple(topk_ids.shape):
            raise ValueError(
                f"{fn}: topk_weights.shape={tuple(topk_weights.shape)} must equal topk_ids.shape="
                f"{tuple(topk_ids.shape)}"
            )
        weights = topk_weights.reshape(-1).to(torch.float32).contiguous()  # [rows]
    ext = _ext.load()
    if config is None:
        avg_rows = (rows + max(num_experts, 1) - 1) // max(num_experts, 1)
        config = ext.gemm_config_for_rows(avg_rows)
    block_m = ext.gemm_config_block_m(_require_int(fn, "config", config))
    if block_m < 0:
        raise ValueError(f"{fn}: config={config} is not a thread-block configuration of the kernel")
    sorted_ids, expert_ids = moe_align_block_rows(topk_ids, num_experts, block_m)
    result = _result(ext.marlin_moe_gemm(
        a, b_q_weight, b_scales, b_bias, out, sorted_ids, expert_ids, weights, top_k, rows,
        size_n, size_k, config, -1 if splits is None else splits,
    ))
    return result if routed is None else result.masked_fill_(~routed, 0)


# the linear layer (pad K, GEMM with the bias inside, slice N; §2.13) on the CUDA kernel
apply_fp8_marlin_linear = apply_with(marlin_gemm)
apply_mxfp8_marlin_linear = apply_with(marlin_gemm, mx=True)
