"""GPU tier, layouts on the backend under test's device: its repack and scale transforms equal the NumPy oracle
byte for byte (spec §2.3-§2.7) at sizes beyond the CPU laws' (many tiles per warp, grid-stride rounds), with
act-order perms; the seam's run_op checks that no input was written."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import marlin_ref as mr
from gpu_cases import TILE_K, TILE_N, assert_same_bytes
from properties.laws import run_op
from properties.pytest_plugin import examples


@st.composite
def repack_inputs(draw, num_bits, perm, *, max_k_tiles=64, max_n_tiles=24):
    """Inputs of gptq_marlin_repack; shrinks towards one 16 x 64 tile."""
    size_k = TILE_K * draw(st.integers(1, max_k_tiles), label="k_tiles")
    size_n = TILE_N * draw(st.integers(1, max_n_tiles), label="n_tiles")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    packed = rng.integers(-2**31, 2**31, (size_k * num_bits // 32, size_n), dtype=np.int64).astype(np.int32)
    return {"b_q_weight": packed, "perm": rng.permutation(size_k).astype(np.int32) if perm else None,
            "size_k": size_k, "size_n": size_n, "num_bits": num_bits}


@pytest.mark.parametrize("num_bits, perm", [
    pytest.param(b, p, marks=pytest.mark.marlin_cell("gptq_marlin_repack", "-", f"{b}-bit", "perm" if p else "-"),
                 id=f"{b}bit{'-perm' if p else ''}") for b in (8, 4) for p in (False, True)])
@given(data=st.data())
@examples(0.5)
def test_repack_matches_oracle(device_backend, num_bits, perm, data):
    # gptq_marlin_repack on the device == marlin_ref.gptq_marlin_repack, bit for bit (§2.3.1).
    kwargs = data.draw(repack_inputs(num_bits, perm), label="inputs")
    got = run_op(device_backend, "gptq_marlin_repack", kwargs)
    assert_same_bytes(got, mr.gptq_marlin_repack(**kwargs), where=f"repack K={kwargs['size_k']} N={kwargs['size_n']}")


@pytest.mark.parametrize("num_bits", [pytest.param(b, marks=pytest.mark.marlin_cell("gptq_marlin_repack", "-", f"{b}-bit"))
                                      for b in (8, 4)])
def test_repack_large_matrix_matches_oracle(device_backend, num_bits):
    # 2048 x 4096: many tiles per warp and several grid-stride rounds.
    size_k, size_n = 2048, 4096
    rng = np.random.default_rng(7)
    packed = rng.integers(-2**31, 2**31, (size_k * num_bits // 32, size_n), dtype=np.int64).astype(np.int32)
    kwargs = {"b_q_weight": packed, "perm": None, "size_k": size_k, "size_n": size_n, "num_bits": num_bits}
    assert_same_bytes(run_op(device_backend, "gptq_marlin_repack", kwargs), mr.gptq_marlin_repack(**kwargs),
                      where=f"repack {size_k}x{size_n} bits={num_bits}")


@pytest.mark.parametrize("dtype, group_size", [
    pytest.param(d, g, marks=pytest.mark.marlin_cell("marlin_permute_scales", "channel" if g < 0 else f"group={g}", d))
    for d in ("float16", "bfloat16") for g in (-1, 128)])
def test_permute_and_fuse_scales_match_oracle(device_backend, dtype, group_size):
    # marlin_permute_scales then fp8_fused_exponent_bias_into_scales on the device == oracle (§2.4, §2.6).
    size_k, size_n = 4096, 1536
    groups = 1 if group_size == -1 else size_k // group_size
    np_dtype = mr.as_activation_dtype(dtype)
    s = mr.round_to_dtype(np.random.default_rng(11).uniform(0, 300, (groups, size_n)), np_dtype).astype(np_dtype)
    want = mr.fp8_fused_exponent_bias_into_scales(mr.marlin_permute_scales(s, size_k, size_n, group_size))
    got = device_backend.fp8_fused_exponent_bias_into_scales(
        device_backend.marlin_permute_scales(s, size_k, size_n, group_size))
    assert_same_bytes(got, want, where=f"scales {dtype} group {group_size}")


@pytest.mark.marlin_cell("mxfp8_marlin_process_scales", "mx", "float32")
def test_bias_and_mx_scales_match_oracle(device_backend):
    # marlin_permute_bias (§2.5) and mxfp8_marlin_process_scales after the grouped permutation (§2.7).
    rng = np.random.default_rng(12)
    bias = rng.standard_normal(4096).astype(np.float16)
    assert_same_bytes(device_backend.marlin_permute_bias(bias), mr.marlin_permute_bias(bias), where="bias")
    floats = np.ldexp(1.0, rng.integers(-127, 128, (128, 1024))).astype(np.float32)     # [K/32, N], K = 4096
    permuted = mr.marlin_permute_scales(floats, 4096, 1024, 32)
    assert_same_bytes(device_backend.mxfp8_marlin_process_scales(permuted), mr.mxfp8_marlin_process_scales(permuted),
                      where="mx scales")
