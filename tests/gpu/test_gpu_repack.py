"""GPU tier, layouts: the CUDA repack kernels and the fast path's scale transforms on CUDA tensors equal the
NumPy oracle byte for byte (spec §2.3-§2.7), and bad input is rejected with the rule and the value."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import marlin_ref as mr
from gpu_cases import CUDA_MARKS, TILE_K, TILE_N, assert_same_bytes, dev, host, kernels
from properties.seam.backends import get_backend
from properties.pytest_plugin import examples

pytestmark = CUDA_MARKS


@st.composite
def repack_inputs(draw, *, max_k_tiles=12, max_n_tiles=6):
    """(packed, perm or None, K, N, num_bits): shrinks towards one 16x64 tile, 8-bit, no perm."""
    num_bits = draw(st.sampled_from([8, 4]), label="num_bits")
    size_k = TILE_K * draw(st.integers(1, max_k_tiles), label="k_tiles")
    size_n = TILE_N * draw(st.integers(1, max_n_tiles), label="n_tiles")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    pack = 32 // num_bits
    packed = rng.integers(-2**31, 2**31, (size_k // pack, size_n), dtype=np.int64).astype(np.int32)
    perm = None
    if draw(st.booleans(), label="act_order"):
        perm = rng.permutation(size_k).astype(np.int32)
    return packed, perm, size_k, size_n, num_bits


@examples(1.0)
@given(case=repack_inputs())
def test_repack_matches_oracle(case):
    # CUDA gptq_marlin_repack == marlin_ref.gptq_marlin_repack, bit for bit (§2.3.1), any perm.
    packed, perm, size_k, size_n, num_bits = case
    want = mr.gptq_marlin_repack(packed, perm, size_k, size_n, num_bits)
    got = kernels().gptq_marlin_repack(dev(packed), None if perm is None else dev(perm), size_k, size_n, num_bits)
    assert_same_bytes(host(got), want, where=f"repack K={size_k} N={size_n} bits={num_bits} perm={perm is not None}")


@examples(0.5)
@given(k_tiles=st.integers(1, 12), n_tiles=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_repack_from_checkpoint_matches_pack_transpose_repack(k_tiles, n_tiles, seed):
    # checkpoint [N, K] -> Marlin == repack(pack(W, size_k_first=False).T) (§2.2, §2.8 step 3).
    size_k, size_n = TILE_K * k_tiles, TILE_N * n_tiles
    ckpt = np.random.default_rng(seed).integers(0, 256, (size_n, size_k), dtype=np.uint8)
    packed = np.ascontiguousarray(mr.pack_fp8_to_int32(ckpt, size_k_first=False).T)       # [K/4, N]
    want = mr.gptq_marlin_repack(packed, None, size_k, size_n, 8)
    got = kernels().fp8_marlin_repack_from_checkpoint(dev(ckpt))
    assert_same_bytes(host(got), want, where=f"checkpoint repack K={size_k} N={size_n}")


@pytest.mark.parametrize("num_bits", [8, 4])
def test_repack_large_matrix_matches_oracle(num_bits):
    # 2048 x 4096: many tiles per warp and several grid-stride rounds.
    size_k, size_n = 2048, 4096
    rng = np.random.default_rng(7)
    packed = rng.integers(-2**31, 2**31, (size_k * num_bits // 32, size_n), dtype=np.int64).astype(np.int32)
    want = mr.gptq_marlin_repack(packed, None, size_k, size_n, num_bits)
    got = kernels().gptq_marlin_repack(dev(packed), None, size_k, size_n, num_bits)
    assert_same_bytes(host(got), want, where=f"repack {size_k}x{size_n} bits={num_bits}")


def test_sanitize_repack_small():
    # A small case for compute-sanitizer (bench/sanitize.sh): both kernels, with and without perm.
    rng = np.random.default_rng(3)
    packed = rng.integers(-2**31, 2**31, (48 // 4, 192), dtype=np.int64).astype(np.int32)
    perm = rng.permutation(48).astype(np.int32)
    for p in (None, perm):
        want = mr.gptq_marlin_repack(packed, p, 48, 192, 8)
        got = kernels().gptq_marlin_repack(dev(packed), None if p is None else dev(p), 48, 192, 8)
        assert_same_bytes(host(got), want, where="sanitize repack")
    ckpt = rng.integers(0, 256, (192, 48), dtype=np.uint8)
    want = mr.gptq_marlin_repack(np.ascontiguousarray(mr.pack_fp8_to_int32(ckpt, size_k_first=False).T), None,
                                 48, 192, 8)
    assert_same_bytes(host(kernels().fp8_marlin_repack_from_checkpoint(dev(ckpt))), want, where="sanitize ckpt")


def test_repack_does_not_mutate_input():
    rng = np.random.default_rng(5)
    packed = rng.integers(-2**31, 2**31, (16, 128), dtype=np.int64).astype(np.int32)
    t = dev(packed)
    kernels().gptq_marlin_repack(t, None, 64, 128, 8)
    assert_same_bytes(host(t), packed, where="input after repack")


# --- errors name the rule and the value (design.md, "Errors") -------------------------------------

def _packed(rows, cols):
    return dev(np.zeros((rows, cols), np.int32))


@pytest.mark.parametrize("call, error, match", [
    (lambda k: k.gptq_marlin_repack(_packed(16, 96), None, 64, 96, 8), ValueError, "size_n=96 must be"),
    (lambda k: k.gptq_marlin_repack(_packed(6, 64), None, 24, 64, 8), ValueError, "size_k=24 must be"),
    (lambda k: k.gptq_marlin_repack(_packed(16, 64), None, 64, 64, 6), ValueError, "num_bits=6 must be 4 or 8"),
    (lambda k: k.gptq_marlin_repack(_packed(8, 64), None, 64, 64, 8), ValueError, r"b_q_weight.shape=\[8, 64\]"),
    (lambda k: k.gptq_marlin_repack(dev(np.zeros((16, 64), np.float32)), None, 64, 64, 8), TypeError,
     "must be torch.int32"),
    (lambda k: k.gptq_marlin_repack(_packed(16, 64), dev(np.arange(32, dtype=np.int32)), 64, 64, 8), ValueError,
     r"perm.shape=\[32\] must be \[size_k\]"),
    (lambda k: k.gptq_marlin_repack(_packed(16, 64), dev(np.full(64, 64, np.int32)), 64, 64, 8), ValueError,
     "perm values must lie in"),
    (lambda k: k.gptq_marlin_repack(dev(np.zeros((32, 64), np.int32))[::2], None, 64, 64, 8), ValueError,
     "must be contiguous"),
    (lambda k: k.fp8_marlin_repack_from_checkpoint(dev(np.zeros((64, 40), np.uint8))), ValueError,
     "size_k=40 must be"),
])
def test_repack_rejects_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(kernels())


def test_repack_rejects_cpu_tensor():
    import torch

    with pytest.raises(ValueError, match="must be a CUDA device"):
        kernels().gptq_marlin_repack(torch.zeros((16, 64), dtype=torch.int32), None, 64, 64, 8)


# --- scale transforms of the torch fast path on CUDA tensors (backend "torch-cuda") ----------------

@pytest.fixture(scope="module")
def torch_cuda():
    return get_backend("torch-cuda")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("group_size", [-1, 128])
def test_permute_and_fuse_scales_on_cuda_match_oracle(torch_cuda, dtype, group_size):
    # marlin_permute_scales then fp8_fused_exponent_bias_into_scales, CUDA tensors == oracle (§2.4, §2.6).
    size_k, size_n = 512, 192
    groups = 1 if group_size == -1 else size_k // group_size
    np_dtype = mr.as_activation_dtype(dtype)
    s = mr.round_to_dtype(np.random.default_rng(11).uniform(0, 300, (groups, size_n)), np_dtype).astype(np_dtype)
    want = mr.fp8_fused_exponent_bias_into_scales(mr.marlin_permute_scales(s, size_k, size_n, group_size))
    got = torch_cuda.fp8_fused_exponent_bias_into_scales(torch_cuda.marlin_permute_scales(s, size_k, size_n,
                                                                                          group_size))
    assert_same_bytes(got, want, where=f"scales {dtype} group {group_size}")


def test_bias_and_mx_scales_on_cuda_match_oracle(torch_cuda):
    # marlin_permute_bias (§2.5) and mxfp8_marlin_process_scales after the grouped permutation (§2.7).
    rng = np.random.default_rng(12)
    bias = rng.standard_normal(256).astype(np.float16)
    assert_same_bytes(torch_cuda.marlin_permute_bias(bias), mr.marlin_permute_bias(bias), where="bias")
    floats = np.ldexp(1.0, rng.integers(-127, 128, (8, 128))).astype(np.float32)     # [K/32, N], K = 256
    permuted = mr.marlin_permute_scales(floats, 256, 128, 32)
    assert_same_bytes(torch_cuda.mxfp8_marlin_process_scales(permuted), mr.mxfp8_marlin_process_scales(permuted),
                      where="mx scales")
