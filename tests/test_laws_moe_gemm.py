"""The MoE GEMM laws (properties.cases.moe_gemm_cases, spec §5): stacked experts, top-k routing with router weights
and slots routed to no expert, once per cell: one-hot tokens exact, normal tokens within the bound, an expert alone
equal to the dense GEMM; plus the worked order of the router weight and the bias."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from properties.cases.gemm_cases import NORMAL, ONE_HOT
from properties.cases.moe_gemm_cases import MOE_GEMM_ROWS, OP, check
from properties.cases.transforms import cell_ids, cells_of
from properties.pytest_plugin import examples

MOE = cells_of(MOE_GEMM_ROWS)


@pytest.mark.parametrize("row, cell", MOE, ids=cell_ids(MOE))
@given(data=st.data())
@examples(0.5)
def test_moe_one_hot_is_exact(backend, row, cell, data):
    # One-hot tokens through top-k experts read back each expert's RT(W_eff[k, n]), bias, router weight; -1 -> +0.
    check("moe_one_hot_is_exact", backend, row, data.draw(row.cases_in(cell, activations=ONE_HOT), label="case"))


@pytest.mark.parametrize("row, cell", MOE, ids=cell_ids(MOE))
@given(data=st.data())
@examples(0.5)
def test_moe_within_bound(backend, row, cell, data):
    # Normal tokens: each routed row within marlin_gemm_error_bound of its expert's product; unrouted rows +0.
    check("moe_within_bound", backend, row, data.draw(row.cases_in(cell, activations=NORMAL), label="case"))


@pytest.mark.parametrize("row, cell", MOE, ids=cell_ids(MOE))
@given(data=st.data())
@examples(0.5)
def test_moe_expert_alone_equals_dense(backend, row, cell, data):
    # Every token to expert e, top-1 (E = 1 included): the MoE GEMM is the dense GEMM on expert e's data.
    check("moe_expert_alone_equals_dense", backend, row,
          data.draw(row.cases_in(cell, activations=ONE_HOT), label="case"))


@pytest.mark.marlin_cell(OP, "channel", "float16", "bias")
def test_router_weight_applies_after_the_bias(backend):
    # §5: out = RT(RT(RT(acc) + b) · RT(w)). W[3, 5] = 2.0, S = 0.75 -> 1.5; b[5] = 0.5; w = 0.5 -> (1.5 + 0.5)/2 = 1;
    # the other order (bias after the weight) would give 1.5/2 + 0.5 = 1.25.
    from marlin_ref.marlin_gemm import one_hot_activations
    from marlin_ref.prepare_fp8_layer_for_marlin import prepare_fp8_layer_for_marlin

    w = np.zeros((128, 64), np.uint8)
    w[3, 5] = 0x40
    bias = np.zeros(64, np.float16)
    bias[5] = 0.5
    layer = prepare_fp8_layer_for_marlin(w, np.float32(0.75), orig_dtype="float16", bias=bias)
    out = backend.marlin_moe_gemm(one_hot_activations([3], 128, "float16"), layer.qweight[None], layer.scales[None],
                                  layer.bias[None], topk_ids=np.array([[0]], np.int32),
                                  topk_weights=np.array([[0.5]], np.float32), size_n=64, size_k=128,
                                  mul_topk_weights=True)
    assert float(out[0, 5]) == 1.0 and not np.delete(out[0].astype(np.float64), 5).any()
