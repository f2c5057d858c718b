"""gptq_marlin_repack, one element at a time: a literal transcription of the closed form of spec §2.3.1.

Slow (Python loops over every (k, n)); for small shapes only. It shares nothing with the vectorised
`gptq_marlin_repack` but the input checks, so the two can vouch for each other.

Layout card
-----------
    input   int32[K/pf, N]  GPTQ-packed (§2.1)        output  int32[K/16, 16N/pf]
    kt = k // 16, kl = k % 16         nt = n // 64, nl = n % 64
    w = nl // 16   h = (nl % 16) // 8   c8 = n % 8   q = (kl % 8) // 2   e = kl % 2   g = kl // 8
    t = 4*c8 + q
    8-bit: row kt, int32 column 256*nt + 8*t + 2*w + h, byte slot 2*e + g
    4-bit: row kt, int32 column 128*nt + 4*t + w,       nibble slot 4*e + 2*h + g
    with perm: output row-slot k takes source row perm[k]

    >>> from marlin_ref.pack_fp8_to_int32 import pack_fp8_to_int32
    >>> w = np.zeros((16, 64), np.uint8); w[7, 5] = 0xAB           # §2.3.4: (7, 5) -> (0, 184, byte 2)
    >>> out = gptq_marlin_repack_by_element(pack_fp8_to_int32(w), None, 16, 64, 8)
    >>> [(int(c), hex(out[0, c])) for c in np.flatnonzero(out[0])]
    [(184, '0xab0000')]
"""

from __future__ import annotations

import numpy as np

from marlin_ref.gptq_marlin_repack import check_repack_inputs


def gptq_marlin_repack_by_element(b_q_weight, perm, size_k, size_n, num_bits) -> np.ndarray:
    """Same contract as `gptq_marlin_repack.gptq_marlin_repack`, computed element by element."""
    perm = check_repack_inputs("gptq_marlin_repack_by_element", b_q_weight, perm, size_k, size_n,
                               num_bits)
    size_k, size_n, num_bits = int(size_k), int(size_n), int(num_bits)
    pf = 32 // num_bits
    mask = (1 << num_bits) - 1
    src = b_q_weight.view(np.uint32).tolist()                 # Python ints: no sign extension
    out = [[0] * (size_n * 16 // pf) for _ in range(size_k // 16)]
    for k in range(size_k):
        src_k = k if perm is None else int(perm[k])
        for n in range(size_n):
            # §2.1: Q[src_k, n] sits in word src_k // pf, slot src_k % pf
            value = (src[src_k // pf][n] >> (num_bits * (src_k % pf))) & mask
            kt, kl = divmod(k, 16)
            nt, nl = divmod(n, 64)
            w = nl // 16
            h = (nl % 16) // 8
            c8 = n % 8
            q = (kl % 8) // 2
            e = kl % 2
            g = kl // 8
            t = 4 * c8 + q
            if num_bits == 8:
                column, slot = 256 * nt + 8 * t + 2 * w + h, 2 * e + g
            else:
                column, slot = 128 * nt + 4 * t + w, 4 * e + 2 * h + g
            out[kt][column] |= value << (num_bits * slot)
    return np.array(out, dtype=np.uint32).view(np.int32)
