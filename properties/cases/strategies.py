"""Hypothesis strategies for valid Marlin inputs, built by construction (no .filter for divisibility).

Every strategy draws a *case*: a small JSON-able dict of tile counts, dtypes, scheme names and a seed.
`properties.cases.transforms` turns a case into arrays with `np.random.default_rng(seed)`, so a failing case
prints as one short line of JSON and replays without Hypothesis. Shapes are drawn as tile counts, never
as sizes, and every strategy shrinks towards its smallest legal shape (K=16, N=64 for the repack; the
aligned (K, N) = (128, 64) for the prepare pipelines), towards seed 0 and towards no planted codes.

Content rules (spec §1, §2.8, §6.1):
* fp8 weights: random bytes, optionally with the special codes mixed in (±0, NaN, ±448, subnormals)
  and a few codes planted at drawn positions;
* scales and bias: distinct, non-uniform values (never all equal), so a misplaced one shows;
* e8m0: random codes plus the boundary codes, restricted to the ones the law's dtype can hold.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from marlin_ref.layout import MX_BLOCK, TILE_K, TILE_N

FP8_BLOCK_K = 128          # the only FP8 block_k with a kernel (spec §4.2)
FP8_BLOCK_NS = (128, 64, 256)  # checkpoint block_n: [128, 128] is usual; others make block_n != block_k
WIDE_K = 128               # GPTQ_MARLIN_MIN_THREAD_K: the aligned (n % 64, k % 128) family (§2.11)
PACK_K = 4                 # pack_fp8_to_int32 packs 4 bytes along K
BIAS_CHUNK = 32            # marlin_permute_bias needs numel % 32 == 0 (§2.5)
GROUP_SIZES = (128, 64, 32)  # MARLIN_SUPPORTED_GROUP_SIZES minus -1 (§2.13)

# fp8 e4m3fn codes a layout or pipeline must carry unchanged (§1, §3.4)
FP8_SPECIAL_CODES = (0x00, 0x80, 0x7F, 0xFF, 0x7E, 0xFE, *range(0x01, 0x08), *range(0x81, 0x88))
# e8m0 codes at the edges of the MX pipeline (§1, §2.10, §3.5)
E8M0_BOUNDARY_CODES = (0, 1, 126, 127, 128, 249, 250, 254, 255)
# fp16 holds 2^(b-127) only for b in [103, 142] (2^-24 .. 2^15); elsewhere the MX hazard of §2.10
E8M0_FP16_RANGE = (103, 142)

# real model dims (Llama-3 8B/70B hidden and MLP, Mixtral, 5120-wide models) and tensor-parallel degrees
MODEL_DIMS = (4096, 14336, 28672, 5120)
TP_DEGREES = (1, 2, 4, 8)
MAX_ELEMENTS = 1 << 18     # keeps one example of a model-dim shape in CPU milliseconds

ACTIVATION_DTYPES = ("bfloat16", "float16")
MX_FLOAT_DTYPES = ("float32", "bfloat16", "float16")   # float dtypes that carry e8m0 scales (§2.7, §2.10)
MX_INTERMEDIATE_DTYPES = ("bfloat16", "float32", "float16")
CHECKPOINT_SCALE_DTYPES = ("float32", "bfloat16", "float16")
SCALE_DTYPES = ("float16", "bfloat16", "float32")
FP8_SCHEMES = ("channel", "tensor", "shard_equal", "shard_widths", "block")
MOE_W13_SCHEMES = ("channel", "tensor", "shard_equal", "block")
MOE_W2_SCHEMES = ("tensor", "channel")      # block layers take block scales for w2 too (§5)
BIAS = (False, True)                        # whether a layer (or a GEMM) has a bias: the "bias" feature
PERMS = ("none", "empty", "random", "reverse")
ACT_ORDER_PERMS = ("random", "reverse")     # a real act-order perm: the "perm" feature; none/empty are its absence


def _check_bounds(fn: str, **bounds: int) -> None:
    for name, value in bounds.items():
        if value < 1:
            raise ValueError(f"{fn}: {name}={value} must be >= 1")


def seeds() -> st.SearchStrategy[int]:
    """Seed of the content generator; shrinks to 0."""
    return st.integers(0, 2**32 - 1)


def model_dims(*, multiple: int, other: int) -> st.SearchStrategy[int]:
    """A real model dim divided by a TP degree, kept where it is a multiple of `multiple` and
    d * other <= MAX_ELEMENTS; shrinks to the smallest."""
    dims = sorted({d // tp for d in MODEL_DIMS for tp in TP_DEGREES
                   if d % tp == 0 and (d // tp) % multiple == 0 and (d // tp) * other <= MAX_ELEMENTS})
    return st.sampled_from(dims)


@st.composite
def fp8_contents(draw, size: int) -> dict:
    """How an fp8 weight of `size` bytes is filled: seed, density of special codes, planted codes."""
    return {
        "seed": draw(seeds(), label="seed"),
        "specials": draw(st.sampled_from(("none", "some", "many")), label="specials"),
        "plants": draw(st.lists(st.tuples(st.integers(0, size - 1), st.sampled_from(FP8_SPECIAL_CODES)),
                                max_size=4).map(lambda ps: [list(p) for p in ps]), label="plants"),
    }


def repack_shapes(*, max_k_tiles: int = 4, max_n_tiles: int = 3, multiple_k: int = TILE_K) -> st.SearchStrategy[dict]:
    """(size_k, size_n) the repack accepts: k a multiple of 16, n of 64, including N == K and model
    dims; shrinks to (16, 64). multiple_k=WIDE_K gives the aligned prepare shapes, shrinking to (128, 64).

    Every kind draws the tile counts first, so "tiles" has the shortest choice sequence and wins
    Hypothesis' shortlex shrinking."""
    _check_bounds("repack_shapes", max_k_tiles=max_k_tiles, max_n_tiles=max_n_tiles, multiple_k=multiple_k)
    if multiple_k % TILE_K:
        raise ValueError(f"repack_shapes: multiple_k={multiple_k} must be a multiple of {TILE_K}")
    return _repack_shapes(max_k_tiles, max_n_tiles, multiple_k)


@st.composite
def _repack_shapes(draw, max_k_tiles: int, max_n_tiles: int, multiple_k: int) -> dict:
    k = multiple_k * draw(st.integers(1, max_k_tiles), label="k_tiles")
    n = TILE_N * draw(st.integers(1, max_n_tiles), label="n_tiles")
    kind = draw(st.sampled_from(("tiles", "square", "model_n", "model_k")), label="shape_kind")
    if kind == "square":
        k = n = math.lcm(multiple_k, TILE_N) * draw(st.integers(1, 2), label="square_tiles")
    elif kind == "model_n":
        k = multiple_k
        n = draw(model_dims(multiple=TILE_N, other=k), label="model_n")
    elif kind == "model_k":
        n = TILE_N
        k = draw(model_dims(multiple=multiple_k, other=n), label="model_k")
    return {"size_k": k, "size_n": n}


# Keyword arguments such as schemes=, dtypes=, bias= restrict one axis of a compliance cell each
# (properties.seam.capabilities): a law runs once per cell, drawing only that cell's cases. The axis is drawn from
# the given tuple in every case, so the choice sequence, and hence shrinking, is the same whatever the restriction.

@st.composite
def pack_cases(draw, *, codes=("fp8", "uint8")) -> dict:
    """fp8 [K, N] (or [N, K]) for pack_fp8_to_int32: K a multiple of 4, any N >= 1, N == K included."""
    k = PACK_K * draw(st.integers(1, 16), label="k_words")
    n = draw(st.integers(1, 72), label="size_n")
    n = k if draw(st.booleans(), label="square") else n
    return {"size_k": k, "size_n": n, "size_k_first": draw(st.booleans(), label="size_k_first"),
            "codes": draw(st.sampled_from(codes), label="codes"), **draw(fp8_contents(k * n))}


@st.composite
def packed_cases(draw) -> dict:
    """Random int32 words for unpack_fp8_from_int32."""
    return {"size_k": PACK_K * draw(st.integers(1, 16), label="k_words"),
            "size_n": draw(st.integers(1, 72), label="size_n"),
            "size_k_first": draw(st.booleans(), label="size_k_first"), "seed": draw(seeds(), label="seed")}


@st.composite
def repack_cases(draw, *, num_bits: int = 8, perms=PERMS) -> dict:
    """Input of gptq_marlin_repack: a GPTQ-packed weight and a perm (None, empty, or a permutation)."""
    shape = draw(repack_shapes())
    case = {**shape, "num_bits": num_bits, "perm": draw(st.sampled_from(perms), label="perm")}
    if num_bits == 8:
        return {**case, **draw(fp8_contents(shape["size_k"] * shape["size_n"]))}
    return {**case, "seed": draw(seeds(), label="seed")}


@st.composite
def marlin_words_cases(draw, *, num_bits: int = 8) -> dict:
    """Random Marlin words int32[K/16, 16N/pf] for gptq_marlin_unrepack (every word pattern is valid)."""
    return {**draw(repack_shapes()), "num_bits": num_bits, "seed": draw(seeds(), label="seed")}


@st.composite
def scale_grid_cases(draw, *, dtypes=SCALE_DTYPES, schemes=("channel", "grouped", "group_is_k"),
                     group_sizes=GROUP_SIZES) -> dict:
    """[G, N] scales for marlin_permute_scales: channel-wise (group -1), grouped (G >= 2, group < K)
    and the edge group_size == K (G = 1, single permutation, §2.4), for vLLM's group sizes and for other
    one-group K = 16·t (16, 48, 256, 384; vLLM accepts any, §9); shrinks to channel-wise [1, 64]."""
    n = TILE_N * draw(st.integers(1, 3), label="n_tiles")
    scheme = draw(st.sampled_from(schemes), label="scale_scheme")
    if scheme == "channel":
        group_size, groups, k = -1, 1, WIDE_K * draw(st.integers(1, 2), label="k_blocks")
    elif scheme == "grouped":
        group_size = draw(st.sampled_from(group_sizes), label="group_size")
        groups = draw(st.integers(2, 4), label="groups")
        k = group_size * groups
    else:  # one group spanning all of K, group_size == size_k: vLLM's sizes and others (one tile, 3 tiles, 256, 384)
        k = draw(st.sampled_from((*GROUP_SIZES, TILE_K, 3 * TILE_K, 256, 384)), label="group_size")
        group_size, groups = k, 1
    return {"size_k": k, "size_n": n, "group_size": group_size, "groups": groups,
            "dtype": draw(st.sampled_from(dtypes), label="dtype"), "seed": draw(seeds(), label="seed")}


@st.composite
def bias_cases(draw, *, dtypes=SCALE_DTYPES) -> dict:
    """Bias [N] or [E, N] (numel a multiple of 32) for marlin_permute_bias."""
    n = BIAS_CHUNK * draw(st.integers(1, 6), label="n_chunks")
    experts = draw(st.integers(0, 3), label="experts")  # 0: a plain [N] bias
    return {"shape": [experts, n] if experts else [n],
            "dtype": draw(st.sampled_from(dtypes), label="dtype"), "seed": draw(seeds(), label="seed")}


@st.composite
def fused_scale_cases(draw, *, fused: bool = False, dtypes=ACTIVATION_DTYPES) -> dict:
    """fp16/bf16 scales of rank 0, 1 or 2 for the exponent-bias fusion; `magnitudes` adds values that
    overflow when fused (>= 256) and subnormals (§2.6, §3.5). fused=True draws already fused scales."""
    rank = draw(st.integers(0, 2), label="rank")
    shape = [[], [TILE_N], [draw(st.integers(1, 3), label="groups") if rank == 2 else 1, TILE_N]][rank]
    return {"shape": shape, "dtype": draw(st.sampled_from(dtypes), label="dtype"),
            "magnitudes": draw(st.sampled_from(("typical", "extreme")), label="magnitudes"),
            "fused": fused, "seed": draw(seeds(), label="seed")}


@st.composite
def e8m0_grid_cases(draw, *, finite_only: bool = False, dtypes=MX_FLOAT_DTYPES) -> dict:
    """[G, N] e8m0 codes for the MX scale processing, with the boundary codes planted; the float dtype
    carries them (float16 only within [103, 142], §2.10). finite_only drops code 255 (NaN)."""
    dtype = draw(st.sampled_from(dtypes), label="dtype")
    return {"groups": draw(st.integers(1, 3), label="groups"),
            "size_n": TILE_N * draw(st.integers(1, 3), label="n_tiles"), "dtype": dtype,
            "finite_only": finite_only, "seed": draw(seeds(), label="seed")}


@st.composite
def e8m0_byte_cases(draw, *, dtypes=MX_FLOAT_DTYPES) -> dict:
    """uint8 (or float8_e8m0fnu) codes of rank 1 or 2 for mxfp8_scales_to_float; all 256 codes."""
    rank = draw(st.integers(1, 2), label="rank")
    return {"shape": [MX_BLOCK * draw(st.integers(1, 8), label="size")] + [4] * (rank - 1),
            "codes": draw(st.sampled_from(("uint8", "e8m0")), label="codes"),
            "dtype": draw(st.sampled_from(dtypes), label="dtype"),
            "seed": draw(seeds(), label="seed")}


def _widths(draw, n: int) -> list[int]:
    """Unequal shard widths summing to n (fused QKV-like), in units of 16 where n allows."""
    unit = TILE_K if n % TILE_K == 0 and n >= 2 * TILE_K else 1
    units = n // unit
    count = draw(st.integers(2, min(3, units)), label="shards")
    cuts = sorted(draw(st.sets(st.integers(1, units - 1), min_size=count - 1, max_size=count - 1), label="cuts"))
    widths = [unit * (b - a) for a, b in zip([0, *cuts], [*cuts, units])]
    if len(set(widths)) == 1:  # all equal (e.g. n = 48 in three shards): move one column so they differ
        if widths[-1] > 1:
            widths = [widths[0] + 1, *widths[1:-1], widths[-1] - 1]
        else:                  # n == count: merge the last two shards instead
            widths = [*widths[:-2], widths[-2] + widths[-1]]
    return widths


@st.composite
def fp8_scheme_fields(draw, scheme: str, *, size_n: int) -> dict:
    """Scale fields of a dense FP8 layer with that scheme (§2.8 step 4): rank, checkpoint dtype, widths."""
    rank = draw(st.integers(0, 2), label="scale_rank")   # drawn for every scheme: equal-length choices
    case = {"scheme": scheme, "scale_dtype": draw(st.sampled_from(CHECKPOINT_SCALE_DTYPES), label="scale_dtype"),
            "scale_rank": 2 if scheme == "block" else rank if scheme == "tensor" else max(rank, 1),
            "logical_widths": None}
    # the layer may also have widths that do not match the scale: the branch order decides (§2.8)
    widths_given = draw(st.booleans(), label="widths_given")
    if scheme == "shard_equal":
        case["shards"] = draw(st.sampled_from([s for s in range(2, size_n) if size_n % s == 0]), label="shards")
    elif scheme == "shard_widths":
        case["logical_widths"] = _widths(draw, size_n)
    elif scheme != "block" and widths_given:
        case["logical_widths"] = [size_n // 2, size_n - size_n // 2]
    return case


@st.composite
def fp8_layer_cases(draw, *, schemes=FP8_SCHEMES, aligned: bool = False, square: bool = False,
                    dtypes=ACTIVATION_DTYPES, bias=BIAS) -> dict:
    """Inputs of prepare_fp8_layer_for_marlin. Shapes shrink to (K, N) = (128, 64); unless `aligned`,
    K and N may fall short of the tile (K a multiple of 4, N of 16) so the pipeline pads (§2.11).
    Block scales use [block_n, 128] (block_n 128, 64 or 256) with K a multiple of 128 (K == 128: the
    single-permutation edge, §2.4) and N = 1..3 block columns, the last one cut short by a multiple of 16
    unless `aligned`: the ragged block case, with two or more block columns in most draws, and tile padding
    wherever N % 64 != 0 (§2.8 step 4, §2.11); block cases shrink to (128, 128)."""
    scheme = draw(st.sampled_from(schemes), label="scheme")
    block_n = draw(st.sampled_from(FP8_BLOCK_NS), label="block_n")      # drawn for every scheme: the block one uses it
    if square:
        k = n = WIDE_K * draw(st.integers(1, 2), label="square_tiles")
    else:
        shape = draw(repack_shapes(max_k_tiles=3, multiple_k=WIDE_K))
        k, n = shape["size_k"], shape["size_n"]
        k_short, n_short = draw(st.integers(0, 7), label="k_short"), draw(st.integers(0, 3), label="n_short")
        if scheme == "block":
            cut = 0 if aligned else draw(st.integers(0, block_n // TILE_K - 1), label="block_cut")
            n = block_n * draw(st.integers(1, 3), label="block_cols") - TILE_K * cut     # the last column short
        elif not aligned and k == n:   # a square weight stays square: N == K is its own class (vLLM #44110)
            k = n = n - TILE_K * n_short
        elif not aligned:
            k, n = k - PACK_K * k_short, n - TILE_K * n_short
    return {"size_k": k, "size_n": n, "size_k_first": draw(st.booleans(), label="size_k_first"),
            "orig_dtype": draw(st.sampled_from(dtypes), label="orig_dtype"),
            "bias": draw(st.sampled_from(bias), label="bias"), **draw(fp8_scheme_fields(scheme, size_n=n)),
            "block_n": block_n, **draw(fp8_contents(k * n))}


@st.composite
def fp8_moe_cases(draw, *, schemes=MOE_W13_SCHEMES, w2_schemes=MOE_W2_SCHEMES, aligned: bool = False,
                  dtypes=ACTIVATION_DTYPES, bias=BIAS) -> dict:
    """Inputs of prepare_fp8_moe_layer_for_marlin: E experts, hidden k (multiple of 128), intermediate n.
    Block scales need n % 128 == 0 (§5); otherwise n may be short of 64 so w13 is padded per shard.
    w2 takes the block scheme exactly when w13 does (w2_schemes are the choices of the other schemes)."""
    scheme = draw(st.sampled_from(schemes), label="scheme")
    block_n = draw(st.sampled_from(FP8_BLOCK_NS), label="block_n")      # drawn for every scheme: the block one uses it
    k = WIDE_K * draw(st.integers(1, 3), label="k_blocks")
    n_tiles, n_short = draw(st.integers(1, 3), label="n_tiles"), draw(st.integers(0, 3), label="n_short")
    w2_scheme = draw(st.sampled_from(w2_schemes), label="w2_scheme")
    if scheme == "block":   # gate and up are whole blocks of N (§6.1 item 11), w2's K whole blocks of 128; w2's
        unit = math.lcm(block_n, FP8_BLOCK_K)   # N = k may end in a partial block (k = 384, block_n = 256)
        n, w2_scheme = unit * (min(n_tiles, 2) if unit == FP8_BLOCK_K else 1), "block"
    else:
        n = TILE_N * n_tiles - (0 if aligned else TILE_K * n_short)
    return {"experts": draw(st.integers(1, 3), label="experts"), "hidden": k, "intermediate": n,
            "scheme": scheme, "w2_scheme": w2_scheme,
            "scale_dtype": draw(st.sampled_from(CHECKPOINT_SCALE_DTYPES), label="scale_dtype"),
            "orig_dtype": draw(st.sampled_from(dtypes), label="orig_dtype"),
            "bias": draw(st.sampled_from(bias), label="bias"), "seed": draw(seeds(), label="seed"),
            "specials": draw(st.sampled_from(("none", "some")), label="specials"), "block_n": block_n}


@st.composite
def mxfp8_layer_cases(draw, *, aligned: bool = False, dtypes=MX_INTERMEDIATE_DTYPES, bias=BIAS) -> dict:
    """Inputs of prepare_mxfp8_layer_for_marlin: weight [N, K] (K a multiple of 32), e8m0 scales
    [>= N, >= K/32] (the extra rows/columns are sliced off, §2.10), intermediate dtype."""
    shape = draw(repack_shapes(max_k_tiles=3, multiple_k=WIDE_K))
    k, n = shape["size_k"], shape["size_n"]
    k_short, n_short = draw(st.integers(0, 3), label="k_short"), draw(st.integers(0, 3), label="n_short")
    if not aligned:
        k, n = k - MX_BLOCK * k_short, n - TILE_K * n_short
    return {"size_k": k, "size_n": n, "bias": draw(st.sampled_from(bias), label="bias"),
            "intermediate_dtype": draw(st.sampled_from(dtypes), label="dtype"),
            "extra_rows": draw(st.integers(0, 2), label="extra_rows"),
            "extra_cols": draw(st.integers(0, 2), label="extra_cols"),
            "scale_codes": draw(st.sampled_from(("uint8", "e8m0")), label="scale_codes"),
            **draw(fp8_contents(k * n))}


@st.composite
def mxfp8_moe_cases(draw, *, aligned: bool = False, dtypes=MX_INTERMEDIATE_DTYPES[:2]) -> dict:
    """Inputs of prepare_mxfp8_moe_layer_for_marlin: k a multiple of 128, n of 32 (padded to 64)."""
    n = TILE_N * draw(st.integers(1, 2), label="n_tiles")
    n_short = draw(st.integers(0, 1), label="n_short")
    if not aligned:
        n -= MX_BLOCK * n_short
    return {"experts": draw(st.integers(1, 3), label="experts"),
            "hidden": WIDE_K * draw(st.integers(1, 2), label="k_blocks"), "intermediate": n,
            "intermediate_dtype": draw(st.sampled_from(dtypes), label="dtype"),
            "seed": draw(seeds(), label="seed"), "specials": draw(st.sampled_from(("none", "some")), label="specials")}


@st.composite
def padding_cases(draw, *, group_sizes=(-1, *GROUP_SIZES)) -> dict:
    """Any positive (size_n, size_k) and a supported group size for the padding helpers."""
    return {"size_n": draw(st.integers(1, 640), label="size_n"), "size_k": draw(st.integers(1, 640), label="size_k"),
            "group_size": draw(st.sampled_from(group_sizes), label="group_size")}


def with_probe(cases: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    """Add "probe": [k, n], one position inside the case's [size_k, size_n] weight; shrinks to [0, 0]."""
    return cases.flatmap(lambda case: st.tuples(st.integers(0, case["size_k"] - 1),
                                                 st.integers(0, case["size_n"] - 1))
                         .map(lambda probe: {**case, "probe": list(probe)}))
