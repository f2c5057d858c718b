"""The adapters of external implementations (properties/adapters): the "vllm" backend, tested against a FAKE
vllm package written to a temp dir (its functions are thin torch implementations delegating to marlin_fast,
taking vLLM's `layer` objects), and the "marlin-ops:<ns>" scheme, tested against fake ops registered with
torch.library in test-local namespaces, one per schema version of spec §4.3 (CPU kernels delegating to the
NumPy oracle). Expectations come from the spec (worked examples, closed forms) or from the oracle; CPU only.
"""

import inspect
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
import torch

from marlin_ref.prepare_fp8_layer_for_marlin import prepare_fp8_layer_for_marlin as ref_prepare_fp8
from properties.adapters import register
from properties.adapters import marlin_ops as M
from properties.adapters.vllm import FP8_UTILS, NO_EQUIVALENT, SOURCES, UTILS, vllm_backend
from properties.backends import (OPERATIONS, BackendError, NotProvided, backend_names, get_backend, oracle,
                                 to_numpy, to_torch)

FP16 = np.float16
ONE, TWO, MINUS_ONE = 0x38, 0x40, 0xB8        # e4m3fn codes of 1.0, 2.0, -1.0 (§1)


def same_bytes(got, want) -> bool:
    if want is None or got is None:
        return got is None and want is None
    got, want = np.asarray(got), np.asarray(want)
    return got.shape == want.shape and got.dtype == want.dtype and got.tobytes() == want.tobytes()


def assert_layers_equal(got, want):
    assert type(got).__name__ == type(want).__name__
    for field, g, w in zip(want._fields, got, want):
        ok = same_bytes(g, w) if isinstance(w, np.ndarray) or w is None else g == w
        assert ok, f"field {field} differs: got {g!r}, want {w!r}"


# --- the fake vllm package ---------------------------------------------------------------------------

FAKE_FP8 = {
    "header": """
        import torch
        import marlin_fast as mf
        CALLS = []
    """,
    "pack_fp8_to_int32": """
        def pack_fp8_to_int32(fp8_tensor, size_k_first=True):
            assert fp8_tensor.dtype == torch.float8_e4m3fn and fp8_tensor.ndim == 2   # as vLLM asserts
            return mf.pack_fp8_to_int32(fp8_tensor, size_k_first)
    """,
    "fp8_fused_exponent_bias_into_scales": """
        def fp8_fused_exponent_bias_into_scales(scales):
            return mf.fp8_fused_exponent_bias_into_scales(scales)
    """,
    "mxfp8_marlin_process_scales": """
        def mxfp8_marlin_process_scales(marlin_scales):
            return mf.mxfp8_marlin_process_scales(marlin_scales)
    """,
    "prepare_fp8_layer_for_marlin": """
        def prepare_fp8_layer_for_marlin(layer, size_k_first=True, input_dtype=None):
            n, k = layer.output_size_per_partition, layer.input_size_per_partition
            assert layer.weight.shape == ((k, n) if size_k_first else (n, k)), layer.weight.shape
            CALLS.append(dict(size_k_first=size_k_first, input_dtype=input_dtype, orig_dtype=layer.orig_dtype))
            out = mf.prepare_fp8_layer_for_marlin(
                layer.weight, layer.weight_scale, orig_dtype=layer.orig_dtype, size_k_first=size_k_first,
                weight_block_size=layer.weight_block_size, logical_widths=getattr(layer, "logical_widths", None),
                bias=layer.bias, input_dtype=input_dtype)
            layer.weight = torch.nn.Parameter(out.qweight, requires_grad=False)
            layer.weight_scale = torch.nn.Parameter(out.scales, requires_grad=False)
            if layer.bias is not None and layer.bias.shape == out.bias.shape:
                layer.bias.data.copy_(out.bias)   # in place, as replace_parameter does for an unchanged shape
            elif layer.bias is not None:
                layer.bias = torch.nn.Parameter(out.bias, requires_grad=False)
    """,
    "prepare_fp8_moe_layer_for_marlin": """
        def prepare_fp8_moe_layer_for_marlin(layer, w13_weight, w2_weight, w13_weight_scale, w2_weight_scale):
            e, k, n = layer.num_experts, layer.hidden_size, layer.intermediate_size_per_partition
            assert w13_weight.shape == (e, 2 * n, k) and w2_weight.shape == (e, k, n)
            assert layer.w13_weight.device == w13_weight.device
            out = mf.prepare_fp8_moe_layer_for_marlin(w13_weight, w2_weight, w13_weight_scale, w2_weight_scale,
                                                      orig_dtype=layer.orig_dtype,
                                                      weight_block_size=layer.weight_block_size)
            return out.w13_qweight, out.w2_qweight, out.w13_scales, out.w2_scales
    """,
    "prepare_moe_fp8_layer_for_marlin": """
        def prepare_moe_fp8_layer_for_marlin(layer, size_k_first=True, input_dtype=None):
            assert not size_k_first
            out = mf.prepare_fp8_moe_layer_for_marlin(
                layer.w13_weight, layer.w2_weight, layer.w13_weight_scale, layer.w2_weight_scale,
                orig_dtype=layer.orig_dtype, weight_block_size=layer.weight_block_size,
                w13_bias=getattr(layer, "w13_bias", None), w2_bias=getattr(layer, "w2_bias", None))
            for name, value in zip(("w13_weight", "w2_weight", "w13_weight_scale", "w2_weight_scale",
                                    "w13_bias", "w2_bias"), out):
                if value is not None:
                    setattr(layer, name, torch.nn.Parameter(value, requires_grad=False))
    """,
    "prepare_mxfp8_layer_for_marlin": """
        def prepare_mxfp8_layer_for_marlin(layer):
            assert layer.weight.shape == (layer.output_size_per_partition, layer.input_size_per_partition)
            out = mf.prepare_mxfp8_layer_for_marlin(layer.weight, layer.weight_scale, bias=layer.bias,
                                                    intermediate_dtype=torch.get_default_dtype())
            layer.weight = torch.nn.Parameter(out.qweight, requires_grad=False)
            layer.weight_scale = torch.nn.Parameter(out.scales, requires_grad=False)
            if layer.bias is not None:
                layer.bias = torch.nn.Parameter(out.bias, requires_grad=False)
    """,
    "prepare_mxfp8_moe_layer_for_marlin": """
        def prepare_mxfp8_moe_layer_for_marlin(layer, w13, w2, w13_scale, w2_scale):
            layer.workspace = torch.zeros(4, dtype=torch.int32)
            out = mf.prepare_mxfp8_moe_layer_for_marlin(w13, w2, w13_scale, w2_scale,
                                                        intermediate_dtype=torch.get_default_dtype())
            return out.w13_qweight, out.w2_qweight, out.w13_scales, out.w2_scales
    """,
}
FAKE_UTILS = {
    "header": "import marlin_fast as mf\n",
    "marlin_permute_scales": """
        def marlin_permute_scales(s, size_k, size_n, group_size, is_a_8bit=False):
            assert not is_a_8bit
            return mf.marlin_permute_scales(s, size_k, size_n, group_size)
    """,
    "marlin_permute_bias": "def marlin_permute_bias(s):\n    return mf.marlin_permute_bias(s)\n",
    "marlin_padded_nk": "def marlin_padded_nk(size_n, size_k, group_size=-1):\n"
                        "    return mf.marlin_padded_nk(size_n, size_k, group_size)\n",
    "marlin_moe_padded_intermediate": "def marlin_moe_padded_intermediate(intermediate_size, group_size=-1):\n"
                                      "    return mf.marlin_moe_padded_intermediate(intermediate_size, group_size)\n",
}
FAKE_REPACK = {   # the three signatures of §4.3, as vllm._custom_ops wrappers
    "snapshot": ("b_q_weight, perm, size_k, size_n, num_bits", "perm=perm"),
    "current": ("b_q_weight, perm, size_k, size_n, num_bits, is_a_8bit=False", "perm=perm, is_a_8bit=is_a_8bit"),
    "newest": ("b_q_weight, size_k, size_n, num_bits, is_a_8bit=False", "is_a_8bit=is_a_8bit"),
}


def write_fake_vllm(root, *, repack="current", omit=(), broken=(), old_moe=False):
    """vllm/ under root: __init__, _custom_ops, model_executor/layers/quantization/utils/marlin_utils{,_fp8}."""
    utils = root / "vllm/model_executor/layers/quantization/utils"
    utils.mkdir(parents=True)
    for package in (utils, *utils.parents):
        if package == root:
            break
        (package / "__init__.py").write_text("")
    (root / "vllm/__init__.py").write_text("__version__ = '0.0.fake'\n")
    params, recorded = FAKE_REPACK[repack]
    perm_arg = "perm" if "perm" in params.split(", ") else "None"
    ops = (f"import marlin_fast as mf\nCALLS = []\n\ndef gptq_marlin_repack({params}):\n"
           f"    CALLS.append(dict({recorded}))\n"
           f"    return mf.gptq_marlin_repack(b_q_weight, {perm_arg}, size_k, size_n, num_bits)\n")
    fp8 = {**FAKE_FP8}
    fp8.pop("prepare_fp8_moe_layer_for_marlin" if old_moe else "prepare_moe_fp8_layer_for_marlin")
    for path, parts in ((root / "vllm/_custom_ops.py", {"header": ops}),
                        (utils / "marlin_utils.py", FAKE_UTILS), (utils / "marlin_utils_fp8.py", fp8)):
        if path.stem in omit:
            continue
        text = "".join(textwrap.dedent(src) + "\n" for name, src in parts.items() if name not in omit)
        path.write_text(("raise RuntimeError('fake vllm: broken build')\n" if path.stem in broken else "") + text)


def forget_vllm():
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    """fake_vllm(**options) -> the "vllm" backend (CPU) built on a fresh fake package."""
    count = [0]

    def make(**options):
        forget_vllm()
        count[0] += 1
        root = tmp_path / f"site{count[0]}"
        write_fake_vllm(root, **options)
        monkeypatch.syspath_prepend(str(root))
        return vllm_backend(device="cpu")

    yield make
    forget_vllm()


def fake_module(name):
    return sys.modules[name]


# --- vllm: discovery and "not provided" ------------------------------------------------------------

def test_vllm_not_importable_makes_every_op_not_provided(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)        # as if vLLM were not installed
    b = vllm_backend()
    assert b.provides == frozenset() and b.version == "absent"
    assert all("vllm is not importable" in b.reason(op) for op in OPERATIONS)
    with pytest.raises(NotProvided, match="not provided: backend 'vllm' lacks gptq_marlin_repack: vllm is not"):
        b.gptq_marlin_repack(np.zeros((4, 64), np.int32), None, 16, 64, 8)


def test_register_adds_vllm_and_the_marlin_ops_scheme():
    register()
    assert "vllm" in backend_names()
    with pytest.raises(ValueError, match="namespace 'not-an-identifier' must be a Python identifier"):
        get_backend("marlin-ops:not-an-identifier")


def test_vllm_fake_provides_what_it_defines_and_says_why_not_the_rest(fake_vllm):
    b = fake_vllm()
    assert b.provides == frozenset(SOURCES) and b.version.startswith("vllm 0.0.fake (cpu)")
    for op, why in NO_EQUIVALENT.items():
        assert b.reason(op) == why
    assert "torch.ops._C has neither marlin_gemm nor gptq_marlin_gemm" in b.reason("marlin_gemm")
    with pytest.raises(NotProvided, match="vLLM has no inverse"):
        b.unpack_fp8_from_int32(np.zeros((1, 4), np.int32))


def parameters(fn) -> list[tuple[str, object]]:
    """(name, default) of each parameter; inspect follows torch_adapter's __wrapped__ to the wrapper."""
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


def test_vllm_ops_take_the_contract_keyword_names(fake_vllm):
    # The laws call every op by keyword: each wrapper has the oracle's parameter names and defaults.
    b, ref = fake_vllm(), oracle()
    for op in sorted(b.provides):
        assert parameters(b.op(op)) == parameters(ref.op(op)), op


def test_vllm_missing_functions_and_modules_are_each_not_provided(fake_vllm):
    b = fake_vllm(omit=("mxfp8_marlin_process_scales", "prepare_mxfp8_layer_for_marlin", "marlin_permute_bias",
                        "_custom_ops"))
    assert b.reason("mxfp8_marlin_process_scales") == f"vllm 0.0.fake has no mxfp8_marlin_process_scales in {FP8_UTILS}"
    assert b.reason("marlin_permute_bias") == f"vllm 0.0.fake has no marlin_permute_bias in {UTILS}"
    assert b.reason("gptq_marlin_repack") == "this vLLM has no module vllm._custom_ops"
    assert "marlin_permute_scales" in b.provides and "prepare_mxfp8_moe_layer_for_marlin" in b.provides
    b = fake_vllm(omit=("marlin_utils",))
    assert b.reason("marlin_padded_nk") == f"this vLLM has no module {UTILS}"


def test_vllm_broken_module_fails_instead_of_skipping(fake_vllm):
    b = fake_vllm(broken=("marlin_utils_fp8",))
    with pytest.raises(BackendError, match="importing .*marlin_utils_fp8 failed: RuntimeError: fake vllm: broken"):
        b.pack_fp8_to_int32(np.zeros((4, 4), np.uint8))
    assert "marlin_permute_scales" in b.provides


# --- vllm: the mapping, for real ----------------------------------------------------------------------

def test_vllm_pack_views_uint8_codes_as_e4m3_worked_example(fake_vllm):
    b = fake_vllm()
    w = np.array([[ONE, 0], [TWO, 0], [MINUS_ONE, 0], [0, ONE]], np.uint8)      # [K=4, N=2]
    packed = b.pack_fp8_to_int32(w)                                              # §2.2 example
    assert packed.dtype == np.int32 and packed.view(np.uint32).tolist() == [[0x00B84038, 0x38000000]]
    assert b.pack_fp8_to_int32(np.ascontiguousarray(w.T), size_k_first=False).view(np.uint32).tolist() == \
        [[0x00B84038], [0x38000000]]                                             # [N, K/4], not transposed


@pytest.mark.parametrize("repack, label, passed", [
    ("snapshot", "2025 snapshot (perm)", {"perm"}),
    ("current", "current (perm, is_a_8bit)", {"perm", "is_a_8bit"}),
    ("newest", "newest (no perm)", {"is_a_8bit"}),
])
def test_vllm_repack_signature_detected_and_one_byte_lands_by_the_closed_form(fake_vllm, repack, label, passed):
    b = fake_vllm(repack=repack)
    assert f"gptq_marlin_repack: {label}" in b.version
    codes = np.zeros((16, 64), np.uint8)
    codes[3, 17] = ONE          # k=3, n=17: c8=1, q=1, w=1, h=0, e=1, g=0 -> byte 128+32+8+2 = 170 (§2.3.1)
    packed = oracle().pack_fp8_to_int32(codes)
    out = b.gptq_marlin_repack(packed, None, 16, 64, 8)
    assert out.shape == (1, 256) and np.flatnonzero(out.view(np.uint8)).tolist() == [170]
    call = fake_module("vllm._custom_ops").CALLS[-1]
    assert set(call) == passed and call.get("is_a_8bit", False) is False
    if "perm" in passed:
        assert call["perm"].dtype == torch.int32 and call["perm"].numel() == 0   # None -> empty int32 perm


def test_vllm_perm_less_repack_reports_a_non_empty_perm(fake_vllm):
    b = fake_vllm(repack="newest")
    with pytest.raises(NotProvided, match="takes no perm .* non-empty perm cannot be passed"):
        b.gptq_marlin_repack(np.zeros((4, 64), np.int32), np.arange(16, dtype=np.int32), 16, 64, 8)


def test_vllm_padding_helpers_hand_values(fake_vllm):
    b = fake_vllm()
    assert tuple(b.marlin_padded_nk(192, 64, -1)) == (256, 64)       # (192,128)=24576 vs (256,64)=16384, §2.11
    assert b.marlin_moe_padded_intermediate(96, -1) == 128 and b.marlin_moe_padded_intermediate(160, 128) == 256


def fp8_weights(shape, seed):
    codes = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return np.where((codes & 0x7F) == 0x7F, 0, codes).astype(np.uint8)          # no NaN codes


DENSE_CASES = {
    "tensor-bias-kfirst": dict(size_k_first=True, weight_scale=np.array(0.5, np.float32), orig_dtype="float16",
                               bias=(np.arange(128) / 4).astype(FP16)),
    "block-nfirst": dict(size_k_first=False, weight_scale=np.array([[0.5, 2.0], [4.0, 0.25]], np.float32),
                         orig_dtype="bf16", weight_block_size=[64, 128]),
    "logical-widths": dict(size_k_first=True, weight_scale=np.array([1.0, 3.0, 0.5], np.float32),
                           orig_dtype="float16", logical_widths=[64, 32, 32]),
}


@pytest.mark.parametrize("case", DENSE_CASES, ids=str)
def test_vllm_prepare_fp8_layer_round_trip_matches_the_oracle(fake_vllm, case):
    b = fake_vllm()
    kw = dict(DENSE_CASES[case])
    weight = fp8_weights((256, 128) if kw["size_k_first"] else (128, 256), seed=len(case))  # K=256, N=128
    inputs = [weight, kw["weight_scale"]] + ([kw["bias"]] if "bias" in kw else [])
    before = [a.copy() for a in inputs]
    got = b.prepare_fp8_layer_for_marlin(weight, **kw)
    assert_layers_equal(got, ref_prepare_fp8(weight, **kw))
    assert all(same_bytes(a, c) for a, c in zip(inputs, before)), "an input was mutated"
    call = fake_module(FP8_UTILS).CALLS[-1]
    assert call["size_k_first"] is kw["size_k_first"] and call["input_dtype"] is None
    assert call["orig_dtype"] == {"float16": torch.float16, "bf16": torch.bfloat16}[kw["orig_dtype"]]


@pytest.mark.parametrize("old_moe, n", [(False, 64), (False, 96), (True, 64)],
                         ids=["returns-tensors", "returns-tensors-padded-n", "older-rewrites-layer"])
def test_vllm_prepare_fp8_moe_round_trip_matches_the_oracle(fake_vllm, old_moe, n):
    b = fake_vllm(old_moe=old_moe)
    e, k = 2, 128                                    # n = 96 pads to 128 (§2.9 step 1): biases padded per shard
    w13, w2 = fp8_weights((e, 2 * n, k), 1), fp8_weights((e, k, n), 2)
    kw = dict(orig_dtype="bf16", w13_bias=np.linspace(-1, 1, e * 2 * n, dtype=np.float32).reshape(e, 2 * n),
              w2_bias=np.arange(e * k, dtype=np.float32).reshape(e, k))
    s13, s2 = np.array([0.5, 0.25], np.float32), np.array([2.0, 4.0], np.float32)
    got = b.prepare_fp8_moe_layer_for_marlin(w13, w2, s13, s2, **kw)
    assert_layers_equal(got, oracle().prepare_fp8_moe_layer_for_marlin(w13, w2, s13, s2, **kw))


def test_vllm_moe_bias_without_vllm_permute_bias_is_not_provided(fake_vllm):
    b = fake_vllm(omit=("marlin_permute_bias",))
    w13, w2, s = fp8_weights((1, 128, 128), 3), fp8_weights((1, 128, 64), 4), np.array([1.0], np.float32)
    assert b.prepare_fp8_moe_layer_for_marlin(w13, w2, s, s, orig_dtype="fp16").w13_bias is None
    with pytest.raises(NotProvided, match="MoE biases need vLLM's marlin_permute_bias"):
        b.prepare_fp8_moe_layer_for_marlin(w13, w2, s, s, orig_dtype="fp16", w2_bias=np.zeros((1, 128), FP16))


def test_vllm_mxfp8_prep_sets_the_default_dtype_for_the_call_only(fake_vllm):
    b = fake_vllm()
    w = fp8_weights((64, 128), 5)                                   # [N, K]
    s = np.tile(np.array([10, 127, 140, 200], np.uint8), (64, 1))  # bytes 10 and 200 do not survive fp16 (§2.10)
    layers = {}
    for inter in ("bfloat16", "float16"):
        layers[inter] = b.prepare_mxfp8_layer_for_marlin(w, s, bias=np.ones(64, np.float32), intermediate_dtype=inter)
        want = oracle().prepare_mxfp8_layer_for_marlin(w, s, bias=np.ones(64, np.float32), intermediate_dtype=inter)
        assert_layers_equal(layers[inter], want)
        assert torch.get_default_dtype() == torch.float32
    assert not same_bytes(layers["bfloat16"].scales, layers["float16"].scales)   # the hazard reached vLLM
    w13, w2 = fp8_weights((1, 128, 128), 6), fp8_weights((1, 128, 64), 7)
    s13, s2 = np.full((1, 128, 4), 127, np.uint8), np.full((1, 128, 2), 120, np.uint8)
    assert_layers_equal(b.prepare_mxfp8_moe_layer_for_marlin(w13, w2, s13, s2),
                        oracle().prepare_mxfp8_moe_layer_for_marlin(w13, w2, s13, s2))


def test_vllm_scale_functions_match_the_oracle(fake_vllm):
    b, ref = fake_vllm(), oracle()
    s = (np.arange(2 * 128, dtype=np.float32).reshape(2, 128) / 8).astype(FP16)
    assert same_bytes(b.marlin_permute_scales(s, 256, 128, 128), ref.marlin_permute_scales(s, 256, 128, 128))
    assert same_bytes(b.fp8_fused_exponent_bias_into_scales(s), ref.fp8_fused_exponent_bias_into_scales(s))
    ms = (2.0 ** (np.arange(4 * 64) % 9 - 4)).reshape(4, 64).astype(np.float32)
    assert same_bytes(b.mxfp8_marlin_process_scales(ms), ref.mxfp8_marlin_process_scales(ms))
    bias = np.arange(64, dtype=FP16)
    assert b.marlin_permute_bias(bias)[:12].tolist() == [0, 1, 8, 9, 16, 17, 24, 25, 2, 3, 10, 11]   # §2.4 single


# --- marlin-ops: fake op libraries, one namespace per schema version of §4.3 -------------------------------

REPACK_SCHEMA = {
    "snapshot": "gptq_marlin_repack(Tensor b_q_weight, Tensor perm, SymInt size_k, SymInt size_n, int num_bits) "
                "-> Tensor",
    "current": "gptq_marlin_repack(Tensor b_q_weight, Tensor perm, SymInt size_k, SymInt size_n, int num_bits, "
               "bool is_a_8bit) -> Tensor",
    "newest": "gptq_marlin_repack(Tensor b_q_weight, SymInt size_k, SymInt size_n, int num_bits, bool is_a_8bit) "
              "-> Tensor",
}
_FLAGS = "bool use_atomic_add, bool use_fp32_reduce, bool is_zp_float) -> Tensor"
GEMM_SCHEMA = {
    "snapshot": "gptq_marlin_gemm(Tensor a, Tensor? c_or_none, Tensor b_q_weight, Tensor b_scales, "
                "Tensor? global_scale, Tensor? b_zeros_or_none, Tensor? g_idx_or_none, Tensor? perm_or_none, "
                "Tensor workspace, int b_q_type, SymInt size_m, SymInt size_n, SymInt size_k, bool is_k_full, "
                + _FLAGS,
    "current": "marlin_gemm(Tensor a, Tensor? c_or_none, Tensor b_q_weight, Tensor? b_bias_or_none, "
               "Tensor b_scales, Tensor? a_scales, Tensor? global_scale, Tensor? b_zeros_or_none, "
               "Tensor? g_idx_or_none, Tensor? perm_or_none, Tensor workspace, int b_type_id, SymInt size_m, "
               "SymInt size_n, SymInt size_k, bool is_k_full, " + _FLAGS,
    "newest": "marlin_gemm(Tensor a, Tensor? c_or_none, Tensor b_q_weight, Tensor? b_bias_or_none, Tensor b_scales, "
              "Tensor? a_scales, Tensor? global_scale, Tensor? b_zeros_or_none, Tensor workspace, int b_type_id, "
              "SymInt size_m, SymInt size_n, SymInt size_k, " + _FLAGS,
    "unknown": "marlin_gemm(Tensor a, Tensor b_q_weight, Tensor b_scales, Tensor tile_map) -> Tensor",
}
UNKNOWN_REPACK = "gptq_marlin_repack(Tensor b_q_weight, SymInt size_k, SymInt size_n, int num_bits, int tile) -> Tensor"
NAMESPACES = {   # namespace -> (repack schema, gemm schema)
    "marlin_test_v2025": (REPACK_SCHEMA["snapshot"], GEMM_SCHEMA["snapshot"]),
    "marlin_test_current": (REPACK_SCHEMA["current"], GEMM_SCHEMA["current"]),
    "marlin_test_newest": (REPACK_SCHEMA["newest"], GEMM_SCHEMA["newest"]),
    "marlin_test_unknown": (UNKNOWN_REPACK, GEMM_SCHEMA["unknown"]),
    "marlin_test_repack_only": (REPACK_SCHEMA["current"], None),
    "marlin_test_other": ("add_one(Tensor a) -> Tensor", None),
}
CALLS: dict[str, list[dict]] = {}


def _kernel(namespace: str, schema: str):
    """A CPU kernel recording its arguments by name and computing with the NumPy oracle."""
    from marlin_ref.marlin_gemm import marlin_gemm_reference
    from marlin_ref.gptq_marlin_repack import gptq_marlin_repack

    op, names = schema.split("(")[0], [a.split()[-1] for a in schema.split("(", 1)[1].split(")")[0].split(", ")]

    def kernel(*args):
        call = dict(zip(names, args))
        CALLS.setdefault(namespace, []).append(call)
        if op == "gptq_marlin_repack":
            perm = call.get("perm")
            perm = None if perm is None or perm.numel() == 0 else to_numpy(perm)
            return to_torch(gptq_marlin_repack(to_numpy(call["b_q_weight"]), perm, call["size_k"], call["size_n"],
                                               call["num_bits"]))
        if op.endswith("marlin_gemm"):
            bias = call.get("b_bias_or_none")
            return to_torch(marlin_gemm_reference(
                to_numpy(call["a"]), to_numpy(call["b_q_weight"]), to_numpy(call["b_scales"]),
                None if bias is None else to_numpy(bias), size_n=call["size_n"], size_k=call["size_k"]))
        return call[names[0]] + 1

    return op, kernel


@pytest.fixture(scope="module")
def fake_ops():
    libraries = []
    for namespace, schemas in NAMESPACES.items():
        lib = torch.library.Library(namespace, "DEF")
        for schema in filter(None, schemas):
            lib.define(schema)
            lib.impl(*_kernel(namespace, schema), "CPU")
        libraries.append(lib)
    yield NAMESPACES
    for lib in libraries:
        lib._destroy()


def ops_backend(namespace):
    return M.marlin_ops_backend(namespace, device="cpu")


# --- marlin-ops: schema detection and the calls -------------------------------------------------------

@pytest.mark.parametrize("namespace, label, passed", [
    ("marlin_test_v2025", "2025 snapshot (perm)", {"perm"}),
    ("marlin_test_current", "current (perm, is_a_8bit)", {"perm", "is_a_8bit"}),
    ("marlin_test_newest", "newest (no perm)", {"is_a_8bit"}),
])
def test_marlin_ops_repack_schema_detected_and_called(fake_ops, namespace, label, passed):
    b = ops_backend(namespace)
    assert f"torch.ops.{namespace}.gptq_marlin_repack [{label}] on cpu" in b.version
    assert "every other transform from marlin_fast" in b.version
    codes = np.zeros((16, 64), np.uint8)
    codes[3, 17] = ONE                                                 # -> byte 170 (§2.3.1, as above)
    out = b.gptq_marlin_repack(oracle().pack_fp8_to_int32(codes), None, 16, 64, 8)
    assert np.flatnonzero(out.view(np.uint8)).tolist() == [170]
    call = CALLS[namespace][-1]
    assert set(call) - {"b_q_weight", "size_k", "size_n", "num_bits"} == passed
    assert (call["size_k"], call["size_n"], call["num_bits"], call.get("is_a_8bit", False)) == (16, 64, 8, False)
    if "perm" in passed:
        assert call["perm"].dtype == torch.int32 and call["perm"].numel() == 0


def test_marlin_ops_ops_take_the_contract_keyword_names(fake_ops):
    b = ops_backend("marlin_test_current")
    assert parameters(b.gptq_marlin_repack) == parameters(oracle().gptq_marlin_repack)
    empty = inspect.Parameter.empty
    assert parameters(b.marlin_gemm) == [("a", empty), ("b_q_weight", empty), ("b_scales", empty),
                                         ("b_bias", None), ("size_n", empty), ("size_k", empty)]   # design.md


def test_marlin_ops_perm_goes_to_the_op_or_is_not_provided(fake_ops):
    codes = fp8_weights((32, 64), 8)
    packed, perm = oracle().pack_fp8_to_int32(codes), np.arange(32, dtype=np.int32)[::-1].copy()
    want = oracle().gptq_marlin_repack(packed, perm, 32, 64, 8)
    assert same_bytes(ops_backend("marlin_test_v2025").gptq_marlin_repack(packed, perm, 32, 64, 8), want)
    with pytest.raises(NotProvided, match=r"torch.ops.marlin_test_newest.gptq_marlin_repack takes no perm"):
        ops_backend("marlin_test_newest").gptq_marlin_repack(packed, perm, 32, 64, 8)


def gemm_case():
    """K=128, N=64, every weight 1.0, scale 1 (fused x2^8), bias[n] = n, a[m, :] = m + 1:
    y[m, n] = 128 (m + 1) + n exactly in fp16."""
    layer = ref_prepare_fp8(np.full((128, 64), ONE, np.uint8), np.array(1.0, np.float32), orig_dtype="float16",
                            bias=np.arange(64, dtype=FP16))
    a = np.repeat(np.arange(1, 3, dtype=FP16)[:, None], 128, axis=1)              # [M=2, K]
    want = (128 * np.arange(1, 3)[:, None] + np.arange(64)[None, :]).astype(FP16)  # [M, N]
    return layer, a, want


@pytest.mark.parametrize("namespace, op, takes_bias", [
    ("marlin_test_v2025", "gptq_marlin_gemm", False),
    ("marlin_test_current", "marlin_gemm", True),
    ("marlin_test_newest", "marlin_gemm", True),
])
def test_marlin_ops_gemm_schema_detected_and_bias_in_the_right_order(fake_ops, namespace, op, takes_bias):
    b = ops_backend(namespace)
    assert f"marlin_gemm: torch.ops.{namespace}.{op} [" in b.version
    layer, a, want = gemm_case()
    out = b.marlin_gemm(a, layer.qweight, layer.scales, layer.bias, size_n=64, size_k=128)
    assert same_bytes(out, want)                  # snapshot: the permuted bias is un-permuted, added after
    call = CALLS[namespace][-1]
    assert same_bytes(to_numpy(call["b_bias_or_none"]), layer.bias) if takes_bias else "b_bias_or_none" not in call
    assert call.get("b_type_id", call.get("b_q_type")) == 2814749767172868          # float8_e4m3fn (§1)
    ws = call["workspace"]
    assert ws.dtype == torch.int32 and ws.numel() >= 1 and not ws.any()
    assert (call["size_m"], call["size_n"], call["size_k"]) == (2, 64, 128)
    assert (call["use_fp32_reduce"], call["use_atomic_add"], call["is_zp_float"]) == (True, False, False)
    assert call.get("is_k_full") is (None if namespace.endswith("newest") else True)   # newest: no is_k_full
    nones = {"c_or_none", "a_scales", "global_scale", "b_zeros_or_none", "g_idx_or_none", "perm_or_none"}
    assert all(call[n] is None for n in nones & set(call))


def test_marlin_ops_gemm_views_uint8_mx_scales_as_e8m0(fake_ops):
    w = np.full((64, 128), ONE, np.uint8)                                       # MXFP8 weight [N, K]
    layer = oracle().prepare_mxfp8_layer_for_marlin(w, np.full((64, 4), 127, np.uint8))   # 2^0 everywhere
    a = np.ones((1, 128), ml_dtypes.bfloat16)                                   # MXFP8 kernels: bf16 only
    out = ops_backend("marlin_test_current").marlin_gemm(a, layer.qweight, layer.scales.view(np.uint8), None,
                                                         size_n=64, size_k=128)
    assert CALLS["marlin_test_current"][-1]["b_scales"].dtype == torch.float8_e8m0fnu
    assert out.astype(np.float64).tolist() == [[128.0] * 64]


# --- marlin-ops: what cannot be adapted is reported, never a crash -------------------------------------

def test_marlin_ops_unknown_schema_is_not_provided_with_the_schema(fake_ops):
    b = ops_backend("marlin_test_unknown")
    assert f"marlin_test_unknown::{UNKNOWN_REPACK}" in b.reason("gptq_marlin_repack")
    assert "unknown arguments ['tile']" in b.reason("gptq_marlin_repack")
    assert f"marlin_test_unknown::{GEMM_SCHEMA['unknown']}" in b.reason("marlin_gemm")
    with pytest.raises(NotProvided, match="unknown schema"):
        b.marlin_gemm(np.zeros((1, 128), FP16), np.zeros((8, 256), np.int32), np.ones((1, 64), FP16),
                      size_n=64, size_k=128)


def test_marlin_ops_absent_namespace_makes_every_op_not_provided():
    b = ops_backend("marlin_test_absent")
    why = b.reason("gptq_marlin_repack")
    assert b.provides == frozenset() and "torch.ops.marlin_test_absent has no registered operators" in why
    assert all(b.reason(op) == why for op in OPERATIONS) and "torch.ops.load_library" in why


def test_marlin_ops_namespace_without_marlin_ops_makes_every_op_not_provided(fake_ops):
    b = ops_backend("marlin_test_other")
    assert b.provides == frozenset()
    assert "registers neither gptq_marlin_repack nor marlin_gemm nor gptq_marlin_gemm" in b.reason("marlin_gemm")


def test_marlin_ops_missing_gemm_keeps_the_repack_and_marlin_fast_transforms(fake_ops):
    b = ops_backend("marlin_test_repack_only")
    assert b.reason("marlin_gemm") == "torch.ops.marlin_test_repack_only has neither marlin_gemm nor gptq_marlin_gemm"
    assert "gptq_marlin_repack" in b.provides and "prepare_fp8_layer_for_marlin" in b.provides
    bias = np.arange(64, dtype=FP16)
    assert same_bytes(b.marlin_permute_bias(bias), oracle().marlin_permute_bias(bias))


def test_marlin_ops_scheme_resolves_through_get_backend(fake_ops):
    register()
    b = get_backend("marlin-ops:marlin_test_current")
    assert b.name == "marlin-ops:marlin_test_current" and {"gptq_marlin_repack", "marlin_gemm"} <= b.provides
