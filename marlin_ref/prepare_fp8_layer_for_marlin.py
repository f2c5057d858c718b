"""Dense FP8 (W8A16) layer -> the tensors Marlin consumes, as vLLM's newest prep does (spec §2.8, §2.11).

Layout card
-----------
    weight  fp8 [K, N] (size_k_first) or [N, K]  --pack (§2.2), ᵀ if [N, K]-->  int32 [K/4, N]
            --zero-pad (§2.11)-->  [padded_k/4, padded_n]  --gptq_marlin_repack(num_bits=8) (§2.3)-->
            qweight int32 [padded_k/16, 4·padded_n]
    scales  checkpoint --cast to orig_dtype, scheme (§2.8 step 4)--> [G, N] --zero-pad--> [G', padded_n]
            --marlin_permute_scales(size_k=padded_k) (§2.4)--> --×2^β (§2.6)--> scales [G', padded_n]
            G' = padded_k/block_k for block FP8, 1 otherwise
    bias    [N] --cast to orig_dtype, zero-pad--> [padded_n] --marlin_permute_bias (§2.5)--> bias

    >>> w = np.full((128, 64), 0x38, np.uint8)            # [K, N], every weight 1.0
    >>> layer = prepare_fp8_layer_for_marlin(w, np.array(0.5, np.float32), orig_dtype="float16")
    >>> layer.qweight.shape, layer.scales.shape, float(layer.scales[0, 0])   # 0.5 · 2^8
    ((8, 256), (1, 64), 128.0)

Group sizes (decision, §4.2 and §6.1 item 18): the FP8 GEMM is instantiated only for channel-wise scales
(one group) and group_size 128. A block size whose padded scale grid has more than one group along K with
block_k != 128 has no kernel, so it is rejected here with a ValueError instead of producing tensors that
only fail (or silently misbehave) at GEMM time. block_k >= padded K (a single group) is accepted: it is the
channel-wise path (§2.4 edge). `group_size` in the result is block_k (or -1), as vLLM stores it.

input_dtype (decision): itemsize 1 (W8A8: int8 or float8_e4m3fn activations) -> ValueError, as vLLM. vLLM
never passes a 16-bit input_dtype; we accept one only when it equals orig_dtype, because the fused exponent
bias β follows orig_dtype and a different activation dtype would be off by 2^112 (§6.1 item 9).
"""

from __future__ import annotations

from typing import NamedTuple

import ml_dtypes
import numpy as np

from marlin_ref.errors import check_bool, check_dtype, check_multiple, check_nonempty, check_rank, check_shape
from marlin_ref.formats import BF16, E4M3, FP16, as_activation_dtype
from marlin_ref.fp8_fused_exponent_bias_into_scales import fp8_fused_exponent_bias_into_scales
from marlin_ref.gptq_marlin_repack import gptq_marlin_repack
from marlin_ref.marlin_permute_bias import marlin_permute_bias
from marlin_ref.marlin_permute_scales import marlin_permute_scales
from marlin_ref.pack_fp8_to_int32 import pack_fp8_to_int32
from marlin_ref.padding import marlin_pad_dim, marlin_pad_qweight, marlin_pad_scales, marlin_padded_nk
from marlin_ref.scale_schemes import check_block_size, check_logical_widths, fp8_scale_grid

FP8_NUM_BITS = 8
FP8_KERNEL_GROUP_SIZE = 128        # the only grouped FP8 kernel (group_blocks = 8, §4.2)
FP8_PACK = 4                       # pack_fp8_to_int32 packs 4 bytes along K
BIAS_DTYPES = (FP16, BF16, np.float32)


class MarlinLayer(NamedTuple):
    qweight: np.ndarray         # int32 [padded_k/16, 4·padded_n]
    scales: np.ndarray          # [G, padded_n]: orig_dtype with fused 2^β, or float8_e8m0fnu (MXFP8)
    bias: np.ndarray | None     # [padded_n], single-permuted, or None
    size_k: int
    size_n: int
    padded_k: int
    padded_n: int
    group_size: int             # -1 (channel-wise), block_k, or 32 (MXFP8)


def check_fp8_weight(fn: str, name: str, weight, rank: int) -> np.ndarray:
    """A non-empty float8_e4m3fn (or uint8 codes) array of the given rank."""
    check_dtype(fn, name, weight, [E4M3, np.uint8])
    return check_nonempty(fn, name, check_rank(fn, name, weight, rank))


def check_fp8_kernel_group(fn: str, group_size: int, padded_k: int) -> None:
    """Reject a block_k for which no FP8 Marlin kernel exists (§4.2, §6.1 item 18)."""
    groups = padded_k // group_size if group_size > 0 else 1
    if groups > 1 and group_size != FP8_KERNEL_GROUP_SIZE:
        raise ValueError(
            f"{fn}: block_k={group_size} gives {groups} scale groups along padded K={padded_k}; the FP8 "
            f"Marlin kernel exists only for channel-wise scales (one group) and group_size "
            f"{FP8_KERNEL_GROUP_SIZE} (spec §4.2, §6.1 item 18)")


def permutation_group(group_size: int, padded_k: int) -> int:
    """group_size for marlin_permute_scales: -1 when the padded grid has one group (single permutation
    either way, §2.4 edge), so block sizes >= K need no entry in the supported group list."""
    return -1 if group_size <= 0 or padded_k // group_size <= 1 else group_size


def repack_fp8_weight(fn: str, weight_nk: np.ndarray, padded_n: int, padded_k: int, name: str = "weight") -> np.ndarray:
    """N-major fp8 [N, K] -> zero-padded Marlin int32 [padded_k/16, 4·padded_n] (§2.8 step 3)."""
    size_n, size_k = weight_nk.shape
    check_multiple(fn, "size_k", size_k, FP8_PACK,
                   f"{name} has K={size_k}; pack_fp8_to_int32 packs {FP8_PACK} fp8 along K")
    packed = pack_fp8_to_int32(np.ascontiguousarray(weight_nk), size_k_first=False)     # [N, K/4]
    packed = np.ascontiguousarray(packed.T)   # [K/4, N]
    packed = marlin_pad_qweight(packed, size_n, size_k, padded_n, padded_k)            # [pk/4, pn]
    return gptq_marlin_repack(packed, None, padded_k, padded_n, FP8_NUM_BITS)           # [pk/16, 4pn]


def prepare_bias(fn: str, bias, size_n: int, padded_n: int, dtype: np.dtype, name: str = "bias") -> np.ndarray:
    """bias [N] ([E, N] per expert) -> cast to dtype (RNE), zero-pad the last dim, single permutation
    (§2.8 step 8). The caller has checked the shape."""
    check_dtype(fn, name, bias, BIAS_DTYPES)
    cast = bias.astype(np.float32).astype(dtype)             # exact hop: one rounding
    return marlin_permute_bias(marlin_pad_dim(cast, size_n, padded_n))


_INPUT_DTYPE_ALIASES = {"fp32": np.float32, "fp64": np.float64, "half": np.float16}


def _check_input_dtype(fn: str, input_dtype, dtype: np.dtype) -> None:
    if input_dtype is None:
        return
    d = None
    if isinstance(input_dtype, str):
        d = _INPUT_DTYPE_ALIASES.get(input_dtype) or getattr(ml_dtypes, input_dtype, None)
        if d is None and input_dtype in ("bf16", "fp16"):
            d = as_activation_dtype(input_dtype)
    try:
        d = np.dtype(input_dtype if d is None else d)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: input_dtype must be a dtype (a name such as 'bfloat16', or a NumPy / "
                         f"ml_dtypes dtype), got {input_dtype!r}") from None
    if d.itemsize == 1:
        raise ValueError(f"{fn}: input_dtype={d.name} has itemsize 1 (W8A8); FP8 Marlin supports only "
                         f"16-bit activations (spec §2.8)")
    if d != dtype:
        raise ValueError(f"{fn}: input_dtype={d.name} must equal orig_dtype={dtype.name}: the fused "
                         f"exponent bias follows orig_dtype (spec §2.6, §6.1 item 9)")


def prepare_fp8_layer_for_marlin(weight, weight_scale, *, orig_dtype, size_k_first=True,
                                 weight_block_size=None, logical_widths=None, bias=None,
                                 input_dtype=None) -> MarlinLayer:
    """Dense FP8 prep (§2.8 steps 1-8, newest version with padding); see the module card."""
    fn = "prepare_fp8_layer_for_marlin"
    dtype = as_activation_dtype(orig_dtype, fn, "orig_dtype")
    _check_input_dtype(fn, input_dtype, dtype)
    size_k_first = check_bool(fn, "size_k_first", size_k_first)
    check_fp8_weight(fn, "weight", weight, 2)
    weight_nk = weight.T if size_k_first else weight                         # [N, K]
    size_n, size_k = weight_nk.shape
    check_multiple(fn, "size_k", size_k, FP8_PACK,
                   f"weight has shape {weight.shape}; pack_fp8_to_int32 packs {FP8_PACK} fp8 along K")
    group_size = -1 if weight_block_size is None else check_block_size(fn, weight_block_size)[1]
    widths = check_logical_widths(fn, logical_widths)
    if bias is not None:
        check_shape(fn, "bias", bias, (size_n,), f"[size_n={size_n}]")
    padded_n, padded_k = marlin_padded_nk(size_n, size_k, group_size)
    check_fp8_kernel_group(fn, group_size, padded_k)
    qweight = repack_fp8_weight(fn, weight_nk, padded_n, padded_k)
    grid = fp8_scale_grid(fn, "weight_scale", weight_scale, size_n=size_n, size_k=size_k, dtype=dtype,
                          weight_block_size=weight_block_size, logical_widths=widths,
                          size_k_first=size_k_first)                         # [G, N]
    grid = marlin_pad_scales(grid, size_n, size_k, padded_n, padded_k, group_size)   # [G', pn]
    scales = marlin_permute_scales(grid, padded_k, padded_n, permutation_group(group_size, padded_k))
    scales = fp8_fused_exponent_bias_into_scales(scales)
    out_bias = None if bias is None else prepare_bias(fn, bias, size_n, padded_n, dtype)
    return MarlinLayer(qweight, scales, out_bias, size_k, size_n, padded_k, padded_n, group_size)
