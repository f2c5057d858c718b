"""marlin_ref.gptq_marlin_repack (vectorised) and gptq_marlin_repack_by_element (closed form), spec §2.3."""

import numpy as np
import pytest

from marlin_ref.gptq_marlin_repack import gptq_marlin_repack, gptq_marlin_unrepack
from marlin_ref.gptq_marlin_repack_by_element import gptq_marlin_repack_by_element

REPACKS = [gptq_marlin_repack, gptq_marlin_repack_by_element]
IDS = ["vectorised", "by_element"]

# §2.3.4, every row: (k, n) -> 8-bit (row, int32 column, byte), 4-bit (row, int32 column, nibble)
WORKED_EXAMPLE = [
    ((0, 0), (0, 0, 0), (0, 0, 0)),
    ((1, 0), (0, 0, 2), (0, 0, 4)),
    ((8, 0), (0, 0, 1), (0, 0, 1)),
    ((9, 0), (0, 0, 3), (0, 0, 5)),
    ((0, 1), (0, 32, 0), (0, 16, 0)),
    ((0, 8), (0, 1, 0), (0, 0, 2)),
    ((2, 0), (0, 8, 0), (0, 4, 0)),
    ((0, 16), (0, 2, 0), (0, 1, 0)),
    ((7, 5), (0, 184, 2), (0, 92, 4)),
    ((0, 63), (0, 231, 0), (0, 115, 2)),
    ((15, 63), (0, 255, 3), (0, 127, 7)),
]


def gptq_pack(q, num_bits):
    """Hand GPTQ packing (§2.1): slot j of word (r, n) = q[pf*r + j, n], written as plain loops."""
    pf = 32 // num_bits
    k, n = q.shape
    words = np.zeros((k // pf, n), np.uint32)
    for r in range(k // pf):
        for j in range(pf):
            words[r] |= q[pf * r + j].astype(np.uint32) << np.uint32(num_bits * j)
    return words.view(np.int32)


def random_q(rng, k, n, num_bits):
    return rng.integers(0, 2**num_bits, size=(k, n)).astype(np.uint32)


def only_word(out, row, col):
    """Assert every word but out[row, col] is zero and return that word as an int."""
    rest = out.view(np.uint32).copy()
    word = int(rest[row, col])
    rest[row, col] = 0
    assert not rest.any(), f"unexpected nonzero words at {np.argwhere(rest).tolist()}"
    return word


@pytest.mark.parametrize("repack", REPACKS, ids=IDS)
@pytest.mark.parametrize("kn, where8, where4", WORKED_EXAMPLE, ids=[str(r[0]) for r in WORKED_EXAMPLE])
def test_worked_example_row(repack, kn, where8, where4):
    k, n = kn
    for num_bits, (row, col, slot), value in ((8, where8, 0xA5), (4, where4, 0xB)):
        q = np.zeros((16, 64), np.uint32)
        q[k, n] = value
        out = repack(gptq_pack(q, num_bits), None, 16, 64, num_bits)
        assert out.shape == (1, 256 if num_bits == 8 else 128) and out.dtype == np.int32
        assert only_word(out, row, col) == value << (num_bits * slot), f"{num_bits}-bit"


@pytest.mark.parametrize("num_bits, word", [
    (8, 0x09010800),   # §2.3.4: bytes (W[0,0], W[8,0], W[1,0], W[9,0])
    (4, 0x00910080),   # nibbles (k, n) (0,0) (8,0) (0,8) (8,8) (1,0) (9,0) (1,8) (9,8) = 0 8 0 0 1 9 0 0
])
@pytest.mark.parametrize("repack", REPACKS, ids=IDS)
def test_concrete_word_0(repack, num_bits, word):
    # column 0 holds W[k, 0] = k; word 0 of the output, derived by hand from §2.3.1
    q = np.zeros((16, 64), np.uint32)
    q[:, 0] = np.arange(16)
    out = repack(gptq_pack(q, num_bits), None, 16, 64, num_bits).view(np.uint32)
    assert out[0, 0] == word


@pytest.mark.parametrize("repack", REPACKS, ids=IDS)
def test_lane0_words_hold_columns_0_8_to_56_rows_0_8_1_9(repack):
    # W[k, n] = k + 16*(n // 8): word i of lane 0 = column 8i, bytes rows (0, 8, 1, 9)
    q = (np.arange(16)[:, None] + 16 * (np.arange(64)[None, :] // 8)).astype(np.uint32)
    out = repack(gptq_pack(q, 8), None, 16, 64, 8).view(np.uint32)
    want = [0x09010800, 0x19111810, 0x29212820, 0x39313830, 0x49414840, 0x59515850, 0x69616860, 0x79717870]
    assert out[0, :8].tolist() == want


@pytest.mark.parametrize("repack", REPACKS, ids=IDS)
def test_second_k_tile_is_row_1_and_second_n_tile_adds_256_or_128(repack):
    for num_bits, (row, col, slot), width in ((8, (0, 184, 2), 256), (4, (0, 92, 4), 128)):
        q = np.zeros((32, 128), np.uint32)
        q[16 + 7, 64 + 5] = 0x9
        out = repack(gptq_pack(q, num_bits), None, 32, 128, num_bits)
        assert out.shape == (2, 2 * width)
        assert only_word(out, 1, width + col) == 0x9 << (num_bits * slot)


SHAPES = [(16, 64), (32, 64), (16, 128), (64, 192), (48, 256)]


@pytest.mark.parametrize("num_bits", [8, 4])
@pytest.mark.parametrize("size_k, size_n", SHAPES)
@pytest.mark.parametrize("perm_kind", ["none", "empty", "random"])
def test_vectorised_equals_by_element(size_k, size_n, num_bits, perm_kind):
    rng = np.random.default_rng(size_k * 1000 + size_n + num_bits)
    b = gptq_pack(random_q(rng, size_k, size_n, num_bits), num_bits)
    perm = {"none": None, "empty": np.empty(0, np.int32),
            "random": rng.permutation(size_k).astype(np.int32)}[perm_kind]
    fast = gptq_marlin_repack(b, perm, size_k, size_n, num_bits)
    slow = gptq_marlin_repack_by_element(b, perm, size_k, size_n, num_bits)
    assert np.array_equal(fast.view(np.uint32), slow.view(np.uint32))


@pytest.mark.parametrize("repack", REPACKS, ids=IDS)
@pytest.mark.parametrize("num_bits", [8, 4])
def test_perm_equals_repack_of_permuted_rows(repack, num_bits):
    # §2.3.1: repack(pack(Q), perm) == repack(pack(Q[perm, :]), empty)
    rng = np.random.default_rng(num_bits)
    q = random_q(rng, 32, 128, num_bits)
    perm = rng.permutation(32).astype(np.int32)
    got = repack(gptq_pack(q, num_bits), perm, 32, 128, num_bits)
    assert np.array_equal(got, repack(gptq_pack(q[perm], num_bits), None, 32, 128, num_bits))


@pytest.mark.parametrize("repack", REPACKS, ids=IDS)
def test_reversed_perm_by_hand(repack):
    # output row-slot k takes source row perm[k]: with perm = 15..0, source row 15 lands where k = 0 goes
    q = np.zeros((16, 64), np.uint32)
    q[15, 0] = 0x5A
    out = repack(gptq_pack(q, 8), np.arange(15, -1, -1, dtype=np.int32), 16, 64, 8)
    assert only_word(out, 0, 0) == 0x5A


@pytest.mark.parametrize("num_bits", [8, 4])
def test_single_value_change_changes_one_slot(num_bits):
    rng = np.random.default_rng(7)
    q = random_q(rng, 32, 128, num_bits)
    base = gptq_marlin_repack(gptq_pack(q, num_bits), None, 32, 128, num_bits).view(np.uint32)
    q2 = q.copy()
    q2[21, 77] ^= 1
    moved = gptq_marlin_repack(gptq_pack(q2, num_bits), None, 32, 128, num_bits).view(np.uint32)
    diff = base ^ moved
    assert np.count_nonzero(diff) == 1 and bin(int(diff.max())).count("1") == 1


@pytest.mark.parametrize("num_bits", [8, 4])
@pytest.mark.parametrize("size_k, size_n", SHAPES)
def test_unrepack_roundtrip(size_k, size_n, num_bits):
    rng = np.random.default_rng(3)
    b = gptq_pack(random_q(rng, size_k, size_n, num_bits), num_bits)
    back = gptq_marlin_unrepack(gptq_marlin_repack(b, None, size_k, size_n, num_bits), size_k, size_n, num_bits)
    assert back.dtype == np.int32 and np.array_equal(back, b)


def test_unrepack_does_not_undo_perm():
    rng = np.random.default_rng(4)
    q = random_q(rng, 32, 64, 8)
    perm = rng.permutation(32)
    back = gptq_marlin_unrepack(gptq_marlin_repack(gptq_pack(q, 8), perm, 32, 64, 8), 32, 64, 8)
    assert np.array_equal(back, gptq_pack(q[perm], 8))


def test_unrepack_of_worked_example():
    out = np.zeros((1, 256), np.uint32)
    out[0, 184] = 0xAB << 16                               # (7, 5) -> (0, 184, byte 2)
    back = gptq_marlin_unrepack(out.view(np.int32), 16, 64, 8).view(np.uint32)
    assert back.shape == (4, 64) and back[1, 5] == 0xAB << 24 and np.count_nonzero(back) == 1


@pytest.mark.parametrize("repack", REPACKS, ids=IDS)
def test_inputs_not_mutated(repack):
    rng = np.random.default_rng(5)
    b = gptq_pack(random_q(rng, 16, 64, 8), 8)
    perm = rng.permutation(16).astype(np.int32)
    b0, p0 = b.copy(), perm.copy()
    repack(b, perm, 16, 64, 8)
    assert np.array_equal(b, b0) and np.array_equal(perm, p0)


def good():
    return np.zeros((4, 64), np.int32)


@pytest.mark.parametrize("repack", REPACKS, ids=IDS)
@pytest.mark.parametrize("args, err, match", [
    ((good(), None, 16, 64, 2), ValueError, r"num_bits=2 must be one of \[4, 8\]"),
    ((np.zeros((4, 96), np.int32), None, 16, 96, 8), ValueError, "size_n=96 must be a multiple of 64"),
    ((np.zeros((6, 64), np.int32), None, 24, 64, 8), ValueError, "size_k=24 must be a multiple of 16"),
    ((good(), None, 16, 64, 4), ValueError, r"b_q_weight must have shape \(2, 64\) \(\[size_k/8, size_n\]\), got \(4, 64\)"),
    ((good(), None, 32, 64, 8), ValueError, r"must have shape \(8, 64\)"),
    ((good().view(np.uint32), None, 16, 64, 8), TypeError, r"b_q_weight must have dtype in \[int32\], got uint32"),
    ((good(), np.arange(8, dtype=np.int32), 16, 64, 8), ValueError, "perm must have length size_k=16, got 8"),
    ((good(), np.zeros(16, np.int32), 16, 64, 8), ValueError, r"perm must be a permutation of \[0, size_k=16\)"),
    ((good(), np.arange(1, 17, dtype=np.int32), 16, 64, 8), ValueError, "perm must be a permutation"),
    ((good(), np.arange(16.0), 16, 64, 8), TypeError, "perm must have an integer dtype, got float64"),
    ((good(), np.arange(16).reshape(4, 4), 16, 64, 8), ValueError, "perm must be 1-D"),
    ((good(), None, 16.0, 64, 8), TypeError, "size_k must be an integer"),
    ((good(), None, 0, 64, 8), ValueError, "must be positive"),
])
def test_repack_rejects(repack, args, err, match):
    with pytest.raises(err, match=f"{repack.__name__}: .*{match}"):
        repack(*args)


@pytest.mark.parametrize("args, err, match", [
    ((np.zeros((1, 256), np.int32), 16, 64, 3), ValueError, r"num_bits=3 must be one of \[4, 8\]"),
    ((np.zeros((1, 256), np.int32), 16, 64, 4), ValueError, r"marlin_q_weight must have shape \(1, 128\)"),
    ((np.zeros((1, 256), np.float32), 16, 64, 8), TypeError, "marlin_q_weight must have dtype in"),
    ((np.zeros((1, 256), np.int32), 16, 100, 8), ValueError, "size_n=100 must be a multiple of 64"),
])
def test_unrepack_rejects(args, err, match):
    with pytest.raises(err, match="gptq_marlin_unrepack: " + match):
        gptq_marlin_unrepack(*args)
