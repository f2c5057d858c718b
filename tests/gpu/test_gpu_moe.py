"""GPU tier, MoE (spec §5): the stacked-expert GEMM equals the dense GEMM on each expert, router weights
are applied after the bias as RT(out * RT(w)), and one expert with top-k 1 is the dense call."""

import numpy as np
import pytest

import marlin_ref as mr
from gpu_cases import CUDA_MARKS, SCHEMES, activations, assert_same_values, dev, host, kernels, make_layer, run_gemm
from properties.laws import assert_within_gemm_bound

pytestmark = CUDA_MARKS
torch = pytest.importorskip("torch")


def stacked(scheme, dtype, experts, size_k, size_n, rng):
    layers = [make_layer(scheme, dtype, size_k, size_n, rng, bias=True) for _ in range(experts)]
    q = dev(np.stack([l.qweight for l in layers]))                 # [E, K/16, 4N]
    s = dev(np.stack([l.scales for l in layers]))                  # [E, G, N]
    b = dev(np.stack([l.bias_permuted for l in layers]))           # [E, N]
    return layers, q, s, b


def moe(a, q, s, b, ids, **kw):
    return kernels().marlin_moe_gemm(dev(a), q, s, b, topk_ids=dev(ids), size_n=s.shape[-1],
                                     size_k=q.shape[1] * 16, **kw)


@pytest.mark.parametrize("tokens, top_k, config", [(5, 2, 0), (40, 2, 1), (64, 3, 2), (150, 2, 3), (9, 1, None)])
@pytest.mark.parametrize("scheme, dtype", SCHEMES)
def test_each_expert_equals_the_dense_call(scheme, dtype, tokens, top_k, config):
    # Row m*top_k + i of the stacked call == dense GEMM of expert ids[m, i] on those rows, bit for bit,
    # with the same thread-block config and split-K count; and each is within the §3.6 bound.
    rng = np.random.default_rng(tokens * 7 + top_k)
    experts, size_k, size_n = 4, 256, 192
    layers, q, s, b = stacked(scheme, dtype, experts, size_k, size_n, rng)
    a = activations(rng, tokens, size_k, dtype)
    ids = np.stack([rng.choice(experts, top_k, replace=False) for _ in range(tokens)]).astype(np.int32)
    got = host(moe(a, q, s, b, ids, config=config, splits=2))
    for e, layer in enumerate(layers):
        m, i = np.nonzero(ids == e)
        if m.size == 0:
            continue
        dense = host(run_gemm(layer, a[m], config=config if config is not None else 0, splits=2))
        if config is not None:
            assert_same_values(got[m * top_k + i], dense, where=f"expert {e}")
        assert_within_gemm_bound(got[m * top_k + i], a[m], layer.w_eff, dtype, bias=layer.bias,
                                 channel_scales=layer.channel_scales, where=f"expert {e} vs oracle")


@pytest.mark.parametrize("scheme, dtype", SCHEMES)
def test_router_weights_multiply_after_the_bias(scheme, dtype):
    # out = RT(RT(RT(acc) + b) * RT(w)) (§5): the MoE output times RT(w), rounded once more.
    rng = np.random.default_rng(91)
    layers, q, s, b = stacked(scheme, dtype, 3, 256, 128, rng)
    a = activations(rng, 12, 256, dtype)
    ids = rng.integers(0, 3, (12, 2)).astype(np.int32)
    ids[:, 1] = (ids[:, 0] + 1) % 3
    w = rng.uniform(0, 1, (12, 2)).astype(np.float32)
    plain = host(moe(a, q, s, b, ids, config=0, splits=1))
    weighted = host(kernels().marlin_moe_gemm(dev(a), q, s, b, topk_ids=dev(ids), topk_weights=dev(w),
                                              mul_topk_weights=True, size_n=128, size_k=256, config=0, splits=1))
    np_dtype = mr.as_activation_dtype(dtype)
    rw = mr.round_to_dtype(w.astype(np.float64), np_dtype).reshape(-1, 1)
    want = mr.round_to_dtype(plain.astype(np.float64) * rw, np_dtype)
    assert_same_values(weighted, want, where="router weights")


@pytest.mark.parametrize("scheme, dtype", SCHEMES)
def test_single_expert_top1_is_the_dense_gemm(scheme, dtype):
    # One expert, top-k 1, default configuration on both sides: the same plan, the same bits.
    rng = np.random.default_rng(101)
    layers, q, s, b = stacked(scheme, dtype, 1, 512, 256, rng)
    for tokens in (3, 33, 100):
        a = activations(rng, tokens, 512, dtype)
        ids = np.zeros((tokens, 1), np.int32)
        assert_same_values(host(moe(a, q, s, b, ids)), host(run_gemm(layers[0], a)), where=f"M={tokens}")


def test_sanitize_moe_small():
    rng = np.random.default_rng(111)
    layers, q, s, b = stacked("channel", "bfloat16", 3, 128, 128, rng)
    a = activations(rng, 6, 128, "bfloat16")
    ids = rng.integers(0, 3, (6, 2)).astype(np.int32)
    got = host(moe(a, q, s, b, ids, config=0, splits=2))
    for e, layer in enumerate(layers):
        m, i = np.nonzero(ids == e)
        if m.size:
            assert_within_gemm_bound(got[m * 2 + i], a[m], layer.w_eff, "bfloat16", bias=layer.bias,
                                     channel_scales=layer.channel_scales, where=f"expert {e}")


def test_moe_rejects_out_of_range_expert_ids():
    rng = np.random.default_rng(121)
    layers, q, s, b = stacked("channel", "bfloat16", 2, 128, 64, rng)
    a = activations(rng, 2, 128, "bfloat16")
    with pytest.raises(ValueError, match=r"topk_ids must lie in \[0, E=2\), got min 0, max 2"):
        moe(a, q, s, b, np.array([[0], [2]], np.int32))
