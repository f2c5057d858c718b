"""GPU tier, random GEMMs: within marlin_gemm_error_bound of the exact product (spec §3.6), with
Hypothesis steering towards the worst error/bound ratio; outputs poisoned with NaN before each call inside
guard regions that must stay untouched; activations with a row stride > K; repeated calls bitwise equal;
bad arguments rejected with the rule and the value (§4.1)."""

import numpy as np
import pytest
from hypothesis import given, target
from hypothesis import strategies as st

from gpu_cases import (CUDA_MARKS, FP8_GROUP, MX_GROUP, SCHEMES, TILE_K, TILE_N, activations, dev, host,
                       kernels, make_layer, run_gemm)
from marlin_ref.marlin_gemm import ieee_matmul, marlin_gemm_error_bound
from properties.laws import assert_within_gemm_bound
from properties.pytest_plugin import examples

pytestmark = CUDA_MARKS
torch = pytest.importorskip("torch")

GUARD = 4096                   # elements of sentinel on each side of the output
SENTINEL = 0x5A5A              # bit pattern of the guard elements (a finite value in fp16 and bf16)
K_UNIT = {"channel": TILE_K, "group128": FP8_GROUP, "mx": MX_GROUP}


@st.composite
def gemm_cases(draw):
    """One GEMM: shrinks towards channel-wise fp16, M = 1, one k unit, one 64-column tile, no bias."""
    scheme, dtype = draw(st.sampled_from(SCHEMES), label="scheme, dtype")
    unit = K_UNIT[scheme]
    min_units = 2 if scheme == "mx" else 1      # MXFP8 needs two e8m0 groups (one is ambiguous, §2.4)
    size_k = unit * draw(st.integers(min_units, 1024 // unit), label="k_units")
    size_n = TILE_N * draw(st.integers(1, 6), label="n_tiles")
    rows = draw(st.one_of(st.integers(1, 20), st.integers(1, 300)), label="rows")
    return {
        "scheme": scheme, "dtype": dtype, "size_k": size_k, "size_n": size_n, "rows": rows,
        "bias": draw(st.booleans(), label="bias"),
        "act_scale": draw(st.sampled_from([1.0, 2.0 ** -12, 2.0 ** 8]), label="act_scale"),
        "row_pad": draw(st.sampled_from([0, 8, 40]), label="row_pad"),       # row stride = K + pad
        "seed": draw(st.integers(0, 2**32 - 1), label="seed"),
    }


def guarded_output(rows, size_n, dtype):
    """(buffer, out): out is a contiguous [rows, N] view in the middle of buffer, poisoned with NaN;
    the GUARD elements on each side hold SENTINEL."""
    torch_dtype = getattr(torch, dtype)
    buf = torch.full((rows * size_n + 2 * GUARD,), SENTINEL, dtype=torch.int16, device="cuda").view(torch_dtype)
    out = buf[GUARD:GUARD + rows * size_n].view(rows, size_n)
    out.fill_(float("nan"))
    return buf, out


def assert_guards_untouched(buf, rows, size_n):
    __tracebackhide__ = True
    bits = buf.view(torch.int16)
    for name, part in (("before", bits[:GUARD]), ("after", bits[GUARD + rows * size_n:])):
        changed = int((part != SENTINEL).sum())
        assert changed == 0, f"{changed} guard elements {name} the output were overwritten"


def strided_activations(a: np.ndarray, pad: int):
    """a as a CUDA tensor whose rows sit `pad` elements apart beyond K (a slice of a wider matrix)."""
    if pad == 0:
        return dev(a)
    wide = np.zeros((a.shape[0], a.shape[1] + pad), a.dtype)
    wide[:, pad:] = a
    return dev(wide)[:, pad:]


@examples(1.0)
@given(case=gemm_cases())
def test_random_gemm_within_error_bound(case):
    # |out - a @ W_eff (+ b)| <= marlin_gemm_error_bound, every element written, guards intact.
    rng = np.random.default_rng(case["seed"])
    layer = make_layer(case["scheme"], case["dtype"], case["size_k"], case["size_n"], rng, bias=case["bias"])
    a = activations(rng, case["rows"], case["size_k"], case["dtype"], scale=case["act_scale"])
    buf, out = guarded_output(case["rows"], case["size_n"], case["dtype"])
    run_gemm(layer, strided_activations(a, case["row_pad"]), out=out)
    got = host(out)
    assert_guards_untouched(buf, case["rows"], case["size_n"])
    bound = marlin_gemm_error_bound(a, layer.w_eff, case["dtype"], layer.bias, channel_scales=layer.channel_scales)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = ieee_matmul(a.astype(np.float64), layer.w_eff)
        if layer.bias is not None:
            ref = ref + layer.bias.astype(np.float64)
        ratio = np.abs(got.astype(np.float64) - ref) / bound
    finite = np.isfinite(ratio)
    target(float(ratio[finite].max()) if finite.any() else 0.0, label="max |err| / bound")
    assert_within_gemm_bound(got, a, layer.w_eff, case["dtype"], bias=layer.bias,
                             channel_scales=layer.channel_scales, where=f"marlin_gemm {case}")


@pytest.mark.parametrize("scheme, dtype", SCHEMES)
@pytest.mark.parametrize("rows", [1, 7, 16, 48, 200])
def test_repeated_calls_are_bitwise_identical(scheme, dtype, rows):
    # No atomics on data: split-K partials are summed in split order by the last block (§3.3).
    rng = np.random.default_rng(rows)
    layer = make_layer(scheme, dtype, 1024, 256, rng, bias=True)
    a = dev(activations(rng, rows, 1024, dtype))
    first = run_gemm(layer, a)
    for _ in range(3):
        assert torch.equal(run_gemm(layer, a).view(torch.int16), first.view(torch.int16))


@pytest.mark.parametrize("scheme, dtype", SCHEMES)
def test_large_shape_within_error_bound(scheme, dtype):
    # One model-sized shape per scheme (K = 4096, N = 1024), M in both regimes.
    rng = np.random.default_rng(61)
    layer = make_layer(scheme, dtype, 4096, 1024, rng, bias=True)
    for rows in (5, 96):
        a = activations(rng, rows, 4096, dtype)
        assert_within_gemm_bound(host(run_gemm(layer, a)), a, layer.w_eff, dtype, bias=layer.bias,
                                 channel_scales=layer.channel_scales, where=f"{scheme}/{dtype} M={rows}")


# --- argument checks (§4.1) ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_layer():
    return make_layer("group128", "bfloat16", 256, 128, np.random.default_rng(71))


def _call(layer, a=None, scales=None, bias=None, **kw):
    a = dev(activations(np.random.default_rng(0), 4, layer.size_k, layer.dtype)) if a is None else a
    return kernels().marlin_gemm(a, dev(layer.qweight), dev(layer.scales) if scales is None else scales, bias,
                                 size_n=kw.pop("size_n", layer.size_n), size_k=kw.pop("size_k", layer.size_k), **kw)


def test_gemm_rejects_bad_arguments(small_layer):
    k = small_layer.size_k
    with pytest.raises(TypeError, match="a.dtype=Float must be torch.float16 or torch.bfloat16"):
        _call(small_layer, a=torch.zeros((4, k), device="cuda"))
    with pytest.raises(TypeError, match="b_scales.dtype=Half must equal a.dtype=BFloat16"):
        _call(small_layer, scales=dev(small_layer.scales).to(torch.float16))
    with pytest.raises(ValueError, match=r"a.shape=\[4, 128\] must be \[M, size_k=256\]"):
        _call(small_layer, a=torch.zeros((4, 128), dtype=torch.bfloat16, device="cuda"))
    with pytest.raises(ValueError, match="size_n=96 must be a positive multiple of 64"):
        _call(small_layer, size_n=96)
    with pytest.raises(ValueError, match="a.stride.0.=260 must be a multiple of 8"):
        _call(small_layer, a=torch.zeros((4, 260), dtype=torch.bfloat16, device="cuda")[:, :256])
    with pytest.raises(ValueError, match="group_size = size_k/G = 256/4; FP8 Marlin supports only"):
        _call(small_layer, scales=torch.zeros((4, 128), dtype=torch.bfloat16, device="cuda"))
    with pytest.raises(ValueError, match=r"b_bias.shape=\[64\] must be \[size_n=128\]"):
        _call(small_layer, bias=torch.zeros(64, dtype=torch.bfloat16, device="cuda"))


def test_mxfp8_rejects_fp16_activations():
    layer = make_layer("mx", "bfloat16", 128, 64, np.random.default_rng(81))
    a = torch.zeros((2, 128), dtype=torch.float16, device="cuda")
    with pytest.raises(ValueError, match="MXFP8 .e8m0 scales. needs bfloat16 activations"):
        _call(layer, a=a)


def test_mxfp8_rejects_a_single_scale_group():
    # K = 32: vLLM's prep would use the single permutation (32 < 32 fails), the kernel reads grouped (§2.4).
    layer = make_layer("mx", "bfloat16", 64, 64, np.random.default_rng(82))
    a = torch.zeros((2, 32), dtype=torch.bfloat16, device="cuda")
    with pytest.raises(ValueError, match="MXFP8 needs size_k >= 64"):
        kernels().marlin_gemm(a, dev(layer.qweight[:2]), dev(layer.scales[:1]), size_n=64, size_k=32)


def test_gemm_with_zero_rows_returns_empty(small_layer):
    a = torch.zeros((0, small_layer.size_k), dtype=torch.bfloat16, device="cuda")
    assert tuple(_call(small_layer, a=a).shape) == (0, small_layer.size_n)
