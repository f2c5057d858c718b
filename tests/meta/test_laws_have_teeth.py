"""Every law fails on at least one planted bug (style habit 11): a law that cannot fail is decoration.

Each row wraps the `torch` backend, breaks one operation the way real code breaks (spec §6.1, §6.3),
and runs the law function directly on the smallest case that shows the bug (found with hypothesis.find,
so the case format stays the strategies'). The same law must pass on the unbroken backend first, so the
failure is the bug's. The larger mutant catalogue and its kill matrix live in properties/strength/mutants.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, find, settings

from properties.cases import strategies as S
from properties.seam.backends import get_backend
from properties.laws import LAWS, check, main
from properties.cases.transforms import by_name

FIND = settings(database=None, max_examples=2000, suppress_health_check=list(HealthCheck), deadline=None)


def minimal(strategy, predicate=lambda case: True) -> dict:
    return find(strategy, predicate, settings=FIND)


# --- planted bugs: each takes the correct backend and returns {operation: broken function} --------

def swap_interleave(base):
    """8-bit repack stores rows (2q, 2q+1, 2q+8, 2q+9) in natural byte order, not [0,2,1,3] (§6.1 item 1)."""
    def repack(**kw):
        out = base.gptq_marlin_repack(**kw)
        words = out.view(np.uint8).reshape(-1, 4)[:, [0, 2, 1, 3]]             # [words, byte]: undo [0,2,1,3]
        return np.ascontiguousarray(words).view(np.int32).reshape(out.shape)   # [K/16, 4N]
    return {"gptq_marlin_repack": repack}


def wrong_word_index(base):
    """Word 8t + 2j + h written to 8t + j + h: two words collide and one is never written (§6.1 item 2)."""
    def repack(**kw):
        out = base.gptq_marlin_repack(**kw)
        tiles = out.reshape(-1, 32, 4, 2)                             # [tiles, lane t, block j, half h]
        bad = np.zeros_like(tiles).reshape(-1, 32, 8)                 # [tiles, lane t, word]
        for j in range(4):
            for h in range(2):
                bad[:, :, j + h] = tiles[:, :, j, h]
        return bad.reshape(out.shape)                                 # [K/16, 4N]
    return {"gptq_marlin_repack": repack}


def perm_inverted(base):
    """Act-order applied with argsort(perm) (the gather and scatter directions confused, §2.3.1)."""
    def repack(**kw):
        perm = kw.get("perm")
        if perm is not None and perm.size:
            kw = {**kw, "perm": np.argsort(perm).astype(perm.dtype)}
        return base.gptq_marlin_repack(**kw)
    return {"gptq_marlin_repack": repack}


def transpose_omitted_for_square(base):
    """A shape heuristic takes a square [N, K] weight for [K, N] and skips the transpose (vLLM #44110)."""
    def prepare(**kw):
        w = kw["weight"]
        if not kw.get("size_k_first", True) and w.shape[0] == w.shape[1]:
            kw = {**kw, "size_k_first": True}
        return base.prepare_fp8_layer_for_marlin(**kw)
    return {"prepare_fp8_layer_for_marlin": prepare}


def exponent_bias_doubled(base):
    """The exponent bias fused twice: s * 2^(2β) (§2.6, §6.1 item 9)."""
    def fuse(**kw):
        return base.fp8_fused_exponent_bias_into_scales(s=base.fp8_fused_exponent_bias_into_scales(**kw))
    return {"fp8_fused_exponent_bias_into_scales": fuse}


GROUPED = np.array([p // 8 + 8 * (p % 8) for p in range(64)])                          # §2.4 grouped
SINGLE = np.array([32 * (p // 32) + 2 * ((p % 32) // 8) + p % 2 + 8 * ((p % 8) // 2) for p in range(64)])


def grouped_single_swapped(base):
    """The grouped and single scale permutations chosen the wrong way round (§2.4, vLLM PR #50196)."""
    def permute(**kw):
        grouped = base.uses_grouped_scale_permutation(size_k=kw["size_k"], group_size=kw["group_size"])
        s = kw["s"]
        chunks = s.reshape(-1, 64)[:, SINGLE if grouped else GROUPED]   # [G*N/64, 64], the other order
        return np.ascontiguousarray(chunks.reshape(s.shape))              # [G, N]
    return {"marlin_permute_scales": permute}


def tensor_scale_inverted(base):
    """A tensor-wise weight_scale_inv read as a scale: 1/s (a tensor-wise-only code path)."""
    def prepare(**kw):
        s = kw["weight_scale"]
        if s.size == 1:
            kw = {**kw, "weight_scale": np.asarray(1 / s.astype(np.float32), np.float32)}
        return base.prepare_fp8_layer_for_marlin(**kw)
    return {"prepare_fp8_layer_for_marlin": prepare}


def shards_tiled(base):
    """Equal per-shard scales spread with tile instead of repeat: s0 s1 s0 s1 ... (§2.8 step 4)."""
    def convert(**kw):
        s, n = kw["scale"], kw["size_n"]
        if 1 < s.size < n and not kw.get("logical_widths") and kw.get("weight_block_size") is None:
            kw = {**kw, "scale": np.tile(s.reshape(-1), n // s.size)}
        return base.convert_fp8_scales(**kw)
    return {"convert_fp8_scales": convert}


def moe_fusion_forgotten(base):
    """The MoE prep forgets fp8_fused_exponent_bias_into_scales (vLLM PR #18026)."""
    def prepare(**kw):
        layer = base.prepare_fp8_moe_layer_for_marlin(**kw)
        return layer._replace(w13_scales=base.fp8_unfuse_exponent_bias_from_scales(s=layer.w13_scales),
                              w2_scales=base.fp8_unfuse_exponent_bias_from_scales(s=layer.w2_scales))
    return {"prepare_fp8_moe_layer_for_marlin": prepare}


def bias_permuted_in_place(base):
    """The permuted bias is also written back into the caller's tensor (an in-place .copy_())."""
    def permute(**kw):
        out = base.marlin_permute_bias(**kw)
        kw["bias"][...] = out
        return out
    return {"marlin_permute_bias": permute}


# (law, row, planted bug, strategy of cases, predicate for the case that shows it)
TEETH = [
    ("matches_oracle", "gptq_marlin_repack[8bit]", swap_interleave, S.repack_cases(), lambda c: True),
    ("roundtrip", "gptq_marlin_repack[8bit]", swap_interleave, S.repack_cases(), lambda c: c["perm"] == "none"),
    ("repack_moves_one_byte", "gptq_marlin_repack[8bit]", swap_interleave,
     S.with_probe(S.repack_cases()), lambda c: c["probe"][0] % 16 == 1),
    ("repack_is_a_permutation", "gptq_marlin_repack[8bit]", wrong_word_index, S.repack_cases(), lambda c: True),
    ("perm_equals_permuted_rows", "gptq_marlin_repack[8bit]", perm_inverted, S.repack_cases(),
     lambda c: c["size_k"] >= 32),
    ("size_k_first_transposes", "prepare_fp8_layer_for_marlin", transpose_omitted_for_square,
     S.fp8_layer_cases(square=True, schemes=("channel",)), lambda c: True),
    ("matches_oracle", "prepare_fp8_layer_for_marlin", transpose_omitted_for_square,
     S.fp8_layer_cases(square=True, schemes=("channel",)), lambda c: not c["size_k_first"]),
    ("matches_oracle", "fp8_fused_exponent_bias_into_scales", exponent_bias_doubled, S.fused_scale_cases(),
     lambda c: True),
    ("roundtrip", "fp8_fused_exponent_bias_into_scales", exponent_bias_doubled, S.fused_scale_cases(),
     lambda c: c["magnitudes"] == "typical"),
    ("matches_oracle", "marlin_permute_scales", grouped_single_swapped, S.scale_grid_cases(), lambda c: True),
    ("roundtrip", "marlin_permute_scales", grouped_single_swapped, S.scale_grid_cases(),
     lambda c: c["group_size"] > 0 and c["groups"] > 1),
    ("tensor_equals_channel", "prepare_fp8_layer_for_marlin", tensor_scale_inverted,
     S.fp8_layer_cases(schemes=("tensor",)), lambda c: True),
    ("shard_equals_channel", "convert_fp8_scales", shards_tiled, S.fp8_layer_cases(schemes=("shard_equal",)),
     lambda c: True),
    ("moe_equals_per_expert", "prepare_fp8_moe_layer_for_marlin", moe_fusion_forgotten,
     S.fp8_moe_cases(aligned=True), lambda c: True),
    ("matches_oracle", "prepare_fp8_moe_layer_for_marlin", moe_fusion_forgotten, S.fp8_moe_cases(), lambda c: True),
    ("inputs_never_mutated", "marlin_permute_bias", bias_permuted_in_place, S.bias_cases(), lambda c: True),
    ("matches_oracle", "marlin_permute_bias", bias_permuted_in_place, S.bias_cases(), lambda c: True),
]


@pytest.fixture(scope="module")
def torch_backend():
    return get_backend("torch")


def test_every_law_has_teeth():
    # The table plants a bug for every law in properties.laws.LAWS.
    assert set(LAWS) == {law for law, *_ in TEETH}


@pytest.mark.parametrize(("law", "row", "bug", "cases", "shows"), TEETH,
                         ids=[f"{law}-{row}-{bug.__name__}" for law, row, bug, *_ in TEETH])
def test_law_fails_on_planted_bug(torch_backend, law, row, bug, cases, shows):
    # The law holds on the correct backend and raises on the same case once the bug is planted.
    case, transform = minimal(cases, shows), by_name(row)
    check(law, torch_backend, transform, case)
    mutant = torch_backend.replaced(f"torch+{bug.__name__}", **bug(torch_backend))
    with pytest.raises(AssertionError) as failure:
        check(law, mutant, transform, case)
    assert any(note.startswith("Reproduce: python -m properties.laws") for note in failure.value.__notes__)


def test_message_names_both_layouts_for_a_weight(torch_backend):
    # A misplaced weight byte is reported in Marlin terms and logical terms, with a one-line repro.
    case = minimal(S.repack_cases(), lambda c: c["perm"] == "none")
    mutant = torch_backend.replaced("torch+swap_interleave", **swap_interleave(torch_backend))
    with pytest.raises(AssertionError) as failure:
        check("matches_oracle", mutant, by_name("gptq_marlin_repack[8bit]"), case)
    message = str(failure.value)
    for part in ("bytes differ", "Marlin row 0 word", "byte 1", "lane", "register", "half", "k-tile",
                 "n-tile", "W[k=8, n=0]", "got 0x", "want 0x"):
        assert part in message, f"{part!r} missing from:\n{message}"
    (note,) = failure.value.__notes__
    assert note.startswith("Reproduce: python -m properties.laws matches_oracle 'gptq_marlin_repack[8bit]' '{")
    assert "\n" not in note


def test_message_names_group_column_and_lanes_for_a_scale(torch_backend):
    case = minimal(S.scale_grid_cases(), lambda c: c["group_size"] > 0 and c["groups"] > 1)
    mutant = torch_backend.replaced("torch+swapped", **grouped_single_swapped(torch_backend))
    with pytest.raises(AssertionError) as failure:
        check("matches_oracle", mutant, by_name("marlin_permute_scales"), case)
    message = str(failure.value)
    for part in ("elements", "chunk 0 position", "<- column", "grouped permutation", "lanes"):
        assert part in message, f"{part!r} missing from:\n{message}"


def test_reproduction_line_replays(torch_backend, capsys):
    # The JSON of the repro line replays the law outside pytest (here on the correct backend: it passes).
    case = minimal(S.repack_cases(), lambda c: c["perm"] == "random")
    import json

    assert main(["roundtrip", "gptq_marlin_repack[8bit]", json.dumps(case), "--backend", "torch"]) == 0
    assert "roundtrip holds" in capsys.readouterr().out


def test_gemm_bound_accepts_the_kernel_rounding_and_rejects_a_scale_off_by_one_percent():
    # The one tolerance of the suite (§3.6): one output rounding passes, a 1 % scale error does not,
    # and where the bound is infinite the output must have the reference's class (NaN, ±inf).
    from marlin_ref.formats import round_to_dtype

    from properties.laws import assert_within_gemm_bound

    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 128)).astype(np.float16)
    w_eff = rng.standard_normal((128, 64)) / 16
    out = round_to_dtype(a.astype(np.float64) @ w_eff, "float16").astype(np.float16)
    assert_within_gemm_bound(out, a, w_eff, "float16", where="rounded once")
    with pytest.raises(AssertionError, match=r"outside the §3.6 bound"):
        assert_within_gemm_bound(out * np.float16(1.01), a, w_eff, "float16", where="scale off by 1 %")
    w_inf = w_eff.copy()
    w_inf[0, 0] = np.inf                                   # column 0: ±inf or NaN in the reference
    ref = a.astype(np.float64) @ w_inf
    out_inf = out.copy()
    out_inf[:, 0] = ref[:, 0].astype(np.float16)
    assert_within_gemm_bound(out_inf, a, w_inf, "float16", where="inf column")
    out_inf[:, 0] = 0
    with pytest.raises(AssertionError, match=r"outside the §3.6 bound"):
        assert_within_gemm_bound(out_inf, a, w_inf, "float16", where="inf column read as 0")
