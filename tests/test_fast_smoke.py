"""Quick sanity checks of marlin_fast against the spec's worked examples (hand-derived, CPU only).

Every expected value below is copied from, or worked out by hand from, a numbered example of
docs/spec.md; none comes from running the code under test. The fast-vs-oracle property
tests live elsewhere. (Direct import: the backend seam of properties/ is not there yet.)
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
fast = pytest.importorskip("marlin_fast")

E4M3_ONE, E4M3_TWO, E4M3_MINUS_ONE = 0x38, 0x40, 0xB8  # §1: 1.0, 2.0, -1.0


def u8(rows):
    return torch.tensor(rows, dtype=torch.uint8)


def word_hex(q, row, col):
    return hex(q[row, col].item() & 0xFFFFFFFF)


def gptq_words(q_codes, num_bits):
    """GPTQ words of §2.1 written out by hand: slot j of word (r, n) = Q[pf·r + j, n]."""
    pf = 32 // num_bits
    size_k, size_n = q_codes.shape
    words = torch.zeros(size_k // pf, size_n, dtype=torch.int64)
    for j in range(pf):
        words |= q_codes[j::pf].to(torch.int64) << (num_bits * j)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


# §2.2 -------------------------------------------------------------------------------------------

def test_pack_fp8_to_int32_spec_example():
    # §2.2: W[0..3, n] = 0x38, 0x40, 0xB8, 0x00 -> word 0x00B84038.
    w = u8([[E4M3_ONE], [E4M3_TWO], [E4M3_MINUS_ONE], [0x00]]).view(torch.float8_e4m3fn)
    assert word_hex(fast.pack_fp8_to_int32(w), 0, 0) == "0xb84038"
    # size_k_first=False: [N, K] in, [N, K/4] out, not transposed.
    packed = fast.pack_fp8_to_int32(w.T.contiguous(), size_k_first=False)
    assert packed.shape == (1, 1) and word_hex(packed, 0, 0) == "0xb84038"


# §2.3.4 -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("k", "n", "loc8", "loc4"), [
    (1, 0, (0, 0, 2), (0, 0, 4)),
    (8, 0, (0, 0, 1), (0, 0, 1)),
    (0, 1, (0, 32, 0), (0, 16, 0)),
    (0, 8, (0, 1, 0), (0, 0, 2)),
    (0, 16, (0, 2, 0), (0, 1, 0)),
    (7, 5, (0, 184, 2), (0, 92, 4)),
    (0, 63, (0, 231, 0), (0, 115, 2)),
    (15, 63, (0, 255, 3), (0, 127, 7)),
])
@pytest.mark.parametrize("num_bits", [8, 4])
def test_repack_places_single_element_per_spec_table(k, n, loc8, loc4, num_bits):
    # §2.3.4 table: a lone non-zero element lands at (row, int32 col, byte/nibble) and nowhere else.
    value = 0xA5 if num_bits == 8 else 0xA
    q = torch.zeros(16, 64, dtype=torch.uint8)
    q[k, n] = value
    out = fast.gptq_marlin_repack(gptq_words(q, num_bits), None, 16, 64, num_bits)
    row, col, slot = loc8 if num_bits == 8 else loc4
    expected = torch.zeros_like(out)
    word = value << (num_bits * slot)
    expected[row, col] = word - 2**32 if word >= 2**31 else word
    assert out.shape == (1, 256 if num_bits == 8 else 128)
    assert torch.equal(out, expected)


def test_repack_lane0_words_spec_example():
    # §2.3.4: with W[k, 0] = k, 8-bit word 0 = bytes (W[0,0], W[8,0], W[1,0], W[9,0]) = 0x09010800;
    # lane 0's words 0..7 hold columns 0, 8, ..., 56, each with rows (0, 8, 1, 9).
    w = torch.zeros(16, 64, dtype=torch.uint8)
    for n in range(0, 64, 8):
        w[:, n] = torch.arange(16, dtype=torch.uint8) + 2 * n  # W[k, n] = k + 2n
    out = fast.gptq_marlin_repack(fast.pack_fp8_to_int32(w), None, 16, 64, 8)
    assert word_hex(out, 0, 0) == "0x9010800"
    assert word_hex(out, 0, 1) == "0x19111810"  # n = 8: bytes 16, 24, 17, 25
    assert word_hex(out, 0, 7) == "0x79717870"  # n = 56: bytes 112, 120, 113, 121


def test_repack_second_k_tile_and_second_n_tile():
    # §2.3.4: K = 32 puts the second k tile in row 1; N = 128 tile nt = 1 adds 256 to the column.
    q = torch.zeros(32, 128, dtype=torch.uint8)
    q[16 + 7, 64 + 5] = 0x5A  # (7, 5) of tile (1, 1)
    out = fast.gptq_marlin_repack(gptq_words(q, 8), None, 32, 128, 8)
    assert (out != 0).nonzero().tolist() == [[1, 256 + 184]]
    assert word_hex(out, 1, 256 + 184) == hex(0x5A << 16)


def test_repack_with_perm_reads_source_row_perm_k():
    # §2.3.1: output row-slot k takes source row perm[k]; with perm = reversed rows, the element
    # written at source row 15 shows up where row 0 would go: (0, 0) -> (row 0, col 0, byte 0).
    q = torch.zeros(16, 64, dtype=torch.uint8)
    q[15, 0] = 0x77
    perm = torch.arange(15, -1, -1, dtype=torch.int32)
    out = fast.gptq_marlin_repack(gptq_words(q, 8), perm, 16, 64, 8)
    assert (out != 0).nonzero().tolist() == [[0, 0]] and word_hex(out, 0, 0) == "0x77"


# §2.4, §2.5 -------------------------------------------------------------------------------------

GROUPED_ROW_START = [0, 8, 16, 24, 32, 40, 48, 56, 1, 9, 17, 25, 33, 41, 49, 57]
GROUPED_ROW_END = [7, 15, 23, 31, 39, 47, 55, 63]
SINGLE_FIRST_32 = [0, 1, 8, 9, 16, 17, 24, 25, 2, 3, 10, 11, 18, 19, 26, 27,
                   4, 5, 12, 13, 20, 21, 28, 29, 6, 7, 14, 15, 22, 23, 30, 31]


def test_permute_scales_spec_rows():
    cols = torch.arange(64).repeat(2, 1)  # G = 2 groups of 128 along K = 256, values = column ids
    grouped = fast.marlin_permute_scales(cols, 256, 64, 128)
    assert grouped[0, :16].tolist() == GROUPED_ROW_START and grouped[0, -8:].tolist() == GROUPED_ROW_END
    assert torch.equal(grouped[1], grouped[0])  # each row is permuted on its own
    single = fast.marlin_permute_scales(cols[:1], 256, 64, -1)[0].tolist()
    assert single == SINGLE_FIRST_32 + [c + 32 for c in SINGLE_FIRST_32]
    # K == block_k: group_size is not < size_k, so the single permutation (§2.4 edge).
    assert fast.marlin_permute_scales(cols[:1], 128, 64, 128)[0].tolist() == single
    # G·group_size != size_k would make the kernel and the permutation disagree (§2.4, §6.1 item 7).
    with pytest.raises(ValueError, match="G\\*group_size == size_k"):
        fast.marlin_permute_scales(cols, 512, 64, 128)


def test_permute_bias_is_single_permutation_any_shape():
    bias = torch.arange(128, dtype=torch.float16).view(2, 64)  # [E, N]
    out = fast.marlin_permute_bias(bias)
    assert out.shape == (2, 64)
    assert out[1].tolist() == [64.0 + c for c in SINGLE_FIRST_32 + [c + 32 for c in SINGLE_FIRST_32]]


# §2.6 -------------------------------------------------------------------------------------------

def test_fused_exponent_bias_values_and_overflow():
    fp16 = fast.fp8_fused_exponent_bias_into_scales(torch.tensor([1.0, 255.875, 256.0], dtype=torch.float16))
    assert fp16.tolist() == [256.0, 65504.0, float("inf")]
    bf16 = fast.fp8_fused_exponent_bias_into_scales(torch.tensor([1.0, 255.0, 256.0], dtype=torch.bfloat16))
    assert bf16.tolist() == [2.0**120, 255.0 * 2.0**120, float("inf")]
    with pytest.raises(TypeError, match="fp8_fused_exponent_bias_into_scales: s must have dtype"):
        fast.fp8_fused_exponent_bias_into_scales(torch.ones(2, dtype=torch.float32))


# §2.7, §2.10 ------------------------------------------------------------------------------------

def test_mxfp8_process_scales_row_positions():
    # Column c gets 2^(c - 64), i.e. byte 63 + c; after the grouped permutation and the [0,2,1,3]
    # reorder, column c sits at 8·(c % 8) + 4·(c // 32) + 2·((c // 8) % 2) + ((c // 16) % 2) (§2.7).
    cols = torch.arange(64)
    logical = torch.pow(2.0, (cols - 64).to(torch.float32)).repeat(2, 1)  # G = 2 groups of 32, K = 64
    out = fast.mxfp8_marlin_process_scales(fast.marlin_permute_scales(logical, 64, 64, 32))
    assert out.dtype == torch.float8_e8m0fnu
    got = out.view(torch.uint8)[0].to(torch.int64) - 63  # column ids by position
    assert got[:16].tolist() == [0, 16, 8, 24, 32, 48, 40, 56, 1, 17, 9, 25, 33, 49, 41, 57]
    assert got[-8:].tolist() == [7, 23, 15, 31, 39, 55, 47, 63]
    position = 8 * (cols % 8) + 4 * (cols // 32) + 2 * ((cols // 8) % 2) + (cols // 16) % 2
    assert torch.equal(got[position], cols)


def test_mxfp8_intermediate_dtype_hazard():
    # §2.10: bf16 keeps every byte; fp16 sends bytes < 103 to 0 (byte 0) and > 142 to inf (byte 255).
    b = torch.full((1, 64), 127, dtype=torch.uint8)
    b[0, :8] = u8([1, 102, 103, 142, 143, 254, 0, 127])
    for dtype, want in (("bfloat16", [1, 102, 103, 142, 143, 254, 0, 127]),
                        ("float16", [0, 0, 103, 142, 255, 255, 0, 127])):
        f = fast.mxfp8_scales_to_float(b, intermediate_dtype=dtype)
        swapped = f[:, [0, 2, 1, 3, 4, 6, 5, 7] + list(range(8, 64))]  # the [0,2,1,3] reorder undoes this
        assert fast.mxfp8_marlin_process_scales(swapped).view(torch.uint8)[0, :8].tolist() == want
    with pytest.raises(ValueError, match="mxfp8_marlin_process_scales: ms must hold exact powers of two"):
        fast.mxfp8_marlin_process_scales(torch.full((1, 64), 3.0))  # e8m0 would round 3 to 4 silently


# §2.8 step 4 ------------------------------------------------------------------------------------

def test_convert_fp8_scales_spec_examples():
    # Per-shard equal widths: s = [0.01, 0.03], N = 256 -> 128 x 0.01 then 128 x 0.03 (in orig_dtype).
    g = fast.convert_fp8_scales(torch.tensor([0.01, 0.03]), size_n=256, size_k=128, orig_dtype="bfloat16")
    want = torch.tensor([0.01] * 128 + [0.03] * 128).to(torch.bfloat16).view(1, 256)
    assert g.dtype == torch.bfloat16 and torch.equal(g.view(torch.int16), want.view(torch.int16))
    # Block bn = bk = 128, N = 192, K = 256: [[a, b], [c, d]] -> row 0 = a x128, c x64; row 1 = b x128, d x64.
    a, b, c, d = 1.0, 2.0, 3.0, 4.0
    g = fast.convert_fp8_scales(torch.tensor([[a, b], [c, d]]), size_n=192, size_k=256, orig_dtype="float16",
                                weight_block_size=[128, 128], size_k_first=False)
    assert g.tolist() == [[a] * 128 + [c] * 64, [b] * 128 + [d] * 64]


# §2.8 end to end, with padding (§2.11) ----------------------------------------------------------

def test_dense_fp8_pipeline_pads_with_zeros():
    # N = 100, K = 128, channel-wise: padded to (128, 128); padded weights 0x00, padded scales 0.
    w = torch.full((128, 100), E4M3_ONE, dtype=torch.uint8)  # [K, N]
    layer = fast.prepare_fp8_layer_for_marlin(w.view(torch.float8_e4m3fn), torch.tensor(0.25),
                                              orig_dtype=torch.float16, bias=torch.ones(100, dtype=torch.float16))
    assert (layer.size_k, layer.size_n, layer.padded_k, layer.padded_n, layer.group_size) == (128, 100, 128, 128, -1)
    assert layer.qweight.shape == (8, 512)
    codes = fast.unpack_fp8_from_int32(fast.gptq_marlin_unrepack(layer.qweight, 128, 128, 8)).view(torch.uint8)
    assert (codes[:, :100] == E4M3_ONE).all() and (codes[:, 100:] == 0).all()
    logical = fast.marlin_unpermute_scales(layer.scales, 128, 128, -1)
    assert logical[0, :100].eq(64.0).all() and logical[0, 100:].eq(0.0).all()  # 0.25 · 2^8
    assert fast.marlin_unpermute_bias(layer.bias).tolist() == [1.0] * 100 + [0.0] * 28


# Errors -----------------------------------------------------------------------------------------

def test_error_messages_name_function_rule_and_value():
    q = torch.zeros(4, 96, dtype=torch.int32)
    with pytest.raises(ValueError, match="gptq_marlin_repack: size_n=96 must be a multiple of 64"):
        fast.gptq_marlin_repack(q, None, 16, 96, 8)
    with pytest.raises(ValueError, match=r"gptq_marlin_repack: num_bits=6 must be one of \[4, 8\]"):
        fast.gptq_marlin_repack(q, None, 16, 64, 6)
    with pytest.raises(ValueError, match="gptq_marlin_repack: perm must have length size_k=16"):
        fast.gptq_marlin_repack(torch.zeros(4, 64, dtype=torch.int32), torch.arange(8), 16, 64, 8)
    with pytest.raises(ValueError, match="pack_fp8_to_int32: size_k=6 must be a multiple of 4"):
        fast.pack_fp8_to_int32(torch.zeros(6, 64, dtype=torch.uint8))
    with pytest.raises(TypeError, match="pack_fp8_to_int32: fp8 must have dtype"):
        fast.pack_fp8_to_int32(torch.zeros(8, 64, dtype=torch.float16))
    with pytest.raises(ValueError, match=r"marlin_permute_bias: bias.numel\(\)=48 must be a multiple of 32"):
        fast.marlin_permute_bias(torch.zeros(48))
    with pytest.raises(ValueError, match="as_activation_dtype: dtype='float32' must be float16 or bfloat16"):
        fast.as_activation_dtype("float32")
    with pytest.raises(ValueError, match="itemsize 1 \\(W8A8\\)"):
        fast.prepare_fp8_layer_for_marlin(torch.zeros(128, 64, dtype=torch.uint8), torch.tensor(1.0),
                                          orig_dtype="float16", input_dtype=torch.float8_e4m3fn)


def test_inputs_are_not_mutated():
    w = torch.randint(0, 256, (128, 64), dtype=torch.uint8)
    s = torch.rand(1, 64, dtype=torch.float16)
    w0, s0 = w.clone(), s.clone()
    fast.prepare_fp8_layer_for_marlin(w, s, orig_dtype="float16")
    assert torch.equal(w, w0) and torch.equal(s, s0)
    n_major = w.T.contiguous()  # [N, K]: the size_k_first=False packing could be a mere view of it
    n_major0 = n_major.clone()
    fast.pack_fp8_to_int32(n_major, size_k_first=False).zero_()  # outputs never alias inputs
    assert torch.equal(n_major, n_major0)
