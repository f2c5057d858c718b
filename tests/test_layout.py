"""marlin_ref.layout (spec §2.3.1, §2.3.4, §2.4, §2.7, §2.14): locate, locate_scale, read order, show_tile."""

import numpy as np
import pytest

from marlin_ref.gptq_marlin_repack import gptq_marlin_repack
from marlin_ref.layout import locate, locate_scale, show_tile, weight_read_order

# §2.3.4: (k, n), (lane, block j, sub-tile h, register, half), 8-bit (row, col, byte), 4-bit (row, col, nibble)
WORKED_EXAMPLE = [
    ((0, 0), (0, 0, 0, 0, 0), (0, 0, 0), (0, 0, 0)),
    ((1, 0), (0, 0, 0, 0, 1), (0, 0, 2), (0, 0, 4)),
    ((8, 0), (0, 0, 0, 1, 0), (0, 0, 1), (0, 0, 1)),
    ((9, 0), (0, 0, 0, 1, 1), (0, 0, 3), (0, 0, 5)),
    ((0, 1), (4, 0, 0, 0, 0), (0, 32, 0), (0, 16, 0)),
    ((0, 8), (0, 0, 1, 0, 0), (0, 1, 0), (0, 0, 2)),
    ((2, 0), (1, 0, 0, 0, 0), (0, 8, 0), (0, 4, 0)),
    ((0, 16), (0, 1, 0, 0, 0), (0, 2, 0), (0, 1, 0)),
    ((7, 5), (23, 0, 0, 0, 1), (0, 184, 2), (0, 92, 4)),
    ((0, 63), (28, 3, 1, 0, 0), (0, 231, 0), (0, 115, 2)),
    ((15, 63), (31, 3, 1, 1, 1), (0, 255, 3), (0, 127, 7)),
]


@pytest.mark.parametrize("kn, frag, where8, where4", WORKED_EXAMPLE, ids=[str(r[0]) for r in WORKED_EXAMPLE])
def test_locate_worked_example(kn, frag, where8, where4):
    loc8 = locate(*kn, size_n=64, num_bits=8)
    loc4 = locate(*kn, size_n=64, num_bits=4)
    assert (loc8.row, loc8.word, loc8.slot) == where8
    assert (loc4.row, loc4.word, loc4.slot) == where4
    for loc in (loc8, loc4):   # the fragment position does not depend on the storage width
        assert (loc.lane, loc.block_j, loc.n8_half, loc.register, loc.half) == frag


def test_locate_second_tiles():
    loc = locate(16 + 7, 64 + 5, size_n=128)
    assert (loc.row, loc.word, loc.slot, loc.k_tile, loc.n_tile) == (1, 256 + 184, 2, 1, 1)
    loc4 = locate(16 + 7, 64 + 5, size_n=128, num_bits=4)
    assert (loc4.row, loc4.word, loc4.slot) == (1, 128 + 92, 4)


@pytest.mark.parametrize("num_bits", [8, 4])
def test_locate_is_a_bijection_and_byte_offset_matches_word_slot(num_bits):
    size_k, size_n = 32, 128
    per_word = 32 // num_bits
    offsets = []
    for k in range(size_k):
        for n in range(size_n):
            loc = locate(k, n, size_n=size_n, num_bits=num_bits)
            row_slots = size_n * 16                          # a Marlin row holds 16N slots
            assert loc.byte_offset == loc.row * row_slots + loc.word * per_word + loc.slot
            offsets.append(loc.byte_offset)
    assert sorted(offsets) == list(range(size_k * size_n))


@pytest.mark.parametrize("num_bits", [8, 4])
def test_locate_agrees_with_repack(num_bits):
    # a third derivation: the slot locate() names holds W[k, n] in gptq_marlin_repack's output
    size_k, size_n = 32, 128
    rng = np.random.default_rng(num_bits)
    q = rng.integers(0, 2**num_bits, size=(size_k, size_n)).astype(np.uint32)
    pf = 32 // num_bits
    b = np.zeros((size_k // pf, size_n), np.uint32)
    for j in range(pf):
        b |= q[j::pf] << np.uint32(num_bits * j)
    out = gptq_marlin_repack(b.view(np.int32), None, size_k, size_n, num_bits).view(np.uint32)
    for k in range(size_k):
        for n in range(size_n):
            loc = locate(k, n, size_n=size_n, num_bits=num_bits)
            assert (int(out[loc.row, loc.word]) >> (num_bits * loc.slot)) & (2**num_bits - 1) == q[k, n]


def test_weight_read_order_per_lane():
    order = weight_read_order()
    assert sorted(order.tolist()) == list(range(1024))
    for lane in range(32):
        c8, q = divmod(lane, 4)
        block = order[32 * lane: 32 * lane + 32]
        j, k, col = block // 256, (block % 256) // 16, block % 16     # block-major: [j][k][column]
        assert set(k.tolist()) == {2 * q, 2 * q + 1, 2 * q + 8, 2 * q + 9}
        assert set((16 * j + col).tolist()) == {16 * jj + 8 * h + c8 for jj in range(4) for h in range(2)}


@pytest.mark.parametrize("n, grouped, mx, position, lanes", [
    (0, True, False, 0, (0, 1, 2, 3)),
    (1, True, False, 8, (4, 5, 6, 7)),        # grouped row: 0, 8, ..., 56, 1, ...
    (8, True, False, 1, (0, 1, 2, 3)),
    (63, True, False, 63, (28, 29, 30, 31)),
    (2, False, False, 8, tuple(range(1, 32, 4))),   # single row: 0,1,8,9,16,17,24,25, 2,...; q = 1
    (9, False, False, 3, tuple(range(0, 32, 4))),
    (33, False, False, 33, tuple(range(0, 32, 4))),
    (16, True, True, 1, (0, 1, 2, 3)),        # mx row: 0, 16, 8, 24, 32, 48, 40, 56, 1, ...
    (8, True, True, 2, (0, 1, 2, 3)),
    (56, True, True, 7, (0, 1, 2, 3)),
    (17, True, True, 9, (4, 5, 6, 7)),
])
def test_locate_scale(n, grouped, mx, position, lanes):
    loc = locate_scale(n, grouped=grouped, mx=mx)
    assert (loc.n_tile, loc.position, loc.offset, loc.lanes) == (0, position, position, lanes)
    far = locate_scale(n + 128, grouped=grouped, mx=mx)
    assert (far.n_tile, far.offset) == (2, 128 + position)


def test_locate_scale_positions_are_permutations():
    for grouped, mx in ((True, False), (False, False), (True, True)):
        positions = sorted(locate_scale(c, grouped=grouped, mx=mx).position for c in range(64))
        assert positions == list(range(64))


def test_show_tile_cells():
    lines = show_tile(k_rows=(0, 8, 15), n_cols=(0, 3, 63)).splitlines()
    assert lines[2].split() == ["k=0", "T0:0", "T12:0", "T28:0"]
    assert lines[3].split() == ["k=8", "T0:2", "T12:2", "T28:2"]
    assert lines[4].split() == ["k=15", "T3:3", "T15:3", "T31:3"]     # q = 3: lane 4*c8 + 3
    storage = show_tile(4, k_rows=(15,), n_cols=(63,), cell="storage").splitlines()
    assert storage[2].split() == ["k=15", "127.7"]


@pytest.mark.parametrize("call, err, match", [
    (lambda: locate(0, 0, size_n=96), ValueError, "locate: size_n=96 must be a multiple of 64"),
    (lambda: locate(0, 64, size_n=64), ValueError, r"locate: n=64 must be in \[0, size_n=64\)"),
    (lambda: locate(-1, 0, size_n=64), ValueError, "locate: k=-1 must be >= 0"),
    (lambda: locate(0, 0, size_n=64, num_bits=2), ValueError, r"locate: num_bits=2 must be one of \[4, 8\]"),
    (lambda: locate(0.5, 0, size_n=64), TypeError, "locate: k must be an integer"),
    (lambda: locate_scale(3, grouped=False, mx=True), ValueError, "locate_scale: mx=True requires grouped=True"),
    (lambda: locate_scale(-3, grouped=True), ValueError, "locate_scale: n=-3 must be >= 0"),
    (lambda: show_tile(k_rows=(16,)), ValueError, r"show_tile: k=16 must be in \[0, 16\)"),
    (lambda: show_tile(cell="lanes"), ValueError, "show_tile: cell='lanes' must be 'fragment' or 'storage'"),
])
def test_rejects(call, err, match):
    with pytest.raises(err, match=match):
        call()
