"""marlin_ref.pack_fp8_to_int32 (spec §2.1, §2.2): little-endian bytes along K, the [N, K/4] asymmetry."""

import ml_dtypes
import numpy as np
import pytest

from marlin_ref.pack_fp8_to_int32 import pack_fp8_to_int32, unpack_fp8_from_int32


def words_u32(a):
    return a.view(np.uint32)


def test_spec_example_word():
    # §2.2: W[0..3, n] = 0x38 (1.0), 0x40 (2.0), 0xB8 (-1.0), 0x00 -> 0x00B84038
    w = np.array([[0x38], [0x40], [0xB8], [0x00]], np.uint8)
    assert words_u32(pack_fp8_to_int32(w))[0, 0] == 0x00B84038
    assert words_u32(pack_fp8_to_int32(w.T, size_k_first=False))[0, 0] == 0x00B84038


def test_little_endian_byte_j_is_row_4r_plus_j():
    # W[k, n] = 16*n + k, K = 8, N = 3: word (r, n) = bytes (16n + 4r, +1, +2, +3), written out by hand
    w = (16 * np.arange(3)[None, :] + np.arange(8)[:, None]).astype(np.uint8)
    want = np.array([[0x03020100, 0x13121110, 0x23222120],
                     [0x07060504, 0x17161514, 0x27262524]], np.uint32)
    got = pack_fp8_to_int32(w)
    assert got.dtype == np.int32 and got.shape == (2, 3)
    assert np.array_equal(words_u32(got), want)


def test_size_k_first_false_returns_n_by_k4_not_transposed():
    w_kn = (16 * np.arange(3)[None, :] + np.arange(8)[:, None]).astype(np.uint8)   # [K=8, N=3]
    got = pack_fp8_to_int32(w_kn.T, size_k_first=False)                          # input [N, K]
    assert got.shape == (3, 2)                                                     # [N, K/4]
    assert words_u32(got)[1, 0] == 0x13121110 and words_u32(got)[2, 1] == 0x27262524
    assert np.array_equal(got.T, pack_fp8_to_int32(w_kn))


def test_square_weight_orientation_matters():
    # N == K (vLLM issue #44110): the two orientations give different words for a non-symmetric W
    w = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert np.array_equal(pack_fp8_to_int32(w), pack_fp8_to_int32(w.T, size_k_first=False).T)
    assert not np.array_equal(pack_fp8_to_int32(w), pack_fp8_to_int32(w, size_k_first=False).T)


def test_accepts_float8_and_uint8_alike():
    codes = np.arange(256, dtype=np.uint8).reshape(64, 4)
    assert np.array_equal(pack_fp8_to_int32(codes), pack_fp8_to_int32(codes.view(ml_dtypes.float8_e4m3fn)))


@pytest.mark.parametrize("size_k_first", [True, False])
def test_roundtrip_all_256_codes(size_k_first):
    codes = np.random.default_rng(0).permutation(np.arange(512) % 256).astype(np.uint8).reshape(32, 16)
    back = unpack_fp8_from_int32(pack_fp8_to_int32(codes, size_k_first), size_k_first)
    assert back.dtype == ml_dtypes.float8_e4m3fn and back.shape == codes.shape
    assert np.array_equal(back.view(np.uint8), codes)          # NaN codes 0x7F/0xFF kept as bytes


def test_unpack_hand_word():
    packed = np.array([[0x00B84038]], np.uint32).view(np.int32)     # [K/4=1, N=1]
    assert unpack_fp8_from_int32(packed).view(np.uint8)[:, 0].tolist() == [0x38, 0x40, 0xB8, 0x00]
    assert unpack_fp8_from_int32(packed, size_k_first=False).view(np.uint8)[0].tolist() == [0x38, 0x40, 0xB8, 0x00]


def test_inputs_not_mutated_and_outputs_contiguous():
    w = np.arange(32, dtype=np.uint8).reshape(8, 4)
    before = w.copy()
    out = pack_fp8_to_int32(w)
    assert np.array_equal(w, before) and out.flags.c_contiguous
    assert unpack_fp8_from_int32(out).flags.c_contiguous


@pytest.mark.parametrize("args, err, match", [
    ((np.zeros((6, 4), np.uint8),), ValueError, "pack_fp8_to_int32: size_k=6 must be a multiple of 4"),
    ((np.zeros((4, 6), np.uint8), False), ValueError, "pack_fp8_to_int32: size_k=6 must be a multiple of 4"),
    ((np.zeros(8, np.uint8),), ValueError, "pack_fp8_to_int32: fp8 must be 2-D, got shape"),
    ((np.zeros((4, 4), np.float32),), TypeError, "pack_fp8_to_int32: fp8 must have dtype in .*got float32"),
    ((np.zeros((4, 4), np.uint8), "yes"), TypeError, "size_k_first must be a bool"),
    (([[1, 2, 3, 4]],), TypeError, "must be a numpy.ndarray, got list"),
])
def test_pack_rejects(args, err, match):
    with pytest.raises(err, match=match):
        pack_fp8_to_int32(*args)


def test_unpack_rejects():
    with pytest.raises(TypeError, match="unpack_fp8_from_int32: packed must have dtype in \\[int32\\], got uint32"):
        unpack_fp8_from_int32(np.zeros((1, 1), np.uint32))
    with pytest.raises(ValueError, match="unpack_fp8_from_int32: packed must be 2-D"):
        unpack_fp8_from_int32(np.zeros(3, np.int32))
