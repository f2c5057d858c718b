"""The backend seam (properties/seam/backends.py): registry, module:attribute, "not provided", byte conversions."""

import os
import subprocess
import sys
import textwrap
import types
import unittest
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from properties.seam import backends as B
from properties.seam.backends import Backend, BackendError, NotProvided, OPERATIONS, get_backend
from properties.pytest_plugin import PROFILE_EXAMPLES, default_profile, examples

REPO = Path(__file__).resolve().parents[1]
ALL_BYTES = np.arange(256, dtype=np.uint8)
PAIRS = [(ml_dtypes.float8_e4m3fn, torch.float8_e4m3fn), (ml_dtypes.float8_e8m0fnu, torch.float8_e8m0fnu),
         (ml_dtypes.bfloat16, torch.bfloat16), (np.float16, torch.float16), (np.float32, torch.float32),
         (np.int32, torch.int32), (np.uint8, torch.uint8)]


# --- registry -------------------------------------------------------------------------------------

def test_builtin_names_are_registered():
    assert {"ref", "torch", "torch-cuda", "cuda"} <= set(B.backend_names())


def test_ref_provides_every_layout_and_pipeline_operation():
    ref = get_backend("ref")
    assert ref.name == "ref" and ref.version.startswith("marlin_ref ")
    # the oracle has GEMM references (marlin_gemm_reference, marlin_moe_gemm_reference), not the kernels' ops
    assert set(OPERATIONS) - ref.provides == {"marlin_gemm", "marlin_moe_gemm"}
    assert "marlin_gemm" in ref.reason("marlin_gemm")


def test_torch_backend_names_its_versions():
    tb = get_backend("torch")
    assert "marlin_fast" in tb.version and f"torch {torch.__version__}" in tb.version
    assert "gptq_marlin_repack" in tb.provides


def test_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(B.ENV_VAR, "ref")
    assert get_backend() is get_backend("ref")
    monkeypatch.delenv(B.ENV_VAR)
    assert get_backend() is get_backend(B.DEFAULT_BACKEND)


def test_unknown_name_fails_early_with_the_choices():
    with pytest.raises(ValueError, match=r"backend 'nope' is not one of \['cuda', 'ref', 'torch', 'torch-cuda'"):
        get_backend("nope")


def test_registered_factory_runs_once_lazily():
    calls = []
    B.register_backend("test-lazy", lambda: calls.append(1) or Backend("test-lazy", "0"))
    assert calls == []
    assert get_backend("test-lazy") is get_backend("test-lazy") and calls == [1]


def test_scheme_resolves_names_with_a_prefix():
    B.register_scheme("test-scheme", lambda rest: Backend(f"test-scheme:{rest}", rest))
    assert get_backend("test-scheme:abc").version == "abc"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only report; this machine has CUDA")
def test_cuda_without_a_device_provides_nothing_and_says_why():
    for name in ("torch-cuda", "cuda"):
        cuda = get_backend(name)
        assert cuda.provides == frozenset()
        with pytest.raises(NotProvided, match="no CUDA device"):
            cuda.gptq_marlin_repack


# --- not provided -------------------------------------------------------------------------------

def test_a_missing_operation_is_a_skip_with_its_reason():
    empty = Backend("empty", "0", {}, {"gptq_marlin_repack": "not written yet"})
    with pytest.raises(NotProvided) as info:
        empty.op("gptq_marlin_repack")
    assert isinstance(info.value, unittest.SkipTest)
    assert str(info.value) == "not provided: backend 'empty' lacks gptq_marlin_repack: not written yet"
    with pytest.raises(AttributeError):
        empty.no_such_operation


def test_a_skip_inside_hypothesis_stays_a_skip():
    @given(st.integers())
    def law(x):
        Backend("empty", "0").op("pack_fp8_to_int32")

    with pytest.raises(unittest.SkipTest, match="not provided"):
        law()


def test_summary_counts_not_provided_apart(tmp_path):
    # End to end: a backend without the op gives skips, listed in their own terminal section.
    (tmp_path / "fake_backend.py").write_text("from properties.seam.backends import Backend\n"
                                              "def make():\n    return Backend('fake', '1', {}, {})\n")
    (tmp_path / "test_fake.py").write_text(textwrap.dedent("""
        import pytest
        @pytest.mark.parametrize("i", range(3))
        def test_needs_repack(backend, i):
            backend.gptq_marlin_repack
        def test_plain_skip():
            pytest.skip("unrelated")
    """))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "properties.pytest_plugin",
                          "--marlin-backend", "fake_backend:make", "-rs", str(tmp_path / "test_fake.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "4 skipped" in run.stdout, run.stdout + run.stderr
    assert "marlin: not provided by the backend under test" in run.stdout
    assert "    3 test(s): not provided: backend 'fake' lacks gptq_marlin_repack: no such function" in run.stdout


# --- module:attribute -----------------------------------------------------------------------------

def _numpy_double(x):
    return x * 2


NUMPY_NS = types.SimpleNamespace(MARLIN_ARRAYS="numpy", marlin_permute_bias=_numpy_double)
FORCED_TORCH = types.SimpleNamespace(MARLIN_ARRAYS="torch", marlin_permute_bias=lambda bias: bias.flip(0))


def make_ref_backend():
    return get_backend("ref").replaced("from-factory")


def test_module_path_adapts_a_numpy_module():
    b = get_backend("marlin_ref:")
    x = np.arange(64, dtype=np.float16)
    assert "marlin_permute_bias" in b.provides
    np.testing.assert_array_equal(b.marlin_permute_bias(x), get_backend("ref").marlin_permute_bias(x))


def test_module_path_detects_torch_functions_and_converts():
    b = get_backend("marlin_fast:")
    assert B._uses_torch(__import__("marlin_fast").gptq_marlin_repack)
    assert not B._uses_torch(__import__("marlin_ref").marlin_permute_bias)
    assert B._uses_torch(_numpy_double)   # defined in a module that imports torch: the rule says torch
    words = np.random.default_rng(0).integers(-2**31, 2**31, (4, 64), dtype=np.int64).astype(np.int32)
    got = b.gptq_marlin_repack(b_q_weight=words, perm=None, size_k=16, size_n=64, num_bits=8)
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, get_backend("ref").gptq_marlin_repack(words, None, 16, 64, 8))


def test_module_path_attribute_objects_and_the_explicit_convention():
    ns = get_backend(f"{__name__}:NUMPY_NS")
    assert ns.provides == {"marlin_permute_bias"} and ns.marlin_permute_bias is _numpy_double
    forced = get_backend(f"{__name__}:FORCED_TORCH")
    np.testing.assert_array_equal(forced.marlin_permute_bias(bias=np.arange(4.0)), [3.0, 2.0, 1.0, 0.0])


def test_module_path_factory_and_errors():
    assert get_backend(f"{__name__}:make_ref_backend").name == "from-factory"
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        get_backend("no_such_module_xyz:thing")
    with pytest.raises(ValueError, match="has no attribute path 'missing'"):
        get_backend(f"{__name__}:missing")
    with pytest.raises(TypeError, match="must return a Backend"):
        get_backend(f"{__name__}:_not_a_factory")


def _not_a_factory():
    return 42


def test_a_module_that_fails_to_import_fails_its_tests(tmp_path, monkeypatch):
    pkg = tmp_path / "broken_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "padding.py").write_text("raise RuntimeError('half-written module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    b = B.adapt("broken", "0", __import__("broken_pkg"), convention="numpy", stems=True)
    with pytest.raises(BackendError, match="importing broken_pkg.padding failed: RuntimeError: half-written"):
        b.marlin_padded_nk(size_n=64, size_k=64, group_size=-1)
    with pytest.raises(NotProvided, match="broken_pkg.gptq_marlin_repack does not exist"):
        b.gptq_marlin_repack


def test_replaced_builds_a_mutant_and_checks_names():
    ref = get_backend("ref")
    mutant = ref.replaced("mutant:test", marlin_permute_bias=_numpy_double)
    assert mutant.marlin_permute_bias is _numpy_double and mutant.provides == ref.provides
    assert ref.marlin_permute_bias is not _numpy_double
    with pytest.raises(ValueError, match=r"\['not_an_op'\] are not operations"):
        ref.replaced("x", not_an_op=_numpy_double)


# --- numpy <-> torch by bytes -----------------------------------------------------------------------

@pytest.mark.parametrize(("np_dtype", "torch_dtype"), PAIRS, ids=lambda d: str(d))
def test_conversion_keeps_every_byte(np_dtype, torch_dtype):
    width = np.dtype(np_dtype).itemsize
    raw = np.arange(256 ** min(width, 2), dtype=np.uint64).astype(f"<u{min(width, 2)}").view(np.uint8)
    raw = np.resize(raw, (raw.size // width) * width)                   # every byte (pair) pattern
    a = raw.view(np_dtype)
    t = B.to_torch(a)
    assert t.dtype == torch_dtype and tuple(t.shape) == a.shape
    assert t.view(torch.uint8).numpy().tobytes() == a.tobytes()
    back = B.to_numpy(t)
    assert back.dtype == np.dtype(np_dtype) and back.tobytes() == a.tobytes()


def test_conversion_is_by_bytes_not_by_value():
    codes = np.array([0x38, 0x7F, 0x80, 0x01], np.uint8)
    t = B.to_torch(codes.view(ml_dtypes.float8_e4m3fn))
    assert t.float()[0].item() == 1.0 and np.isnan(t.float()[1].item())          # 0x38 = 1.0, 0x7F = NaN
    e8m0 = np.array([127, 255], np.uint8).view(ml_dtypes.float8_e8m0fnu)
    assert B.to_torch(e8m0).view(torch.uint8).tolist() == [127, 255]


def test_conversion_of_rank_0_and_non_contiguous_arrays():
    scalar = np.array(1.5, ml_dtypes.bfloat16)
    assert B.to_torch(scalar).shape == () and B.to_numpy(B.to_torch(scalar)).tobytes() == scalar.tobytes()
    strided = np.arange(16, dtype=np.float16).reshape(4, 4).T
    assert B.to_numpy(B.to_torch(strided)).tobytes() == np.ascontiguousarray(strided).tobytes()


def test_cpu_conversion_shares_memory_so_in_place_writes_are_seen():
    a = np.zeros(4, np.float16)
    B.torch_adapter(lambda x: x.add_(1))(a)
    assert a.tolist() == [1.0] * 4


def test_adapter_converts_nested_results():
    layer = B.torch_adapter(lambda x: (x, {"y": x + 1}, None))(np.ones(2, np.float32))
    assert isinstance(layer[0], np.ndarray) and isinstance(layer[1]["y"], np.ndarray) and layer[2] is None


# --- the plugin's profiles --------------------------------------------------------------------------

def test_profiles_are_registered():
    from hypothesis import settings

    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.deadline is None and ci.print_blob and ci.database is None
    assert ci.max_examples == PROFILE_EXAMPLES["ci"]
    assert settings.get_profile("nightly").max_examples > ci.max_examples > settings.get_profile("dev").max_examples
    assert settings.get_profile("gpu").database is not None
    assert default_profile({"CI": "true"}) == "ci" and default_profile({}) == "dev"


def test_examples_scale_with_the_profile():
    from hypothesis import settings

    assert examples(0.5).max_examples == max(3, round(settings.default.max_examples * 0.5))


def test_a_case_beyond_declared_limits_is_never_sent(tmp_path):
    # MARLIN_CAPABILITIES limits: Hypothesis draws other cases, a replay says "not provided"; the op never sees it
    from properties.cases.transforms import by_name
    from properties.laws import check
    from properties.seam.backends import NotProvided

    seen = []
    ref = get_backend("ref")

    class Ops:
        MARLIN_ARRAYS = "numpy"
        MARLIN_CAPABILITIES = {"gptq_marlin_repack": {"limits": {"max_size_n": 64}}}

        @staticmethod
        def gptq_marlin_repack(b_q_weight, perm, size_k, size_n, num_bits):
            seen.append(size_n)
            return ref.gptq_marlin_repack(b_q_weight, perm, size_k, size_n, num_bits)

    backend = B.adapt("limited", "v", Ops)
    row = by_name("gptq_marlin_repack[8bit]")
    small = {"size_k": 16, "size_n": 64, "num_bits": 8, "perm": "none", "seed": 0, "specials": "none", "plants": []}
    check("matches_oracle", backend, row, small)
    with pytest.raises(NotProvided, match="beyond its limits"):
        check("matches_oracle", backend, row, {**small, "size_n": 128})
    assert seen == [64]

    from hypothesis import given, settings

    @given(case=row.cases_in(row.cells[0]))
    @settings(max_examples=30, deadline=None, database=None)
    def law(case):
        check("matches_oracle", backend, row, case)

    law()
    assert seen and max(seen) == 64


def test_a_replaced_op_computes_where_the_op_it_replaces_does():
    # A mutant wraps the NumPy-level op: the GPU tier's gate must still see its base's device (else the model-shape
    # laws skip on a GPU mutant), and device_op must not hand out the unreplaced torch-level op.
    from properties.strength.mutants import MUTANTS

    base = get_backend("torch")
    mutant = MUTANTS["gemm_drops_last_k_tile_at_large_k"].backend(base)
    assert mutant.op_device("marlin_gemm") == base.op_device("marlin_gemm") == "cpu"
    with pytest.raises(NotProvided, match="no device-level form"):
        mutant.device_op("marlin_gemm")
    assert base.device_op("marlin_gemm")[0] is base.op("marlin_gemm").__wrapped__
    with pytest.raises(NotProvided, match="takes NumPy arrays"):
        get_backend("ref").op_device("marlin_permute_bias")
