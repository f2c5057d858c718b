"""GEMM laws of the backend under test (spec §3): `marlin_gemm` on Marlin tensors the oracle prepared.

Channel-wise, group-128 and MXFP8 weights, fp16/bf16, with and without bias, on the shapes the kernel
runs (§4.2). `--marlin-backend cuda` on a GPU runs the same laws on the CUDA kernels; the default `torch`
backend runs marlin_fast's torch GEMM. No law compares a row across batch sizes: the kernel's rows
depend on M (§3.3).
"""

import pytest
from hypothesis import given, target, strategies as st

from properties.gemm_cases import GEMM_ROWS, check, one_hot_cases, random_cases
from properties.pytest_plugin import examples


@pytest.mark.parametrize("row", GEMM_ROWS, ids=str)
@given(data=st.data())
@examples(1.5)
def test_gemm_one_hot_is_exact(backend, row, data):
    # One-hot rows (M <= 8, M > 8, the identity) read out RT(W_eff[hot, n]) (+ bias) bit for bit.
    check("gemm_one_hot_is_exact", backend, row, data.draw(one_hot_cases(), label="case"))


@pytest.mark.parametrize("row", GEMM_ROWS, ids=str)
@given(data=st.data())
@examples(1.5)
def test_gemm_within_bound(backend, row, data):
    # Normal activations: |out - a @ W_eff (+ b)| <= marlin_gemm_error_bound, steered to the worst ratio.
    ratio = check("gemm_within_bound", backend, row, data.draw(random_cases(), label="case"))
    target(ratio, label="max |err| / bound")
