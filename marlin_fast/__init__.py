"""marlin_fast: the torch fast path of marlin-ref, device-generic (CPU and CUDA tensors).

An independent torch reading of the spec (docs/spec.md), never importing marlin_ref,
with the same module stems, function names and keyword names (docs/design.md). Tensors in, tensors
out on the input's device; inputs are never mutated. CUDA kernels live elsewhere and are not imported
here.
"""

from .apply_fp8_marlin_linear import apply_fp8_marlin_linear, apply_mxfp8_marlin_linear
from .fp8_fused_exponent_bias_into_scales import (fp8_fused_exponent_bias_into_scales,
                                                  fp8_unfuse_exponent_bias_from_scales)
from .formats import (as_activation_dtype, decode_e4m3, decode_e8m0, encode_e4m3, encode_e8m0, exponent_bias_of,
                      round_to_dtype)
from .gptq_marlin_repack import gptq_marlin_repack, gptq_marlin_unrepack
from .marlin_gemm import marlin_gemm, marlin_moe_gemm
from .marlin_permute_bias import marlin_permute_bias, marlin_unpermute_bias
from .marlin_permute_scales import marlin_permute_scales, marlin_unpermute_scales, uses_grouped_scale_permutation
from .mxfp8_marlin_process_scales import mxfp8_marlin_process_scales, mxfp8_marlin_unprocess_scales
from .pack_fp8_to_int32 import pack_fp8_to_int32, unpack_fp8_from_int32
from .padding import (marlin_moe_padded_intermediate, marlin_pad_dim, marlin_pad_qweight, marlin_pad_scales,
                      marlin_padded_nk, marlin_repacked_nk, marlin_unpad_output)
from .prepare_fp8_layer_for_marlin import MarlinLayer, prepare_fp8_layer_for_marlin
from .prepare_fp8_moe_layer_for_marlin import MarlinMoeLayer, prepare_fp8_moe_layer_for_marlin
from .prepare_mxfp8_layer_for_marlin import prepare_mxfp8_layer_for_marlin
from .prepare_mxfp8_moe_layer_for_marlin import prepare_mxfp8_moe_layer_for_marlin
from .scale_schemes import convert_fp8_moe_scales, convert_fp8_scales, mxfp8_scales_to_float

__all__ = [
    # formats (§1)
    "as_activation_dtype", "exponent_bias_of", "decode_e4m3", "encode_e4m3", "decode_e8m0", "encode_e8m0",
    "round_to_dtype",
    # transforms (§2.2-§2.7), each with its inverse
    "pack_fp8_to_int32", "unpack_fp8_from_int32",
    "gptq_marlin_repack", "gptq_marlin_unrepack",
    "marlin_permute_scales", "marlin_unpermute_scales", "uses_grouped_scale_permutation",
    "marlin_permute_bias", "marlin_unpermute_bias",
    "fp8_fused_exponent_bias_into_scales", "fp8_unfuse_exponent_bias_from_scales",
    "mxfp8_marlin_process_scales", "mxfp8_marlin_unprocess_scales",
    # scale schemes (§2.8 step 4, §2.9 step 3, §2.10)
    "convert_fp8_scales", "convert_fp8_moe_scales", "mxfp8_scales_to_float",
    # padding (§2.11)
    "marlin_padded_nk", "marlin_moe_padded_intermediate", "marlin_pad_qweight", "marlin_pad_scales",
    "marlin_pad_dim", "marlin_unpad_output", "marlin_repacked_nk",
    # pipelines (§2.8-§2.10)
    "MarlinLayer", "MarlinMoeLayer",
    "prepare_fp8_layer_for_marlin", "prepare_fp8_moe_layer_for_marlin",
    "prepare_mxfp8_layer_for_marlin", "prepare_mxfp8_moe_layer_for_marlin",
    "marlin_gemm", "marlin_moe_gemm",  # the GEMM (§3) and the MoE GEMM over stacked experts (§5)
    "apply_fp8_marlin_linear", "apply_mxfp8_marlin_linear",   # the linear layer on a prepared layer (§2.13)
]
