"""Unit tests of OUR CUDA kernels' internals (marlin_fast.cuda), not of the contract: every thread-block
configuration and split-K count reads the same bytes, partial pipeline stages, the fused checkpoint repack (our own
extra kernel), our argument checks, and the small cases compute-sanitizer runs (bench/sanitize.sh). These are the
only GPU tests that call marlin_fast.cuda directly; the contract checks go through the backend seam (the other
tests/gpu files), whatever kernel is under test."""

import zlib

import numpy as np
import pytest

import marlin_ref as mr
from gpu_cases import (CUDA_MARKS, FP8_GROUP, MX_GROUP, NUM_CONFIGS, SCHEMES, TILE_K, WGMMA_CONFIG, WIDE_CONFIG,
                       activations, assert_same_bytes, assert_same_values, dev, host, kernels, make_layer, run_gemm)
from marlin_ref.marlin_gemm import one_hot_activations, one_hot_expected
from properties.laws import assert_within_gemm_bound

pytestmark = CUDA_MARKS
torch = pytest.importorskip("torch")


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _one_hot_case(scheme, dtype, rows, *, bias=False, seed=0, size_k=512, size_n=192):
    rng = _rng(scheme, dtype, rows, bias, seed)
    layer = make_layer(scheme, dtype, size_k, size_n, rng, bias=bias)
    hot = rng.choice(size_k, rows, replace=rows > size_k)
    return layer, hot, one_hot_activations(hot, size_k, dtype)


def test_the_config_count_is_the_extensions():
    # NUM_CONFIGS drives the every-config tests: one the extension gained would go untested, one it lost would fail
    # as a bad argument. block_m is -1 for a config that does not exist.
    from marlin_fast import _ext

    block_m = [_ext.load().gemm_config_block_m(c) for c in range(NUM_CONFIGS + 1)]
    assert min(block_m[:-1]) > 0 and block_m[-1] == -1, f"NUM_CONFIGS = {NUM_CONFIGS}, block_m per config {block_m}"


@pytest.mark.parametrize("splits", [None, 1, 3])
@pytest.mark.parametrize("config", range(NUM_CONFIGS))
@pytest.mark.parametrize("scheme, dtype", SCHEMES)
def test_one_hot_exact_in_every_config(scheme, dtype, config, splits):
    # The layout does not depend on the tiling: every config and split-K count reads the same bytes.
    layer, hot, a = _one_hot_case(scheme, dtype, 45, bias=True)
    want = one_hot_expected(layer.w_eff, dtype, hot=hot, bias=layer.bias)
    got = host(run_gemm(layer, a, config=config, splits=splits))
    assert_same_values(got, want, where=f"{scheme}/{dtype} config={config} splits={splits}")


@pytest.mark.parametrize("scheme, dtype", SCHEMES)
def test_sanitize_gemm_small(scheme, dtype):
    # Small one-hot GEMMs through every config with split-K, for compute-sanitizer (bench/sanitize.sh).
    for config in range(NUM_CONFIGS):
        layer, hot, a = _one_hot_case(scheme, dtype, 5, bias=True, seed=config)
        want = one_hot_expected(layer.w_eff, dtype, hot=hot, bias=layer.bias)
        assert_same_values(host(run_gemm(layer, a, config=config, splits=2)), want, where=f"config {config}")


def test_channel_wise_k_tail_is_exact():
    # Channel-wise needs only K % 16 == 0: K = 272 leaves a partial pipeline stage in every config.
    rng = np.random.default_rng(21)
    layer = make_layer("channel", "bfloat16", 272, 128, rng)
    hot = np.arange(272)
    for config in range(NUM_CONFIGS):
        got = host(run_gemm(layer, one_hot_activations(hot, 272, "bfloat16"), config=config))
        assert_same_values(got, one_hot_expected(layer.w_eff, "bfloat16", hot=hot), where=f"K tail, config {config}")


# The kernel runs the stages wholly inside K (128 k each in configurations 0-2, 4, 5; 64 in 3 and 6) in a steady loop of
# NS-stage trips without bounds tests, then a tested tail loop.  These K give 9 to 34 stages: one to three steady
# trips, every remainder of the tail, with and without a partial last stage; N = 192 leaves the last block of 128
# columns half outside N (that block runs the tail loop only), N = 256 none.
PIPELINE_KS = (1152, 1168, 1280, 1408, 2160, 2176)


@pytest.mark.parametrize("splits", [1, 2])  # one split: every stage in one block; two: a split starting at st0 > 0
@pytest.mark.parametrize("config", range(NUM_CONFIGS))
@pytest.mark.parametrize("scheme, dtype", [("channel", "bfloat16"), ("group128", "float16"), ("mx", "bfloat16")])
def test_steady_and_tail_pipeline_loops_are_exact(scheme, dtype, config, splits):
    group = {"channel": TILE_K, "group128": FP8_GROUP, "mx": MX_GROUP}[scheme]
    for size_k in (k for k in PIPELINE_KS if k % group == 0):
        for size_n in (192, 256):
            # one row per k, in shuffled order: a k16 step read from the wrong place shows in its rows
            layer, hot, a = _one_hot_case(scheme, dtype, size_k, bias=True, seed=config, size_k=size_k,
                                          size_n=size_n)
            want = one_hot_expected(layer.w_eff, dtype, hot=hot, bias=layer.bias)
            got = host(run_gemm(layer, a, config=config, splits=splits))
            assert_same_values(got, want, where=f"{scheme}/{dtype} K={size_k} N={size_n} config={config} "
                                                f"splits={splits}")


@pytest.mark.parametrize("scheme, dtype, size_k", [("channel", "bfloat16", 1168), ("group128", "float16", 1152),
                                                   ("mx", "bfloat16", 1152)])
def test_sanitize_steady_and_tail_loops(scheme, dtype, size_k):
    # For compute-sanitizer (bench/sanitize.sh): small GEMMs long enough in K for a steady trip in every config
    # (one split: the planner would split so few tiles into short ranges), then the tail loop (and a partial
    # stage for channel-wise), with a block half outside N.
    for config in range(NUM_CONFIGS):
        layer, hot, a = _one_hot_case(scheme, dtype, 5, bias=True, seed=config, size_k=size_k, size_n=192)
        want = one_hot_expected(layer.w_eff, dtype, hot=hot, bias=layer.bias)
        got = host(run_gemm(layer, a, config=config, splits=1))
        assert_same_values(got, want, where=f"{scheme}/{dtype} K={size_k} config={config}")


@pytest.mark.parametrize("tokens, top_k, config", [(5, 2, 0), (40, 2, 1), (64, 3, 2), (150, 2, 3),
                                                (300, 2, WGMMA_CONFIG)])
@pytest.mark.parametrize("scheme, dtype", SCHEMES)
def test_moe_rows_equal_the_dense_kernel_in_the_same_config(scheme, dtype, tokens, top_k, config):
    # Our MoE and dense kernels share the tile code: with the same config and splits the rows are the same bits.
    rng = np.random.default_rng(tokens * 7 + top_k)
    experts, size_k, size_n = 4, 256, 192
    layers = [make_layer(scheme, dtype, size_k, size_n, rng, bias=True) for _ in range(experts)]
    q, s, b = (dev(np.stack([getattr(l, f) for l in layers])) for f in ("qweight", "scales", "bias_permuted"))
    a = activations(rng, tokens, size_k, dtype)
    ids = np.stack([rng.choice(experts, top_k, replace=False) for _ in range(tokens)]).astype(np.int32)
    got = host(kernels().marlin_moe_gemm(dev(a), q, s, b, topk_ids=dev(ids), size_n=size_n, size_k=size_k,
                                         config=config, splits=2))
    for e, layer in enumerate(layers):
        m, i = np.nonzero(ids == e)
        if m.size:
            assert_same_values(got[m * top_k + i], host(run_gemm(layer, a[m], config=config, splits=2)),
                               where=f"expert {e}")



def test_large_m_takes_the_wgmma_kernel_on_hopper_only_from_its_threshold():
    # marlin_gemm's automatic choice: the wgmma configuration from gemm_wgmma_min_rows() on where it runs (compute
    # capability 9.0, the extension built for sm_90a), the mma.sync configuration for large tiles below it, everywhere
    # else, and at every M while the threshold is 0 (off until a timed run puts the wgmma kernel ahead).
    from marlin_fast import _ext

    ext = _ext.load()
    on_hopper = torch.cuda.get_device_capability() == (9, 0)
    threshold = ext.gemm_wgmma_min_rows()
    assert threshold == 0 or threshold >= 65  # below that, configurations 0-2 are the smaller tiles
    for rows in (65, 255, 256, 1024, 4096):
        wgmma = on_hopper and threshold > 0 and rows >= threshold
        assert ext.gemm_dense_config(rows, 4096, 4096) == (WGMMA_CONFIG if wgmma else 3)
    assert ext.gemm_config_for_rows(4096) == 3  # MoE keeps the mma.sync configurations


def test_the_wide_block_takes_configuration_2s_rows_on_large_weights_only():
    # marlin_gemm's automatic choice at M = 33-64: the 64 x 256 block from 2^25 weight elements (N * K) on, the
    # 64 x 128 one below; smaller M and larger M never take it, nor does MoE (gemm_config_for_rows).
    from marlin_fast import _ext

    ext = _ext.load()
    large, small = (8192, 4096), (4096, 4096)  # 2^25 and 2^24 elements
    assert [ext.gemm_dense_config(rows, *large) for rows in (16, 32, 33, 64)] == [0, 1, WIDE_CONFIG, WIDE_CONFIG]
    assert [ext.gemm_dense_config(rows, *small) for rows in (33, 64)] == [2, 2]
    assert ext.gemm_dense_config(64, 8192 - 64, 4096) == 2  # one 64-column tile short of the threshold
    assert ext.gemm_dense_config(65, *large) in (3, WGMMA_CONFIG)
    assert ext.gemm_config_for_rows(64) == 2


@pytest.mark.parametrize("scheme, dtype", [("group128", "float16"), ("mx", "bfloat16")])
def test_the_wide_block_in_the_automatic_choice_is_within_bound_and_one_hot_exact(scheme, dtype):
    # M = 50 on a weight of exactly 2^25 elements (8192 x 4096): the automatic choice is configuration 7, with its
    # automatic split count; random activations within the derived bound, one-hot rows bit for bit. Two schemes
    # (16-bit group scales, e8m0 bytes): the every-config tests run configuration 7 in all five at small shapes, and
    # the oracle takes ~7 s to pack one such layer.
    from marlin_fast import _ext

    size_n, size_k, rows = 4096, 8192, 50
    assert _ext.load().gemm_dense_config(rows, size_n, size_k) == WIDE_CONFIG
    rng = _rng(scheme, dtype, rows)
    layer = make_layer(scheme, dtype, size_k, size_n, rng, bias=True)
    a = activations(rng, rows, size_k, dtype)
    where = f"{scheme}/{dtype} M={rows} N={size_n} K={size_k} automatic"
    assert_within_gemm_bound(host(run_gemm(layer, a)), a, layer.w_eff, dtype, bias=layer.bias,
                             channel_scales=layer.channel_scales, where=where)
    hot = rng.choice(size_k, rows)
    got = host(run_gemm(layer, one_hot_activations(hot, size_k, dtype)))
    assert_same_values(got, one_hot_expected(layer.w_eff, dtype, hot=hot, bias=layer.bias), where=where)


@pytest.mark.parametrize("rows", [256, 300, 777])
@pytest.mark.parametrize("scheme, dtype", SCHEMES)
def test_large_m_random_within_bound_and_one_hot_exact(scheme, dtype, rows):
    # M >= 256, in the automatic choice and, on Hopper, in the wgmma kernel by name: random activations within the
    # derived bound and one-hot rows bit for bit, over 1 to 4 blocks of 256 rows, a block of 128 columns half outside
    # N (N = 320), and a last stage of two k16 steps (K = 1040 channel-wise; MX K = 1056: its second 32-group row
    # lies past K).
    size_k = {"channel": 1040, "group128": 1024, "mx": 1056}[scheme]
    rng = _rng(scheme, dtype, rows)
    layer = make_layer(scheme, dtype, size_k, 320, rng, bias=True)
    a = activations(rng, rows, size_k, dtype)
    hot = rng.choice(size_k, rows)
    on_hopper = torch.cuda.get_device_capability() == (9, 0)
    for config in (None, WGMMA_CONFIG) if on_hopper else (None,):
        where = f"{scheme}/{dtype} M={rows} K={size_k} config={config}"
        assert_within_gemm_bound(host(run_gemm(layer, a, config=config)), a, layer.w_eff, dtype, bias=layer.bias,
                                 channel_scales=layer.channel_scales, where=where)
        got = host(run_gemm(layer, one_hot_activations(hot, size_k, dtype), config=config))
        assert_same_values(got, one_hot_expected(layer.w_eff, dtype, hot=hot, bias=layer.bias), where=where)


@pytest.mark.parametrize("config", range(NUM_CONFIGS))
def test_out_may_be_only_4_byte_aligned(config):
    # out needs 4-byte alignment only: a view 4 bytes past a 16-byte boundary, where 16-byte stores would fault.
    layer, hot, a = _one_hot_case("group128", "bfloat16", 70, bias=True, size_k=256, size_n=192)
    buf = torch.full((70 * 192 + 2,), float("nan"), dtype=torch.bfloat16, device="cuda")
    out = buf[2:].view(70, 192)
    assert out.data_ptr() % 16 == 4
    run_gemm(layer, a, config=config, out=out)
    assert_same_values(host(out), one_hot_expected(layer.w_eff, "bfloat16", hot=hot, bias=layer.bias),
                       where=f"config {config}")


def test_sanitize_moe_small():
    rng = np.random.default_rng(111)
    layers = [make_layer("channel", "bfloat16", 128, 128, rng, bias=True) for _ in range(3)]
    q, s, b = (dev(np.stack([getattr(l, f) for l in layers])) for f in ("qweight", "scales", "bias_permuted"))
    a = activations(rng, 6, 128, "bfloat16")
    ids = rng.integers(-1, 3, (6, 2)).astype(np.int32)          # -1: a slot routed to no expert
    got = host(kernels().marlin_moe_gemm(dev(a), q, s, b, topk_ids=dev(ids), size_n=128, size_k=128, config=0,
                                         splits=2))
    assert not got[(ids.reshape(-1) < 0)].astype(np.float64).any()
    for e, layer in enumerate(layers):
        m, i = np.nonzero(ids == e)
        if m.size:
            assert_within_gemm_bound(got[m * 2 + i], a[m], layer.w_eff, "bfloat16", bias=layer.bias,
                                     channel_scales=layer.channel_scales, where=f"expert {e}")


# --- our own repack kernels ----------------------------------------------------------------------------

@pytest.mark.parametrize("k_tiles, n_tiles, seed", [(1, 1, 0), (3, 2, 1), (12, 6, 2), (7, 5, 3)])
def test_repack_from_checkpoint_matches_pack_transpose_repack(k_tiles, n_tiles, seed):
    # checkpoint [N, K] -> Marlin == repack(pack(W, size_k_first=False).T) (§2.2, §2.8 step 3).
    size_k, size_n = 16 * k_tiles, 64 * n_tiles
    ckpt = np.random.default_rng(seed).integers(0, 256, (size_n, size_k), dtype=np.uint8)
    packed = np.ascontiguousarray(mr.pack_fp8_to_int32(ckpt, size_k_first=False).T)       # [K/4, N]
    want = mr.gptq_marlin_repack(packed, None, size_k, size_n, 8)
    got = kernels().fp8_marlin_repack_from_checkpoint(dev(ckpt))
    assert_same_bytes(host(got), want, where=f"checkpoint repack K={size_k} N={size_n}")


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


# --- our argument checks (design.md, "Errors"), raised before any kernel runs ------------------------------

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
    with pytest.raises(ValueError, match="must be a CUDA device"):
        kernels().gptq_marlin_repack(torch.zeros((16, 64), dtype=torch.int32), None, 64, 64, 8)


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
    with pytest.raises(ValueError, match="MXFP8 .e8m0 scales. needs bfloat16 activations"):
        _call(layer, a=torch.zeros((2, 128), dtype=torch.float16, device="cuda"))


def test_mxfp8_rejects_a_single_scale_group():
    # K = 32: vLLM's prep would use the single permutation (32 < 32 fails), the kernel reads grouped (§2.4).
    layer = make_layer("mx", "bfloat16", 64, 64, np.random.default_rng(82))
    a = torch.zeros((2, 32), dtype=torch.bfloat16, device="cuda")
    with pytest.raises(ValueError, match="MXFP8 needs size_k >= 64"):
        kernels().marlin_gemm(a, dev(layer.qweight[:2]), dev(layer.scales[:1]), size_n=64, size_k=32)


def test_moe_rejects_out_of_range_expert_ids():
    rng = np.random.default_rng(121)
    layers = [make_layer("channel", "bfloat16", 128, 64, rng, bias=True) for _ in range(2)]
    q, s, b = (dev(np.stack([getattr(l, f) for l in layers])) for f in ("qweight", "scales", "bias_permuted"))
    a = activations(rng, 2, 128, "bfloat16")
    with pytest.raises(ValueError, match=r"topk_ids must lie in \[0, E=2\) or be -1 \(no expert\), got min 0, max 2"):
        kernels().marlin_moe_gemm(dev(a), q, s, b, topk_ids=dev(np.array([[0], [2]], np.int32)), size_n=64,
                                  size_k=128)
