"""Explain a layout mismatch by naming the mutant (properties.strength.mutants) whose pattern it matches.

`explain_mismatch(got, want, *, layout)` takes a wrong and a right array and the `properties.reporting.report`
layout they are in (MarlinWeight, GptqWords, Scales). It rebuilds, from `want`, what each known bug
would have produced (the same NumPy rewrites the mutants use, `properties.strength.mutations`) and returns a
sentence naming every mutant whose output equals `got` byte for byte, or None when none does.

    >>> import numpy as np
    >>> from properties.strength import mutations as mu
    >>> from properties.reporting import report
    >>> w = np.arange(16 * 64).reshape(16, 64) % 256                  # logical codes [K=16, N=64]
    >>> want = mu.encode(w)
    >>> print(explain_mismatch(mu.encode(w, bug="word_index"), want, layout=report.MarlinWeight(16, 64)))
    matches mutant word_index_warp_major: word index 64j + 2t + h (warp-major) instead of 8t + 2j + h (§2.3.1, §6.1 item 2; natural mistake named in §6.1 item 2)
    >>> explain_mismatch(want, want, layout=report.MarlinWeight(16, 64)) is None
    True
"""

from __future__ import annotations

import numpy as np

from marlin_ref.formats import BF16, exponent_bias_of
from properties.strength import mutations as mu
from properties.reporting import report
from properties.strength.mutants import MUTANTS, PAD_CODE

LAYOUT_BUG_MUTANTS = {"interleave": ("interleave8_identity", "interleave4_as_8bit"),
                      "word_index": ("word_index_warp_major",), "row_set": ("row_set_consecutive",),
                      "tile_n_reversed": ("tile_order_n_reversed",), "tile_k_major": ("tile_order_k_major",)}


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return (a.shape == b.shape and a.dtype == b.dtype
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


def _weight_candidates(want: np.ndarray, layout: report.MarlinWeight):
    bits = layout.num_bits
    logical = mu.decode(want, bits)                                          # [..., K, N]
    for bug, names in LAYOUT_BUG_MUTANTS.items():
        name = names[0] if bits == 8 or len(names) == 1 else names[1]
        yield name, lambda bug=bug: mu.encode(logical, bits, bug)
    if bits == 8:
        k = np.arange(logical.shape[-2])
        yield "pack_big_endian", lambda: mu.encode(logical[..., 4 * (k // 4) + 3 - k % 4, :])
        if logical.shape[-1] == logical.shape[-2]:
            yield "square_weight_untransposed", lambda: mu.encode(np.swapaxes(logical, -1, -2))
        if layout.valid_k is not None or layout.valid_n is not None:
            def padded():
                out = logical.copy()
                out[..., layout.valid_k or layout.size_k:, :] = PAD_CODE
                out[..., :, layout.valid_n or layout.size_n:] = PAD_CODE
                return mu.encode(out)
            yield "padding_not_zero", padded
    if layout.experts and want.shape[0] > 1:
        yield "moe_experts_rolled", lambda: np.roll(want, 1, axis=0)


def _gptq_candidates(want: np.ndarray, layout: report.GptqWords):
    yield "pack_big_endian", lambda: want.byteswap()
    if layout.transposed:
        yield "pack_nk_transposed", lambda: np.ascontiguousarray(want.T)


def _scale_candidates(want: np.ndarray, layout: report.Scales):
    order = mu.scale_order(layout.grouped)
    if layout.kind == "bias":
        logical = mu.unpermute_chunks(want, order)
        yield "bias_not_permuted", lambda: logical
        if logical.size % mu.scale_order(True).size == 0:
            yield "bias_grouped_perm", lambda: mu.permute_chunks(logical, mu.scale_order(True))
        return
    logical = mu.unpermute_chunks(mu.swap_quads(want) if layout.mx else want, order)
    if logical.size % mu.scale_order(not layout.grouped).size == 0:
        yield "scale_perm_swapped", lambda: mu.to_kernel(logical, not layout.grouped, layout.mx)
    if layout.mx:
        yield "mx_reorder_missing", lambda: mu.swap_quads(want)
        yield "mx_reorder_before_permute", lambda: mu.permute_chunks(mu.swap_quads(logical), mu.scale_order(True))
        yield "exponent_bias_on_mx", lambda: mu.e8m0_times_power_of_two(want)
        return
    yield "mx_reorder_on_fp8_scales", lambda: mu.swap_quads(want)
    if want.dtype.kind == "f" or want.dtype == BF16:
        beta = exponent_bias_of(want.dtype)
        yield "exponent_bias_missing_moe", lambda: mu.times_power_of_two(want, -beta)
        yield "exponent_bias_doubled", lambda: mu.times_power_of_two(want, beta)
        if want.dtype == BF16:
            yield "exponent_bias_beta8_for_bf16", lambda: mu.times_power_of_two(want, 8 - beta)


def candidates(want: np.ndarray, layout: report.Layout):
    """(mutant name, thunk -> what that bug would have produced from `want`) for the layout."""
    if isinstance(layout, report.MarlinWeight):
        return list(_weight_candidates(want, layout))
    if isinstance(layout, report.GptqWords):
        return list(_gptq_candidates(want, layout))
    if isinstance(layout, report.Scales):
        return list(_scale_candidates(want, layout))
    return []


def matching_mutants(got, want, *, layout: report.Layout) -> list[str]:
    """Names of the mutants whose rewrite of `want` equals `got` byte for byte."""
    got, want = np.asarray(got), np.asarray(want)
    names = []
    for name, make in candidates(want, layout):
        try:
            candidate = make()
        except (ValueError, IndexError, TypeError):   # the bug cannot apply to this shape or dtype
            continue
        if _same(candidate, got) and not _same(candidate, want) and name not in names:
            names.append(name)
    return names


def explain_mismatch(got, want, *, layout: report.Layout) -> str | None:
    """One sentence naming the mutant(s) whose pattern the mismatch matches, or None."""
    if _same(got, want):
        return None
    names = matching_mutants(got, want, layout=layout)
    if not names:
        return None
    return "; ".join(f"matches mutant {n}: {MUTANTS[n].summary} ({MUTANTS[n].spec}; {MUTANTS[n].reference})"
                     for n in names)
