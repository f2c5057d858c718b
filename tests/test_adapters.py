"""The adapters of external implementations (properties/adapters), CPU only. Expectations come from the spec
(worked examples, closed forms) or from the oracle.

* "vllm": tested against a FAKE vllm package written to a temp dir, in both layouts vLLM has had: older (a Python
  marlin_permute_scales in marlin_utils) and current (vLLM @ c54390e: only vllm._custom_ops.marlin_permute_scales,
  a wrapper of a compiled op). Its functions are thin torch implementations delegating to marlin_fast, taking
  vLLM's `layer` objects; its compiled ops are registered with torch.library in a stand-in for torch.ops._C.
* "marlin-ops:<ns>": tested against fake ops in test-local namespaces, one per schema version of spec §4.3 (CPU
  kernels delegating to the NumPy oracle).
* The version string of a package's backend (properties.seam.backends._package_version).
"""

import contextlib
import importlib
import inspect
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
import torch

from marlin_ref.prepare_fp8_layer_for_marlin import prepare_fp8_layer_for_marlin as ref_prepare_fp8
from properties.seam.adapters import register
from properties.seam.adapters import marlin_ops as M
from properties.seam.adapters.vllm import CUSTOM_OPS, FP8_UTILS, NO_EQUIVALENT, SOURCES, USES, UTILS, vllm_backend
from properties.seam.capabilities import Cell
from properties.seam.backends import (OPERATIONS, BackendError, NotProvided, _package_version, backend_names,
                                 get_backend, oracle, to_numpy, to_torch)

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


def fp8_weights(shape, seed):
    codes = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return np.where((codes & 0x7F) == 0x7F, 0, codes).astype(np.uint8)          # no NaN codes


# --- compiled-op libraries (torch.library), for both adapters' fakes ------------------------------------

REPACK_SCHEMA = {
    "snapshot": "gptq_marlin_repack(Tensor b_q_weight, Tensor perm, SymInt size_k, SymInt size_n, int num_bits) "
                "-> Tensor",
    "current": "gptq_marlin_repack(Tensor b_q_weight, Tensor perm, SymInt size_k, SymInt size_n, int num_bits, "
               "bool is_a_8bit) -> Tensor",
    "newest": "gptq_marlin_repack(Tensor b_q_weight, SymInt size_k, SymInt size_n, int num_bits, bool is_a_8bit) "
              "-> Tensor",
}


def schema_names(schema: str) -> tuple[str, list[str]]:
    """(op name, argument names) of a schema string such as "f(Tensor s, Tensor(a!) out, int t=32) -> ()"."""
    op, args = schema.split("(", 1)
    return op, [arg.split()[-1].split("=")[0] for arg in args.rsplit(") ->", 1)[0].split(", ")]


def given_perm(call: dict):
    """The repack's perm as given to a kernel: None when absent or empty (no act-order)."""
    perm = call.get("perm")
    return None if perm is None or perm.numel() == 0 else perm


def _kernel(compute, namespace: str, op: str, names: list[str]):
    return lambda *args: compute(namespace, op, dict(zip(names, args)))


@contextlib.contextmanager
def op_libraries(namespaces: dict, compute):
    """{namespace: (dispatch key, schemas)} defined with torch.library, each op with a kernel for that key only
    that returns compute(namespace, op name, {argument name: value}); destroyed on exit."""
    libraries = []
    try:
        for namespace, (key, schemas) in namespaces.items():
            libraries.append(torch.library.Library(namespace, "DEF"))
            for schema in filter(None, schemas):
                op, names = schema_names(schema)
                libraries[-1].define(schema)
                libraries[-1].impl(op, _kernel(compute, namespace, op, names), key)
        yield
    finally:
        for lib in libraries:
            lib._destroy()


# --- the fake vllm package, in its two layouts -------------------------------------------------------------

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
    "apply_fp8_marlin_linear": """
        def apply_fp8_marlin_linear(input, weight, weight_scale, workspace, size_n, size_k, bias, input_dtype=None,
                                    use_fp32_reduce=True):
            assert workspace.dtype == torch.int32 and not workspace.any()
            return mf.apply_fp8_marlin_linear(input, weight, weight_scale, size_n=size_n, size_k=size_k, bias=bias)
    """,
    "apply_mxfp8_marlin_linear": """
        def apply_mxfp8_marlin_linear(input, weight, weight_scale, workspace, size_n, size_k, bias, input_dtype=None,
                                      use_fp32_reduce=True):
            assert weight_scale.dtype == torch.float8_e8m0fnu
            return mf.apply_mxfp8_marlin_linear(input, weight, weight_scale, size_n=size_n, size_k=size_k, bias=bias)
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
FAKE_CUSTOM_OPS = {   # wrappers of the compiled ops (COMPILED: the stand-in for torch.ops._C), as at c54390e
    "marlin_permute_scales": """
        def marlin_permute_scales(s, size_k, size_n, group_size, is_a_8bit=False):
            out = torch.empty(s.shape, dtype=s.dtype, device=s.device)
            grouped = group_size != -1 and group_size < size_k and not is_a_8bit
            COMPILED.marlin_permute_scales_out(s, out, not grouped)
            return out.reshape(-1, size_n)
    """,
    "mxfp4_marlin_process_scales": """
        def mxfp4_marlin_process_scales(s, input_dtype=None):
            assert input_dtype is None                               # 16-bit activations
            out = torch.empty(s.shape, dtype=torch.float8_e8m0fnu, device=s.device)
            COMPILED.mxfp4_marlin_process_scales_out(s, out, torch.empty(0, dtype=torch.bool), False)
            return out
    """,
}
LAYOUTS = {   # layout -> (its repack signature, {module: the functions it lacks})
    "older": ("current", {"_custom_ops": {"marlin_permute_scales", "mxfp4_marlin_process_scales"}}),
    "current": ("newest", {"marlin_utils": {"marlin_permute_scales"}}),      # vLLM @ c54390e, spec §9
}
VLLM_COMPILED = {   # layout -> its compiled ops (torch.ops._C; spec §4.3, marlin_scales.cu @ c54390e)
    "older": (REPACK_SCHEMA["current"],),
    "current": (REPACK_SCHEMA["newest"],
                "marlin_permute_scales_out(Tensor s, Tensor(a!) out, bool single, int tile_groups=32) -> ()",
                "mxfp4_marlin_process_scales_out(Tensor s, Tensor(a!) out, Tensor(b!) invalid, bool a8) -> ()"),
}


def compiled_namespace(layout: str, kernels: str | None) -> str:
    """The stand-in for torch.ops._C: kernels "CPU", "CUDA" (a CUDA kernel only), or None (no compiled ops)."""
    return f"marlin_test_vllm_{layout}_{kernels.lower()}" if kernels else "marlin_test_vllm_none"


def _vllm_compute(namespace: str, op: str, call: dict):
    """vLLM's compiled ops, computed with marlin_fast."""
    import marlin_fast as mf
    from marlin_fast.marlin_permute_scales import grouped_scale_perm, single_scale_perm

    if op == "gptq_marlin_repack":
        return mf.gptq_marlin_repack(call["b_q_weight"], given_perm(call), call["size_k"], call["size_n"],
                                     call["num_bits"])
    s, out = call["s"], call["out"]
    if op == "marlin_permute_scales_out":           # the single (32) or grouped (64) table, chunk by chunk (§2.4)
        perm = single_scale_perm() if call["single"] else grouped_scale_perm()
        out.copy_(s.reshape(-1, perm.numel())[:, perm].reshape(s.shape))
    else:                                           # mxfp4_marlin_process_scales_out, 16-bit activations (§2.7)
        assert not call["a8"]
        out.view(torch.uint8).copy_(mf.mxfp8_marlin_process_scales(s).view(torch.uint8))


@pytest.fixture(scope="module")
def vllm_compiled():
    with op_libraries({compiled_namespace(layout, key): (key, schemas)
                       for layout, schemas in VLLM_COMPILED.items() for key in ("CPU", "CUDA")}, _vllm_compute):
        yield


def write_fake_vllm(root, *, layout, namespace, repack=None, omit=(), broken=(), old_moe=False):
    """vllm/ under root: __init__, _custom_ops, model_executor/layers/quantization/utils/marlin_utils{,_fp8},
    laid out as `layout`; _custom_ops' wrappers call the compiled ops in torch.ops.<namespace>. omit: modules
    or functions left out; broken: modules that raise on import."""
    default_repack, lacks = LAYOUTS[layout]
    utils = root / "vllm/model_executor/layers/quantization/utils"
    utils.mkdir(parents=True)
    for package in (utils, *utils.parents):
        if package == root:
            break
        (package / "__init__.py").write_text("")
    (root / "vllm/__init__.py").write_text("__version__ = '0.0.fake'\n")
    params, recorded = FAKE_REPACK[repack or default_repack]
    perm_arg = "perm" if "perm" in params.split(", ") else "None"
    repack = (f"def gptq_marlin_repack({params}):\n    CALLS.append(dict({recorded}))\n"
              f"    return mf.gptq_marlin_repack(b_q_weight, {perm_arg}, size_k, size_n, num_bits)\n")
    ops = {"header": f"import torch\nimport marlin_fast as mf\nCALLS = []\nCOMPILED = torch.ops.{namespace}\n",
           "gptq_marlin_repack": repack, **FAKE_CUSTOM_OPS}
    fp8 = {**FAKE_FP8}
    fp8.pop("prepare_fp8_moe_layer_for_marlin" if old_moe else "prepare_moe_fp8_layer_for_marlin")
    for path, parts in ((root / "vllm/_custom_ops.py", ops),
                        (utils / "marlin_utils.py", FAKE_UTILS), (utils / "marlin_utils_fp8.py", fp8)):
        if path.stem in omit:
            continue
        left_out = set(omit) | lacks.get(path.stem, set())
        text = "".join(textwrap.dedent(src) + "\n" for name, src in parts.items() if name not in left_out)
        path.write_text(("raise RuntimeError('fake vllm: broken build')\n" if path.stem in broken else "") + text)


def forget_vllm():
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch, vllm_compiled):
    """fake_vllm(layout="current", kernels="CPU", **options) -> the "vllm" backend (CPU) built on a fresh fake
    package (options: write_fake_vllm's) and its compiled ops (kernels: compiled_namespace's)."""
    count = [0]

    def make(layout="current", kernels="CPU", **options):
        forget_vllm()
        count[0] += 1
        root = tmp_path / f"site{count[0]}"
        namespace = compiled_namespace(layout, kernels)
        write_fake_vllm(root, layout=layout, namespace=namespace, **options)
        monkeypatch.syspath_prepend(str(root))
        return vllm_backend(device="cpu", ops_namespace=namespace)

    yield make
    forget_vllm()


@pytest.fixture(params=LAYOUTS)
def layout(request):
    return request.param


def fake_module(name):
    return sys.modules[name]


def oracle_cases() -> dict[str, list[tuple]]:
    """Arguments, per op, on which every fake layout must agree with the oracle bit for bit."""
    s = (np.arange(2 * 128, dtype=np.float32).reshape(2, 128) / 8).astype(FP16)     # [G=2, N=128]
    ms = (2.0 ** (np.arange(4 * 64) % 9 - 4)).reshape(4, 64).astype(np.float32)     # powers of two (§2.7)
    return {
        "marlin_permute_scales": [(s, 256, 128, 128), (s[:1], 256, 128, -1)],        # grouped; single (§2.4)
        "fp8_fused_exponent_bias_into_scales": [(s,), (s.astype(ml_dtypes.bfloat16),)],
        "mxfp8_marlin_process_scales": [(ms,)],
        "gptq_marlin_repack": [(oracle().pack_fp8_to_int32(fp8_weights((32, 128), 9)), None, 32, 128, 8)],
    }


def assert_matches_the_oracle(b, op):
    for args in oracle_cases()[op]:
        assert same_bytes(b.op(op)(*args), oracle().op(op)(*args)), (op, [getattr(a, "shape", a) for a in args])


# --- vllm: discovery, places and "not provided" ---------------------------------------------------------

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


_FP8_NAMES = ("pack_fp8_to_int32, fp8_fused_exponent_bias_into_scales, mxfp8_marlin_process_scales, "
              "prepare_fp8_layer_for_marlin, prepare_fp8_moe_layer_for_marlin, prepare_mxfp8_layer_for_marlin, "
              "prepare_mxfp8_moe_layer_for_marlin, apply_fp8_marlin_linear, apply_mxfp8_marlin_linear")
FOUND_IN = {   # layout -> the version string: where each op was found
    "older": f"vllm 0.0.fake (cpu); marlin_utils_fp8: {_FP8_NAMES}; marlin_utils: marlin_permute_scales, "
             "marlin_permute_bias, marlin_padded_nk, marlin_moe_padded_intermediate; "
             "vllm._custom_ops: gptq_marlin_repack [current (perm, is_a_8bit)]",
    "current": f"vllm 0.0.fake (cpu); marlin_utils_fp8: {_FP8_NAMES}; marlin_utils: marlin_permute_bias, "
               "marlin_padded_nk, marlin_moe_padded_intermediate; "
               "vllm._custom_ops: marlin_permute_scales, gptq_marlin_repack [newest (no perm)]",
}


def test_vllm_fake_provides_every_op_and_names_where_it_found_each(fake_vllm, layout):
    b = fake_vllm(layout=layout)
    assert b.provides == frozenset(SOURCES) and b.version == FOUND_IN[layout]
    for op, why in NO_EQUIVALENT.items():
        assert b.reason(op) == why
    assert b.reason("marlin_gemm") == (f"torch.ops.{compiled_namespace(layout, 'CPU')} has neither marlin_gemm nor "
                                       "gptq_marlin_gemm")
    with pytest.raises(NotProvided, match="vLLM has no inverse"):
        b.unpack_fp8_from_int32(np.zeros((1, 4), np.int32))


def parameters(fn) -> list[tuple[str, object]]:
    """(name, default) of each parameter; inspect follows torch_adapter's __wrapped__ to the wrapper."""
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


def test_vllm_ops_take_the_contract_keyword_names(fake_vllm, layout):
    # The laws call every op by keyword: each wrapper has the oracle's parameter names and defaults.
    b, ref = fake_vllm(layout=layout), oracle()
    for op in sorted(b.provides):
        assert parameters(b.op(op)) == parameters(ref.op(op)), op


_CURRENT_C = "torch.ops.marlin_test_vllm_current_cpu"


@pytest.mark.parametrize("omit, place", [
    ("marlin_permute_scales", f"{_CURRENT_C}: marlin_permute_scales_out (as marlin_permute_scales)"),
    ("mxfp8_marlin_process_scales", "vllm._custom_ops: mxfp4_marlin_process_scales (as mxfp8_marlin_process_scales)"),
    ("gptq_marlin_repack", f"{_CURRENT_C}: gptq_marlin_repack [newest (no perm)]"),
])
def test_vllm_op_found_at_the_next_place_when_the_first_lacks_it(fake_vllm, omit, place):
    b = fake_vllm(omit=(omit,))
    assert place in b.version and omit in b.provides
    assert_matches_the_oracle(b, omit)


def test_vllm_op_nowhere_names_each_place_looked_in(fake_vllm):
    lacking = ("marlin_permute_scales", "mxfp8_marlin_process_scales", "gptq_marlin_repack")
    b = fake_vllm(kernels=None, omit=lacking + ("mxfp4_marlin_process_scales",))
    compiled = "torch.ops.marlin_test_vllm_none"
    assert b.reason("marlin_permute_scales") == (f"vllm 0.0.fake: no {CUSTOM_OPS}.marlin_permute_scales; "
                                                 f"no {compiled}.marlin_permute_scales_out; "
                                                 f"no {UTILS}.marlin_permute_scales")
    assert b.reason("mxfp8_marlin_process_scales") == (f"vllm 0.0.fake: no {FP8_UTILS}.mxfp8_marlin_process_scales; "
                                                       f"no {CUSTOM_OPS}.mxfp4_marlin_process_scales")
    assert b.reason("gptq_marlin_repack") == (f"vllm 0.0.fake: no {CUSTOM_OPS}.gptq_marlin_repack; "
                                              f"no {compiled}.gptq_marlin_repack")
    assert b.provides == frozenset(SOURCES) - set(lacking)


def test_vllm_missing_functions_and_modules_are_each_not_provided(fake_vllm):
    b = fake_vllm(layout="older", kernels=None, omit=("mxfp8_marlin_process_scales", "prepare_mxfp8_layer_for_marlin",
                                                      "marlin_permute_bias", "_custom_ops"))
    assert b.reason("mxfp8_marlin_process_scales") == (f"vllm 0.0.fake: no {FP8_UTILS}.mxfp8_marlin_process_scales; "
                                                       f"no module {CUSTOM_OPS}")
    assert b.reason("marlin_permute_bias") == f"vllm 0.0.fake: no {UTILS}.marlin_permute_bias"
    assert b.reason("gptq_marlin_repack") == (f"vllm 0.0.fake: no module {CUSTOM_OPS}; "
                                              "no torch.ops.marlin_test_vllm_none.gptq_marlin_repack")
    assert b.reason("marlin_gemm") == f"vllm 0.0.fake: no module {CUSTOM_OPS}, which loads vLLM's compiled ops"
    assert "marlin_permute_scales" in b.provides and "prepare_mxfp8_moe_layer_for_marlin" in b.provides
    b = fake_vllm(layout="older", omit=("marlin_utils",))
    assert b.reason("marlin_padded_nk") == f"vllm 0.0.fake: no module {UTILS}"


@pytest.mark.parametrize("layout, stopped", [
    ("older", {"gptq_marlin_repack"}),
    ("current", {"gptq_marlin_repack", "marlin_permute_scales"}),
])
def test_vllm_compiled_ops_with_a_cuda_kernel_only_are_not_provided_on_the_cpu(fake_vllm, layout, stopped):
    # vLLM's compiled ops have CUDA kernels only: on the CPU they, and each prepare_* that runs them, are skipped.
    b = fake_vllm(layout=layout, kernels="CUDA")
    compiled = f"torch.ops.{compiled_namespace(layout, 'CUDA')}"
    assert b.provides == frozenset(SOURCES) - stopped - set(USES)
    for op in stopped:
        assert f"{compiled}." in b.reason(op) and "has a CUDA kernel only and there is no CUDA device" in b.reason(op)
    for op in USES:
        assert all(f"it runs {CUSTOM_OPS}.{dep}, and {compiled}." in b.reason(op) for dep in stopped), b.reason(op)


def test_vllm_broken_module_fails_instead_of_skipping(fake_vllm):
    b = fake_vllm(broken=("marlin_utils_fp8",))
    with pytest.raises(BackendError, match="importing .*marlin_utils_fp8 failed: RuntimeError: fake vllm: broken"):
        b.pack_fp8_to_int32(np.zeros((4, 4), np.uint8))
    assert "marlin_permute_scales" in b.provides
    b = fake_vllm(broken=("_custom_ops",))      # the first place of marlin_permute_scales: no fall-back past it
    with pytest.raises(BackendError, match="importing vllm._custom_ops failed: RuntimeError: fake vllm: broken"):
        b.marlin_permute_scales(np.zeros((1, 64), FP16), 128, 64, -1)


# --- vllm: the mapping, for real, in both layouts ---------------------------------------------------------

def test_vllm_pack_views_uint8_codes_as_e4m3_worked_example(fake_vllm, layout):
    b = fake_vllm(layout=layout)
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
    assert f"vllm._custom_ops: marlin_permute_scales, gptq_marlin_repack [{label}]" in b.version
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


def test_vllm_padding_helpers_hand_values(fake_vllm, layout):
    b = fake_vllm(layout=layout)
    assert tuple(b.marlin_padded_nk(192, 64, -1)) == (256, 64)       # (192,128)=24576 vs (256,64)=16384, §2.11
    assert b.marlin_moe_padded_intermediate(96, -1) == 128 and b.marlin_moe_padded_intermediate(160, 128) == 256


DENSE_CASES = {
    "tensor-bias-kfirst": dict(size_k_first=True, weight_scale=np.array(0.5, np.float32), orig_dtype="float16",
                               bias=(np.arange(128) / 4).astype(FP16)),
    "block-nfirst": dict(size_k_first=False, weight_scale=np.array([[0.5, 2.0], [4.0, 0.25]], np.float32),
                         orig_dtype="bf16", weight_block_size=[64, 128]),
    "logical-widths": dict(size_k_first=True, weight_scale=np.array([1.0, 3.0, 0.5], np.float32),
                           orig_dtype="float16", logical_widths=[64, 32, 32]),
}


@pytest.mark.parametrize("case", DENSE_CASES, ids=str)
def test_vllm_prepare_fp8_layer_round_trip_matches_the_oracle(fake_vllm, layout, case):
    b = fake_vllm(layout=layout)
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
def test_vllm_prepare_fp8_moe_round_trip_matches_the_oracle(fake_vllm, layout, old_moe, n):
    b = fake_vllm(layout=layout, old_moe=old_moe)
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


def test_vllm_mxfp8_prep_sets_the_default_dtype_for_the_call_only(fake_vllm, layout):
    b = fake_vllm(layout=layout)
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


def test_vllm_scale_functions_and_the_repack_match_the_oracle(fake_vllm, layout):
    b = fake_vllm(layout=layout)
    for op in oracle_cases():
        assert_matches_the_oracle(b, op)
    bias = np.arange(64, dtype=FP16)
    assert b.marlin_permute_bias(bias)[:12].tolist() == [0, 1, 8, 9, 16, 17, 24, 25, 2, 3, 10, 11]   # §2.4 single


# --- the version of a package's backend -----------------------------------------------------------------------

PACKAGE_FILES = {   # how a package is present -> its files besides the package itself
    "checkout": {"pyproject.toml": '[project]\nname = "fakepkg-checkout"\nversion = "9.8.7"\n'},
    "installed": {"fakepkg_installed-1.2.3.dist-info/METADATA":
                  "Metadata-Version: 2.1\nName: fakepkg-installed\nVersion: 1.2.3\n",
                  "fakepkg_installed-1.2.3.dist-info/top_level.txt": "fakepkg_installed\n"},
    "bare": {},
}


@pytest.mark.parametrize("present, want", [("checkout", "9.8.7 (checkout {root})"), ("installed", "1.2.3"),
                                           ("bare", "unknown")])
def test_package_version_of_a_checkout_or_an_installed_package(tmp_path, monkeypatch, present, want):
    # A source checkout (pip install never run) names its pyproject.toml version; an installed copy its metadata.
    package = f"fakepkg_{present}"
    for path, text in {f"{package}/__init__.py": "", f"{package}/sub.py": "", **PACKAGE_FILES[present]}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert _package_version(importlib.import_module(f"{package}.sub")) == want.format(root=tmp_path.resolve())
    finally:
        for name in (f"{package}.sub", package):
            sys.modules.pop(name, None)


# --- marlin-ops: fake op libraries, one namespace per schema version of §4.3 -------------------------------

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
MOE_SCHEMA = ("moe_wna16_marlin_gemm(Tensor a, Tensor? c_or_none, Tensor b_q_weight, Tensor? b_bias_or_none, "
              "Tensor b_scales, Tensor? a_scales, Tensor? global_scale, Tensor? b_zeros_or_none, "
              "Tensor? g_idx_or_none, Tensor? perm_or_none, Tensor workspace, Tensor sorted_token_ids, "
              "Tensor expert_ids, Tensor num_tokens_past_padded, Tensor topk_weights, int moe_block_size, "
              "int top_k, bool mul_topk_weights, int b_type_id, int size_m, int size_n, int size_k, "
              "bool is_k_full, bool use_atomic_add, bool use_fp32_reduce, bool is_zp_float, int thread_k, "
              "int thread_n, int blocks_per_sm) -> Tensor")        # ops.cu @ e2f92f4 (spec §4.3)
NAMESPACES = {   # namespace -> (repack schema, gemm schema[, MoE gemm schema])
    "marlin_test_v2025": (REPACK_SCHEMA["snapshot"], GEMM_SCHEMA["snapshot"]),
    "marlin_test_current": (REPACK_SCHEMA["current"], GEMM_SCHEMA["current"], MOE_SCHEMA),
    "marlin_test_newest": (REPACK_SCHEMA["newest"], GEMM_SCHEMA["newest"]),
    "marlin_test_unknown": (UNKNOWN_REPACK, GEMM_SCHEMA["unknown"]),
    "marlin_test_repack_only": (REPACK_SCHEMA["current"], None),
    "marlin_test_other": ("add_one(Tensor a) -> Tensor", None),
}
CALLS: dict[str, list[dict]] = {}


def _oracle_compute(namespace: str, op: str, call: dict):
    """Records the call's arguments by name and computes with the NumPy oracle."""
    from marlin_ref.marlin_gemm import marlin_gemm_reference
    from marlin_ref.gptq_marlin_repack import gptq_marlin_repack

    CALLS.setdefault(namespace, []).append(call)
    if op == "gptq_marlin_repack":
        perm = given_perm(call)
        return to_torch(gptq_marlin_repack(to_numpy(call["b_q_weight"]), None if perm is None else to_numpy(perm),
                                           call["size_k"], call["size_n"], call["num_bits"]))
    if op == "moe_wna16_marlin_gemm":
        return to_torch(_moe_as_vllm(call))
    if op.endswith("marlin_gemm"):
        bias = call.get("b_bias_or_none")
        return to_torch(marlin_gemm_reference(
            to_numpy(call["a"]), to_numpy(call["b_q_weight"]), to_numpy(call["b_scales"]),
            None if bias is None else to_numpy(bias), size_n=call["size_n"], size_k=call["size_k"]))
    return next(iter(call.values())) + 1


def _moe_as_vllm(call: dict) -> np.ndarray:
    """moe_wna16_marlin_gemm as vLLM's kernel reads its arguments (§5): block b of `moe_block_size` sorted rows belongs
    to expert expert_ids[b]; a row r < size_m·top_k is token r // top_k through that expert (bias, then the router
    weight when mul_topk_weights); padding rows (r >= size_m·top_k) and rows in no block are left as c_or_none has
    them. Computed with the oracle, one row at a time."""
    from marlin_ref.formats import round_to_dtype
    from marlin_ref.marlin_gemm import marlin_gemm_reference

    out = to_numpy(call["c_or_none"]).copy()
    a, q, s = to_numpy(call["a"]), to_numpy(call["b_q_weight"]), to_numpy(call["b_scales"])
    bias = None if call["b_bias_or_none"] is None else to_numpy(call["b_bias_or_none"])
    ids, experts = to_numpy(call["sorted_token_ids"]), to_numpy(call["expert_ids"])
    weights = to_numpy(call["topk_weights"]).reshape(-1)
    block, top_k, rows = call["moe_block_size"], call["top_k"], call["size_m"] * call["top_k"]
    assert int(to_numpy(call["num_tokens_past_padded"])[0]) == ids.size == block * experts.size
    for i, r in enumerate(ids.tolist()):
        if r >= rows:
            continue
        e = int(experts[i // block])
        y = marlin_gemm_reference(a[r // top_k][None], q[e], s[e], None if bias is None else bias[e],
                                  size_n=call["size_n"], size_k=call["size_k"])[0]
        if call["mul_topk_weights"]:
            y = round_to_dtype(y.astype(np.float64) * round_to_dtype(np.float64(weights[r]), y.dtype), y.dtype)
        out[r] = y
    return out


@pytest.fixture(scope="module")
def fake_ops():
    with op_libraries({namespace: ("CPU", schemas) for namespace, schemas in NAMESPACES.items()}, _oracle_compute):
        yield NAMESPACES


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
                                         ("b_bias", None), ("size_n", empty), ("size_k", empty),   # design.md
                                         ("out", None)]   # the device-level checks' output buffer (c_or_none)


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
def test_marlin_ops_gemm_schema_detected_and_bias_passed_where_the_schema_has_it(fake_ops, namespace, op,
                                                                                  takes_bias):
    b = ops_backend(namespace)
    assert f"marlin_gemm: torch.ops.{namespace}.{op} [" in b.version
    layer, a, want = gemm_case()
    if takes_bias:
        out = b.marlin_gemm(a, layer.qweight, layer.scales, layer.bias, size_n=64, size_k=128)
        assert same_bytes(out, want)
        assert same_bytes(to_numpy(CALLS[namespace][-1]["b_bias_or_none"]), layer.bias)
    else:   # the snapshot: a bias is never dropped nor emulated; its cells are "not provided" (the capability)
        with pytest.raises(NotProvided, match="this schema has no b_bias argument"):
            b.marlin_gemm(a, layer.qweight, layer.scales, layer.bias, size_n=64, size_k=128)
        out = b.marlin_gemm(a, layer.qweight, layer.scales, None, size_n=64, size_k=128)
        assert same_bytes(out, (want.astype(np.float64) - np.arange(64)).astype(FP16))
        assert "b_bias_or_none" not in CALLS[namespace][-1]
    call = CALLS[namespace][-1]
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
    assert "registers none of gptq_marlin_repack, marlin_gemm, gptq_marlin_gemm, moe_wna16_marlin_gemm" in \
        b.reason("marlin_gemm")


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


GEMM_CELLS = [Cell("marlin_gemm", s, d, f) for s in ("channel", "group128", "mx") for d in ("float16", "bfloat16")
              for f in ("-", "bias")]
REPACK_CELLS = [Cell("gptq_marlin_repack", "-", "8-bit", f) for f in ("-", "perm")]


@pytest.mark.parametrize("namespace, left_out", [
    # the snapshot: no e8m0 scale type and no b_bias (spec §7); the newest repack: no perm (§4.3)
    ("marlin_test_v2025", lambda c: c.scheme == "mx" and "scheme 'mx'" or c.feature == "bias" and "feature 'bias'"),
    ("marlin_test_current", lambda c: None),
    ("marlin_test_newest", lambda c: c.feature == "perm" and "feature 'perm'"),
])
def test_marlin_ops_capabilities_follow_the_schema(fake_ops, namespace, left_out):
    b = ops_backend(namespace)
    for cell in GEMM_CELLS + REPACK_CELLS:
        why = left_out(cell)
        if why:
            assert f"{why} is not provided" in b.gap(cell), cell
        else:
            assert b.gap(cell) is None, cell


@pytest.mark.parametrize("law", ["linear_one_hot_is_exact", "linear_within_bound"])
@pytest.mark.parametrize("scheme, bias", [("channel", True), ("block", False), ("tensor", True)])
def test_vllm_fake_linear_layer_through_the_end_to_end_law(fake_vllm, layout, law, scheme, bias):
    # vLLM's apply_fp8_marlin_linear after vLLM's prepare_fp8_layer_for_marlin, against the checkpoint's mathematics
    from properties.cases.linear_cases import FP8, check, row_named

    case = {"size_k": 100, "size_n": 96, "size_k_first": False, "orig_dtype": "bfloat16", "bias": bias,
            "scheme": scheme, "scale_dtype": "float32", "scale_rank": 2 if scheme == "block" else 1,
            "logical_widths": None, "block_n": 128, "seed": 3, "specials": "some", "plants": [],
            "activations": "one_hot" if law.startswith("linear_one") else "normal", "rows": 3, "lead": [3],
            "act_exponent": 0}
    if scheme == "block":
        case.update(size_k=256, size_n=192)          # block scales: K and N whole blocks of 128 / ragged N
    check(law, fake_vllm(layout=layout), row_named(FP8), case)



@pytest.mark.parametrize("law", ["moe_one_hot_is_exact", "moe_within_bound", "moe_expert_alone_equals_dense"])
@pytest.mark.parametrize("routing, experts, top_k, router_weights", [
    ("spread", 3, 2, True), ("some_unrouted", 4, 2, False), ("one_expert", 1, 1, True)])
def test_marlin_ops_moe_gemm_through_the_moe_laws(fake_ops, law, routing, experts, top_k, router_weights):
    # vLLM's moe_wna16_marlin_gemm schema: tokens aligned by expert as moe_align_block_size does, a zeroed output
    from properties.cases.moe_gemm_cases import MOE_GEMM_ROW, check

    b = ops_backend("marlin_test_current")
    assert "marlin_moe_gemm: torch.ops.marlin_test_current.moe_wna16_marlin_gemm on cpu" in b.version
    case = {"scheme": "group128", "dtype": "bfloat16", "size_k": 256, "size_n": 128, "activations":
            "normal" if law == "moe_within_bound" else "one_hot", "rows": 5, "act_exponent": 0, "bias": True,
            "specials": "some", "seed": 7, "experts": experts, "top_k": top_k, "routing": routing,
            "router_weights": router_weights}
    check(law, b, MOE_GEMM_ROW, case)
    call = next(c for c in reversed(CALLS["marlin_test_current"]) if "moe_block_size" in c)
    assert call["moe_block_size"] in (8, 16, 32, 48, 64) and call["b_type_id"] == 2814749767172868
    assert not to_numpy(call["workspace"]).any() and not to_numpy(call["c_or_none"]).any()


def test_marlin_ops_without_a_moe_gemm_says_so(fake_ops):
    assert "has no moe_wna16_marlin_gemm" in ops_backend("marlin_test_v2025").reason("marlin_moe_gemm")
