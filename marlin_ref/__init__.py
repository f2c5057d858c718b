"""marlin_ref: a slow, readable NumPy oracle of vLLM's Marlin FP8 / MXFP8 weight path.

One public name per transform, mirroring vLLM's; each module carries a layout card (spec section, logical and
stored shapes, the mapping formula, a worked example as a doctest). NumPy and ml_dtypes only: this package never
imports torch, so it cannot share a bug with an implementation it checks.

    >>> import numpy as np, marlin_ref
    >>> codes = np.zeros((16, 64), np.uint8); codes[1, 0] = 0x38       # W[k=1, n=0] = 1.0
    >>> marlin = marlin_ref.gptq_marlin_repack(marlin_ref.pack_fp8_to_int32(codes), None, 16, 64, 8)
    >>> marlin.shape, hex(int(marlin[0, 0]))                             # k=1 sits in byte 2 of lane 0's word 0
    ((1, 256), '0x380000')
"""

from marlin_ref.apply_fp8_marlin_linear import apply_fp8_marlin_linear, apply_mxfp8_marlin_linear
from marlin_ref.formats import (
    as_activation_dtype,
    decode_e4m3,
    decode_e8m0,
    encode_e4m3,
    encode_e8m0,
    exponent_bias_of,
    round_to_dtype,
)
from marlin_ref.fp8_fused_exponent_bias_into_scales import (
    fp8_fused_exponent_bias_into_scales,
    fp8_unfuse_exponent_bias_from_scales,
)
from marlin_ref.gptq_marlin_repack import gptq_marlin_repack, gptq_marlin_unrepack
from marlin_ref.gptq_marlin_repack_by_element import gptq_marlin_repack_by_element
from marlin_ref.layout import locate, locate_scale, show_tile
from marlin_ref.marlin_gemm import (
    dequantize_marlin_weight,
    fp32_accumulator_may_overflow,
    gemm_math_reference,
    marlin_gemm_error_bound,
    marlin_gemm_reference,
    marlin_moe_gemm_reference,
    one_hot_expected,
)
from marlin_ref.marlin_permute_bias import marlin_permute_bias, marlin_unpermute_bias
from marlin_ref.marlin_permute_scales import (
    marlin_permute_scales,
    marlin_unpermute_scales,
    uses_grouped_scale_permutation,
)
from marlin_ref.mxfp8_marlin_process_scales import mxfp8_marlin_process_scales, mxfp8_marlin_unprocess_scales
from marlin_ref.pack_fp8_to_int32 import pack_fp8_to_int32, unpack_fp8_from_int32
from marlin_ref.padding import (
    marlin_moe_padded_intermediate,
    marlin_pad_dim,
    marlin_pad_qweight,
    marlin_pad_scales,
    marlin_padded_nk,
    marlin_repacked_nk,
    marlin_unpad_output,
)
from marlin_ref.prepare_fp8_layer_for_marlin import MarlinLayer, prepare_fp8_layer_for_marlin
from marlin_ref.prepare_fp8_moe_layer_for_marlin import MarlinMoeLayer, prepare_fp8_moe_layer_for_marlin
from marlin_ref.prepare_mxfp8_layer_for_marlin import prepare_mxfp8_layer_for_marlin
from marlin_ref.prepare_mxfp8_moe_layer_for_marlin import prepare_mxfp8_moe_layer_for_marlin
from marlin_ref.scale_schemes import convert_fp8_moe_scales, convert_fp8_scales, mxfp8_scales_to_float

from types import ModuleType as _ModuleType

__all__ = sorted(n for n, v in globals().items() if not n.startswith("_") and not isinstance(v, _ModuleType))
