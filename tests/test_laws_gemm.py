"""GEMM laws of the backend under test (spec §3): `marlin_gemm` on Marlin tensors the oracle prepared.

Channel-wise, group-128 and MXFP8 weights, fp16/bf16, with and without bias, on the shapes the kernel
runs (§4.2). `--marlin-backend cuda` on a GPU runs the same laws on the CUDA kernels; the default `torch`
backend runs marlin_fast's torch GEMM. No law compares a row across batch sizes: the kernel's rows
depend on M (§3.3).
"""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings, target, strategies as st

from marlin_ref.marlin_gemm import one_hot_activations
from marlin_ref.prepare_fp8_layer_for_marlin import prepare_fp8_layer_for_marlin
from marlin_ref.prepare_mxfp8_layer_for_marlin import prepare_mxfp8_layer_for_marlin
from properties.seam.backends import get_backend
from properties.cases.gemm_cases import (GEMM_ROWS, NORMAL, OP, ONE_HOT, build_gemm, check, one_hot_cases,
                                         random_cases)
from properties.cases.transforms import cell_ids, cells_of
from properties.pytest_plugin import examples
from properties.cases.transforms import E4M3

FIND = settings(database=None, max_examples=500, suppress_health_check=list(HealthCheck), deadline=None)


GEMM = cells_of(GEMM_ROWS)


@pytest.mark.parametrize("row, cell", GEMM, ids=cell_ids(GEMM))
@given(data=st.data())
@examples(1.5)
def test_gemm_one_hot_is_exact(backend, row, cell, data):
    # One-hot rows (M <= 8, M > 8, the identity) read out RT(W_eff[hot, n]) (+ bias) bit for bit.
    check("gemm_one_hot_is_exact", backend, row, data.draw(row.cases_in(cell, activations=ONE_HOT), label="case"))


@pytest.mark.parametrize("row, cell", GEMM, ids=cell_ids(GEMM))
@given(data=st.data())
@examples(1.5)
def test_gemm_within_bound(backend, row, cell, data):
    # Normal activations: |out - a @ W_eff (+ b)| <= marlin_gemm_error_bound, steered to the worst ratio.
    ratio = check("gemm_within_bound", backend, row, data.draw(row.cases_in(cell, activations=NORMAL), label="case"))
    target(ratio, label="max |err| / bound")


@given(case=st.one_of(one_hot_cases(), random_cases()))
@examples(0.5)
def test_gemm_cases_are_kernel_shapes(case):
    # §4.2: (K % 128, N % 64) or (K % 64, N % 128); group 128 has >= 2 groups, MXFP8 >= 2 and bf16 only.
    k, n = case["size_k"], case["size_n"]
    assert json.loads(json.dumps(case)) == case
    assert (k % 128 == 0 and n % 64 == 0) or (k % 64 == 0 and n % 128 == 0)
    assert case["scheme"] != "group128" or (k % 128 == 0 and k >= 256)
    assert case["scheme"] != "mx" or (k // 32 >= 2 and case["dtype"] == "bfloat16")
    first, second = build_gemm(case).kwargs, build_gemm(case).kwargs
    for key in ("a", "b_q_weight", "b_scales"):
        assert first[key].tobytes() == second[key].tobytes(), f"{key} is not deterministic"
    assert first["a"].shape == (case["rows"], k)


@pytest.mark.parametrize("scheme, size_k", [("channel", 128), ("group128", 256), ("mx", 128)])
def test_gemm_cases_shrink_to_the_smallest_shape(scheme, size_k):
    # Hypothesis' simplest case of each scheme: one 64-column tile, the fewest k, one row, nothing special.
    case = find(one_hot_cases(), lambda c: c["scheme"] == scheme, settings=FIND)
    assert (case["size_k"], case["size_n"], case["activations"], case["rows"]) == (size_k, 64, "one_hot", 1)
    assert (case["bias"], case["specials"], case["seed"]) == (False, "none", 0)


# --- worked examples, hand-derived from the spec (any conforming backend) ---------------------------

FP16_S = 1 + 2.0 ** -10          # fp16's successor of 1.0: u·S leaves the fp16 grid for most u


def _run(backend, layer, a):
    return backend.marlin_gemm(a=a, b_q_weight=layer.qweight, b_scales=layer.scales, b_bias=layer.bias,
                               size_n=layer.padded_n, size_k=layer.padded_k).astype(np.float64)


@pytest.mark.parametrize("scheme, size_k, want", [
    # (A) Σ x·u first, then × S: (0.5625 - 0.5)·S = 0.0625 + 2^-14, on the fp16 grid (ulp 2^-14 there).
    pytest.param("channel", 128, 0.0625 + 2.0 ** -14, marks=pytest.mark.marlin_cell(OP, "channel", "float16")),
    # (B) B = RT(u·S) first: RT(0.5625 + 2^-11 + 2^-14) = 0.5625 + 2^-11 (ulp 2^-11, 1/8 ulp dropped)
    #     minus 0.5 + 2^-11 (exact): 0.0625.
    pytest.param("group128", 256, 0.0625, marks=pytest.mark.marlin_cell(OP, "group128", "float16")),
])
def test_scale_is_applied_where_the_scheme_says(backend, scheme, size_k, want):
    # §3.2: channel-wise scales multiply the accumulator, group-128 scales the dequantized weight.
    w = np.zeros((size_k, 64), np.uint8)
    w[0, 0], w[1, 0] = 0x31, 0x30                                               # 0.5625, 0.5 (§1)
    scale = np.full((size_k // 128, 1), FP16_S, np.float32)                     # [K/128, N/128] blocks
    layer = prepare_fp8_layer_for_marlin(w, scale if scheme == "group128" else np.float32(FP16_S),
                                         orig_dtype="float16",
                                         weight_block_size=[128, 128] if scheme == "group128" else None)
    a = np.zeros((1, size_k), np.float16)
    a[0, 0], a[0, 1] = 1.0, -1.0
    out = _run(backend, layer, a)
    assert out[0, 0] == want and not out[0, 1:].any()


@pytest.mark.marlin_cell(OP, "channel", "float16", "bias")
def test_bias_is_added_in_logical_order_after_rounding(backend):
    # §2.5, §3.2: W[3, 5] = 2.0 (0x40), S = 0.75 -> 1.5; logical bias b[n] = n/16, passed permuted.
    w = np.zeros((128, 64), np.uint8)
    w[3, 5] = 0x40
    bias = (np.arange(64) / 16).astype(np.float16)
    layer = prepare_fp8_layer_for_marlin(w, np.float32(0.75), orig_dtype="float16", bias=bias)
    out = _run(backend, layer, one_hot_activations([3], 128, "float16"))
    want = bias.astype(np.float64)
    want[5] += 1.5
    assert np.array_equal(out[0], want)


@pytest.mark.marlin_cell(OP, "channel", "float16")
def test_nan_codes_read_as_480_times_the_scale(backend):
    # §3.1, §3.4: 0x7F / 0xFF dequantize to ±1.875·2^-8, i.e. ±480·S = ±240 for S = 0.5; no NaN.
    w = np.zeros((128, 64), np.uint8)
    w[0, 0], w[1, 0] = 0x7F, 0xFF
    layer = prepare_fp8_layer_for_marlin(w, np.float32(0.5), orig_dtype="float16")
    out = _run(backend, layer, one_hot_activations([0, 1], 128, "float16"))
    assert out[:, 0].tolist() == [240.0, -240.0] and not out[:, 1:].any()


@pytest.mark.marlin_cell(OP, "mx", "bfloat16")
def test_mx_boundary_bytes(backend):
    # §3.1, §3.4: e8m0 byte 0 -> 0 (not 2^-127), 255 -> +inf (so 0·inf = NaN down the whole column),
    # 130 -> 8; every weight 1.0 (0x38), K = 64 (2 groups), N = 128 (§4.2's K % 64, N % 128 shape).
    scales = np.full((128, 2), 127, np.uint8)                                   # [N, K/32], 2^0
    scales[0, 0], scales[1, 0], scales[2, 0] = 0, 255, 130                       # group 0 of columns 0, 1, 2
    layer = prepare_mxfp8_layer_for_marlin(np.full((128, 64), 0x38, np.uint8).view(E4M3), scales)
    out = _run(backend, layer, one_hot_activations([5, 40], 64, "bfloat16"))    # k = 5 in group 0, 40 in 1
    assert out[0, 0] == 0.0 and out[0, 2] == 8.0 and out[1, 0] == 1.0 and out[1, 2] == 1.0
    assert np.isnan(out[:, 1]).all() and (out[:, 3:] == 1.0).all()


# --- error messages of marlin_fast's torch GEMM (the CUDA bindings use the same rules) ----------------

@pytest.mark.parametrize("change, error, match", [
    ({"size_n": 96}, ValueError, "marlin_gemm: size_n=96 must be a multiple of 64"),
    ({"b_scales": np.ones((3, 64), np.float16)}, ValueError, "only channel-wise .G=1. or group_size 128"),
    ({"b_scales": np.full((4, 64), 127, np.uint8)}, ValueError, "MXFP8 .e8m0 scales. needs bfloat16 activations"),
    ({"b_scales": np.ones((1, 64), np.float32)}, TypeError, "b_scales.dtype=torch.float32 must equal a.dtype"),
    ({"a": np.zeros((2, 64), np.float16)}, ValueError, r"marlin_gemm: a must have shape \(2, 128\)"),
    ({"b_bias": np.zeros(32, np.float16)}, ValueError, r"b_bias must have shape \(64,\)"),
])
def test_torch_gemm_rejects_bad_input_naming_the_rule(change, error, match):
    kwargs = {"a": np.zeros((2, 128), np.float16), "b_q_weight": np.zeros((8, 256), np.int32),
              "b_scales": np.ones((1, 64), np.float16), "b_bias": None, "size_n": 64, "size_k": 128}
    with pytest.raises(error, match=match):
        get_backend("torch").marlin_gemm(**{**kwargs, **change})
