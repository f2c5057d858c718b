"""Dense FP8 weight preparation for the Marlin GEMM, newest vLLM with tile padding (spec §2.8).

    weight e4m3fn[K, N] (size_k_first) or [N, K]     -> qweight int32[padded_k/16, 4·padded_n]
    weight_scale (scheme of scale_schemes)          -> scales  orig_dtype[G, padded_n], permuted, ×2^beta
    bias [N] (optional)                              -> bias    [padded_n], zero-padded, single-permuted

Steps: group_size = -1 or block_k; (padded_n, padded_k) = marlin_padded_nk; weight packed along K,
made [K/4, N], zero-padded, repacked (num_bits 8); scales cast to orig_dtype, converted to [G, N],
zero-padded, permuted (grouped iff the padded grid has several groups), exponent bias fused (W8A8 is
rejected, so the activations are always 16-bit here); bias cast to orig_dtype, zero-padded and
single-permuted. Beyond vLLM, block_k != 128 with several groups along K is refused (no FP8 kernel,
§4.2), and so is an input_dtype other than orig_dtype (§6.1 item 9).

    >>> w = torch.full((128, 64), 0x38, dtype=torch.uint8)           # [K, N], every weight 1.0
    >>> layer = prepare_fp8_layer_for_marlin(w, torch.tensor(0.5), orig_dtype="float16")
    >>> layer.qweight.shape, layer.scales.shape, layer.scales[0, 0].item()  # 0.5 · 2^8
    (torch.Size([8, 256]), torch.Size([1, 64]), 128.0)
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .errors import check_bool, check_dtype, check_multiple, check_nonempty, check_rank, check_shape
from .formats import as_activation_dtype, as_torch_dtype, fp8_codes
from .fp8_fused_exponent_bias_into_scales import fp8_fused_exponent_bias_into_scales
from .gptq_marlin_repack import gptq_marlin_repack
from .marlin_permute_bias import marlin_permute_bias
from .marlin_permute_scales import marlin_permute_scales
from .pack_fp8_to_int32 import BYTES_PER_WORD, pack_fp8_to_int32
from .padding import marlin_pad_dim, marlin_pad_qweight, marlin_pad_scales, marlin_padded_nk
from .scale_schemes import check_block_size, check_logical_widths, fp8_scale_grid

FP8_NUM_BITS = 8
FP8_KERNEL_GROUP_SIZE = 128  # the only grouped FP8 kernel (group_blocks = 8, §4.2)
BIAS_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


class MarlinLayer(NamedTuple):
    """A dense layer in kernel format; size_k/size_n are logical, padded_k/padded_n what the GEMM sees."""

    qweight: torch.Tensor        # int32[padded_k/16, 4·padded_n]
    scales: torch.Tensor         # [G, padded_n]: fused fp16/bf16 (FP8) or float8_e8m0fnu (MXFP8)
    bias: torch.Tensor | None    # [padded_n], single-permuted
    size_k: int
    size_n: int
    padded_k: int
    padded_n: int
    group_size: int


def check_fp8_weight(fn: str, name: str, weight, rank: int) -> torch.Tensor:
    """The uint8 codes of a non-empty e4m3fn (or uint8) tensor of the given rank."""
    return check_nonempty(fn, name, check_rank(fn, name, fp8_codes(weight, fn, name), rank))


def fp8_weight_to_marlin(fn: str, weight: torch.Tensor, *, size_k_first: bool, padded_n: int,
                         padded_k: int) -> torch.Tensor:
    """e4m3fn[K, N] or [N, K] -> int32[padded_k/16, 4·padded_n]: pack, make K-major, zero-pad, repack."""
    codes = check_fp8_weight(fn, "weight", weight, 2)
    size_k, size_n = codes.shape if size_k_first else codes.shape[::-1]
    check_multiple(fn, "size_k", size_k, BYTES_PER_WORD,  # pack_fp8_to_int32 views 4 bytes as a word
                   f"weight has shape {tuple(weight.shape)}; pack_fp8_to_int32 packs {BYTES_PER_WORD} fp8 along K")
    packed = pack_fp8_to_int32(codes, size_k_first)
    packed = packed if size_k_first else packed.T  # [K/4, N]
    packed = marlin_pad_qweight(packed.contiguous(), size_n, size_k, padded_n, padded_k)  # [padded_k/4, padded_n]
    return gptq_marlin_repack(packed, None, padded_k, padded_n, FP8_NUM_BITS)


def prepare_bias(fn: str, bias, size_n: int, padded_n: int, dtype: torch.dtype) -> torch.Tensor | None:
    """None, or bias [N] cast to the output dtype (the kernel adds it in dtype, §4.1), zero-padded to
    [padded_n] and single-permuted (§2.8 step 8)."""
    if bias is None:
        return None
    check_dtype(fn, "bias", bias, BIAS_DTYPES)
    check_shape(fn, "bias", bias, (size_n,), f"[size_n={size_n}]")
    return marlin_permute_bias(marlin_pad_dim(bias.to(dtype), size_n, padded_n))


def check_input_dtype(fn: str, input_dtype, dtype: torch.dtype) -> None:
    """None, or the activation dtype itself: 8-bit activations (W8A8) are not supported (§2.8), and a
    16-bit dtype other than orig_dtype would meet scales fused for the wrong beta (2^112 off, §6.1 item 9)."""
    if input_dtype is None:
        return
    resolved = as_torch_dtype(input_dtype, fn, "input_dtype")
    name, want = (str(d).removeprefix("torch.") for d in (resolved, dtype))
    if resolved.itemsize == 1:
        raise ValueError(f"{fn}: input_dtype={name} has itemsize 1 (W8A8); FP8 Marlin supports only "
                         "16-bit activations (spec §2.8)")
    if resolved != dtype:
        raise ValueError(f"{fn}: input_dtype={name} must equal orig_dtype={want}: the fused exponent "
                         "bias follows orig_dtype (spec §2.6, §6.1 item 9)")


def check_fp8_kernel_group(fn: str, group_size: int, padded_k: int) -> None:
    """FP8 kernels exist for one group along K (channel-wise) and for group 128 only (§4.2, §6.1 item 18)."""
    groups = padded_k // group_size if group_size > 0 else 1
    if groups > 1 and group_size != FP8_KERNEL_GROUP_SIZE:
        raise ValueError(f"{fn}: block_k={group_size} gives {groups} scale groups along padded K={padded_k}; "
                         f"FP8 Marlin kernels exist only for one group or group_size {FP8_KERNEL_GROUP_SIZE} "
                         "(spec §4.2, §6.1 item 18)")


def permutation_group(group_size: int, padded_k: int) -> int:
    """group_size for marlin_permute_scales: -1 when the padded grid has a single group (the single
    permutation and the kernel's channel-wise path either way, §2.4 edge)."""
    return -1 if group_size <= 0 or padded_k // group_size <= 1 else group_size


def prepare_fp8_layer_for_marlin(weight: torch.Tensor, weight_scale: torch.Tensor, *, orig_dtype,
                                 size_k_first: bool = True, weight_block_size=None, logical_widths=None,
                                 bias=None, input_dtype=None) -> MarlinLayer:
    """FP8 checkpoint tensors -> MarlinLayer (spec §2.8, steps 1-8)."""
    fn = "prepare_fp8_layer_for_marlin"
    dtype = as_activation_dtype(orig_dtype, fn, "orig_dtype")
    check_input_dtype(fn, input_dtype, dtype)
    size_k_first = check_bool(fn, "size_k_first", size_k_first)
    codes = check_fp8_weight(fn, "weight", weight, 2)
    size_k, size_n = codes.shape if size_k_first else codes.shape[::-1]
    check_multiple(fn, "size_k", size_k, BYTES_PER_WORD,
                   f"weight has shape {tuple(weight.shape)}; pack_fp8_to_int32 packs {BYTES_PER_WORD} fp8 along K")
    blocks = check_block_size(fn, weight_block_size)
    widths = check_logical_widths(fn, logical_widths)
    group_size = -1 if blocks is None else blocks[1]                                # step 1
    padded_n, padded_k = marlin_padded_nk(size_n, size_k, group_size)               # step 2
    check_fp8_kernel_group(fn, group_size, padded_k)
    qweight = fp8_weight_to_marlin(fn, weight, size_k_first=size_k_first,          # step 3
                                   padded_n=padded_n, padded_k=padded_k)
    scales = fp8_scale_grid(fn, "weight_scale", weight_scale, size_n=size_n,       # step 4: [G, N]
                            size_k=size_k, dtype=dtype, weight_block_size=weight_block_size,
                            logical_widths=widths, size_k_first=size_k_first)
    scales = marlin_pad_scales(scales, size_n, size_k, padded_n, padded_k, group_size)  # step 5
    scales = marlin_permute_scales(scales, padded_k, padded_n,                          # step 6
                                   permutation_group(group_size, padded_k))
    scales = fp8_fused_exponent_bias_into_scales(scales)  # step 7 (W8A8 was refused above)
    return MarlinLayer(qweight, scales, prepare_bias(fn, bias, size_n, padded_n, dtype),  # step 8
                       size_k, size_n, padded_k, padded_n, group_size)
