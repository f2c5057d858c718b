"""GPU tier, the GEMM's contract on the backend under test (any kernel: --marlin-backend cuda, marlin-ops:<ns>, ...):
one-hot rows read back RT(W_eff) bit for bit for every scheme and dtype and M on both sides of every branch; random
rows within marlin_gemm_error_bound (Hypothesis steering to the worst ratio) written into an output poisoned with
NaN inside guard regions that must stay untouched, from activations whose row stride exceeds K; repeated calls
bitwise equal; M = 0; and the special values of §3.4/§3.7 as vLLM's kernel produces them."""

import zlib

import numpy as np
import pytest
from hypothesis import given, strategies as st, target

from gpu_cases import SCHEMES, activations, assert_same_values, device_gemm, gemm, make_layer
from marlin_ref.marlin_gemm import ieee_matmul, marlin_gemm_error_bound, one_hot_activations, one_hot_expected
from properties.cases.gemm_cases import GEMM_ROW, contract_shape
from properties.laws import assert_within_gemm_bound, within_limits
from properties.pytest_plugin import examples
from properties.seam.backends import to_numpy, to_torch

torch = pytest.importorskip("torch")
OP = "marlin_gemm"
SIZE_K, SIZE_N = 512, 192      # N = 3 tiles: blocks of 2 and 4 tiles overhang N
ROWS = [1, 3, 8, 9, 16, 17, 37, 48, 49, 64, 65, 130, SIZE_K]   # both sides of M <= 8, 16, 48 and 64 (§4.2)
GUARD = 4096                   # elements of sentinel on each side of the output
SENTINEL = 0x5A5A              # bit pattern of the guard elements (a finite value in fp16 and bf16)


def cell(scheme, dtype, bias=False):
    return pytest.mark.marlin_cell(OP, scheme, dtype, "bias" if bias else "-")


def cells(bias_values=(False, True)):
    return [pytest.param(s, d, b, marks=cell(s, d, b), id=f"{s}-{d}{'-bias' if b else ''}")
            for s, d in SCHEMES for b in bias_values]


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("scheme, dtype, bias", cells())
def test_one_hot_reads_back_rt_of_w_eff(device_backend, scheme, dtype, bias, rows):
    # out[m, n] = RT(W_eff[hot[m], n]) (+ b[n]) exactly; every e4m3 code (NaN, subnormal, -0) appears in W.
    rng = _rng(scheme, dtype, rows, bias)
    layer = make_layer(scheme, dtype, SIZE_K, SIZE_N, rng, bias=bias)
    hot = np.arange(SIZE_K) if rows == SIZE_K else rng.choice(SIZE_K, rows, replace=rows > SIZE_K)
    want = one_hot_expected(layer.w_eff, dtype, hot=hot, bias=layer.bias)
    got = gemm(device_backend, layer, one_hot_activations(hot, SIZE_K, dtype))
    assert_same_values(got, want, where=f"{scheme}/{dtype} one-hot M={rows}")


@st.composite
def random_gemms(draw, scheme):
    """One GEMM of a scheme, of a shape every Marlin kernel takes (§4.2; K <= 1024, N <= 768): shrinks towards
    M = 1, (K, N) = (128, 64). Our own kernel's wider shapes (K % 16) are its unit tests'
    (test_marlin_fast_cuda_internals.py)."""
    size_k, size_n = contract_shape(draw, scheme, max_k_units=8, max_n_tiles=6)
    return {"size_k": size_k, "size_n": size_n,
            "rows": draw(st.one_of(st.integers(1, 20), st.integers(1, 300)), label="rows"),
            "act_scale": draw(st.sampled_from([1.0, 2.0 ** -12, 2.0 ** 8]), label="act_scale"),
            "row_pad": draw(st.sampled_from([0, 8, 40]), label="row_pad"),        # row stride = K + pad
            "seed": draw(st.integers(0, 2**32 - 1), label="seed")}


def guarded_output(rows, size_n, dtype, device):
    """(buffer, out): out is a contiguous [rows, N] view in the middle of buffer, poisoned with NaN; the GUARD
    elements on each side hold SENTINEL."""
    buf = torch.full((rows * size_n + 2 * GUARD,), SENTINEL, dtype=torch.int16, device=device)
    buf = buf.view(getattr(torch, dtype))
    out = buf[GUARD:GUARD + rows * size_n].view(rows, size_n)
    out.fill_(float("nan"))
    return buf, out


def assert_guards_untouched(buf, rows, size_n):
    __tracebackhide__ = True
    bits = buf.view(torch.int16)
    for name, part in (("before", bits[:GUARD]), ("after", bits[GUARD + rows * size_n:])):
        changed = int((part != SENTINEL).sum())
        assert changed == 0, f"{changed} guard elements {name} the output were overwritten"


def strided(a: np.ndarray, pad: int, device):
    """a as a tensor whose rows sit `pad` elements apart beyond K (a slice of a wider matrix)."""
    wide = np.zeros((a.shape[0], a.shape[1] + pad), a.dtype)
    wide[:, pad:] = a
    return to_torch(wide, device)[:, pad:]


@pytest.mark.parametrize("scheme, dtype, bias", cells())
@given(data=st.data())
@examples(0.5)
def test_random_gemm_within_error_bound(device_backend, scheme, dtype, bias, data):
    # |out - a @ W_eff (+ b)| <= marlin_gemm_error_bound; every element written, guards intact, strided rows.
    case = data.draw(random_gemms(scheme), label="case")
    rng = np.random.default_rng(case["seed"])
    layer = make_layer(scheme, dtype, case["size_k"], case["size_n"], rng, bias=bias)
    a = activations(rng, case["rows"], case["size_k"], dtype, scale=case["act_scale"])
    _, device = device_backend.device_op(OP)
    buf, out = guarded_output(case["rows"], case["size_n"], dtype, device)
    device_gemm(device_backend, layer, strided(a, case["row_pad"], device), out=out)
    got = to_numpy(out)
    assert_guards_untouched(buf, case["rows"], case["size_n"])
    bound = marlin_gemm_error_bound(a, layer.w_eff, dtype, layer.bias, channel_scales=layer.channel_scales)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        ref = ieee_matmul(a.astype(np.float64), layer.w_eff)
        ref = ref if layer.bias is None else ref + layer.bias.astype(np.float64)
        ratio = np.abs(got.astype(np.float64) - ref) / bound
    finite = np.isfinite(ratio)
    target(float(ratio[finite].max()) if finite.any() else 0.0, label="max |err| / bound")
    assert_within_gemm_bound(got, a, layer.w_eff, dtype, bias=layer.bias, channel_scales=layer.channel_scales,
                             where=f"marlin_gemm {scheme}/{dtype} {case}")


@pytest.mark.parametrize("rows", [1, 7, 16, 48, 200])
@pytest.mark.parametrize("scheme, dtype, bias", cells((True,)))
def test_repeated_calls_are_bitwise_identical(device_backend, scheme, dtype, bias, rows):
    # One result per input: no data race, no order that changes between calls (§3.3).
    rng = np.random.default_rng(rows)
    layer = make_layer(scheme, dtype, 1024, 256, rng, bias=bias)
    _, device = device_backend.device_op(OP)
    a = to_torch(activations(rng, rows, 1024, dtype), device)
    first = device_gemm(device_backend, layer, a)
    for _ in range(3):
        assert torch.equal(device_gemm(device_backend, layer, a).view(torch.int16), first.view(torch.int16))


@pytest.mark.parametrize("scheme, dtype, bias", cells((False,)))
def test_zero_rows_give_an_empty_output(device_backend, scheme, dtype, bias):
    # a backend whose limits leave out an empty batch (vLLM's marlin_mm: min_rows 1) is never sent one
    within_limits(device_backend, GEMM_ROW, {"rows": 0, "size_k": 256, "size_n": 128})
    rng = np.random.default_rng(71)
    layer = make_layer(scheme, dtype, 256, 128, rng)
    assert gemm(device_backend, layer, activations(rng, 0, 256, dtype)).shape == (0, 128)


# --- special values (§3.4, §3.7): vLLM's kernel's behaviour, matched by the contract -------------------

@pytest.mark.marlin_cell(OP, "mx", "bfloat16")
def test_e8m0_byte_0_reads_as_zero_and_255_as_infinity(device_backend):
    # MXFP8: byte 0 -> multiplier +0 (not 2^-127), byte 255 -> +inf (not NaN), as vLLM's kernel (§3.1).
    rng = np.random.default_rng(31)
    size_k, size_n = 128, 64
    bytes_ = rng.choice(np.array([0, 1, 127, 200, 254], np.uint8), (size_k // 32, size_n))
    bytes_[:, 7] = 255                                   # one column with an infinite multiplier
    layer = make_layer("mx", "bfloat16", size_k, size_n, rng, scales_logical=bytes_)
    hot = np.arange(size_k)
    got = gemm(device_backend, layer, one_hot_activations(hot, size_k, "bfloat16"))
    assert_same_values(got, one_hot_expected(layer.w_eff, "bfloat16", hot=hot), where="e8m0 specials")
    assert np.isnan(got[:, 7].astype(np.float64)).all()  # 0 * inf poisons the column (x is one-hot)


@pytest.mark.parametrize("scheme, dtype, bias", cells((False,))[:4])
def test_fused_scales_of_256_make_every_output_non_finite(device_backend, scheme, dtype, bias):
    # S >= 256 -> fused S * 2^beta overflows to inf (§2.6, §3.5) -> no finite output (§3.7).
    rng = np.random.default_rng(41)
    layer = make_layer(scheme, dtype, 256, 128, rng, scale_range=(256.0, 256.0))
    got = gemm(device_backend, layer, activations(rng, 8, 256, dtype)).astype(np.float64)
    assert not np.isfinite(got).any()


@pytest.mark.marlin_cell(OP, "channel", "bfloat16")
def test_bf16_channel_wise_underflows_for_tiny_activations_as_vllm(device_backend):
    # Matched on purpose (§3.5, §3.7): bf16 channel-wise products x*u*2^-120 below the fp32 subnormal grid are lost
    # inside the MMA, so |x| ~ 2^-64 gives exact zeros; the group-128 path keeps them.
    rng = np.random.default_rng(51)
    a = activations(rng, 4, 256, "bfloat16", scale=2.0 ** -64)
    channel = make_layer("channel", "bfloat16", 256, 128, rng)
    assert (gemm(device_backend, channel, a).astype(np.float64) == 0).all()
    group = make_layer("group128", "bfloat16", 256, 128, rng)
    got = gemm(device_backend, group, a)
    assert np.count_nonzero(got.astype(np.float64)) > 0
    assert_within_gemm_bound(got, a, group.w_eff, "bfloat16", where="group-128 with tiny activations")
