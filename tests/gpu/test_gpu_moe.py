"""GPU tier, the MoE GEMM on the backend under test (spec §5), at sizes beyond the CPU laws' (hundreds of tokens,
top-3, 8 experts): each routed row within the §3.6 bound of its expert, one-hot tokens exact, slots routed to no
expert +0, one expert with top-1 equal to the backend's dense GEMM, router weights after the bias."""

import numpy as np
import pytest

from gpu_cases import SCHEMES, activations, assert_same_values, make_layer
from marlin_ref.marlin_gemm import marlin_moe_gemm_reference, one_hot_activations
from properties.laws import assert_within_gemm_bound

OP = "marlin_moe_gemm"


def cells():
    return [pytest.param(s, d, marks=pytest.mark.marlin_cell(OP, s, d, "bias"), id=f"{s}-{d}") for s, d in SCHEMES]


def stacked(scheme, dtype, experts, size_k, size_n, rng):
    layers = [make_layer(scheme, dtype, size_k, size_n, rng, bias=True) for _ in range(experts)]
    return layers, {f: np.stack([getattr(l, f) for l in layers]) for f in ("qweight", "scales", "bias_permuted")}


def moe(backend, a, tensors, ids, **kw):
    return backend.marlin_moe_gemm(a, tensors["qweight"], tensors["scales"], tensors["bias_permuted"],
                                   topk_ids=ids, size_n=tensors["scales"].shape[-1],
                                   size_k=tensors["qweight"].shape[1] * 16, **kw)


@pytest.mark.parametrize("tokens, top_k", [(5, 2), (40, 2), (64, 3), (150, 2), (300, 1)])
@pytest.mark.parametrize("scheme, dtype", cells())
def test_each_routed_row_within_the_bound_of_its_expert(device_backend, scheme, dtype, tokens, top_k):
    rng = np.random.default_rng(tokens * 7 + top_k)
    experts, size_k, size_n = 8, 512, 256
    layers, tensors = stacked(scheme, dtype, experts, size_k, size_n, rng)
    a = activations(rng, tokens, size_k, dtype)
    ids = np.stack([rng.choice(experts, top_k, replace=False) for _ in range(tokens)]).astype(np.int32)
    ids[rng.random(ids.shape) < 0.2] = -1                        # routed to another rank
    got = moe(device_backend, a, tensors, ids)
    assert not got[ids.reshape(-1) < 0].astype(np.float64).any(), "slots routed to no expert must stay +0"
    for e, layer in enumerate(layers):
        m, i = np.nonzero(ids == e)
        if m.size:
            assert_within_gemm_bound(got[m * top_k + i], a[m], layer.w_eff, dtype, bias=layer.bias,
                                     channel_scales=layer.channel_scales, where=f"expert {e}")


@pytest.mark.parametrize("scheme, dtype", cells())
def test_one_hot_tokens_are_exact_with_router_weights(device_backend, scheme, dtype):
    # out = RT(RT(RT(W_eff[hot]) + b) · RT(w)) (§5), value for value, 100 tokens over 6 experts, top-2.
    rng = np.random.default_rng(91)
    layers, tensors = stacked(scheme, dtype, 6, 256, 128, rng)
    hot = rng.choice(256, 100)
    a = one_hot_activations(hot, 256, dtype)
    ids = np.stack([rng.choice(6, 2, replace=False) for _ in range(100)]).astype(np.int32)
    w = rng.uniform(0, 1, ids.shape).astype(np.float32)
    got = moe(device_backend, a, tensors, ids, topk_weights=w, mul_topk_weights=True)
    want = marlin_moe_gemm_reference(a, tensors["qweight"], tensors["scales"], tensors["bias_permuted"], topk_ids=ids,
                                     topk_weights=w, mul_topk_weights=True, size_n=128, size_k=256)
    assert_same_values(got, want, where="one-hot tokens, router weights")


@pytest.mark.parametrize("scheme, dtype", cells())
def test_single_expert_top1_one_hot_is_the_dense_gemm(device_backend, scheme, dtype):
    rng = np.random.default_rng(101)
    layers, tensors = stacked(scheme, dtype, 1, 512, 256, rng)
    for tokens in (3, 33, 100):
        a = one_hot_activations(rng.choice(512, tokens), 512, dtype)
        dense = device_backend.marlin_gemm(a, layers[0].qweight, layers[0].scales, layers[0].bias_permuted,
                                           size_n=256, size_k=512)
        assert_same_values(moe(device_backend, a, tensors, np.zeros((tokens, 1), np.int32)), dense,
                           where=f"M={tokens}")
