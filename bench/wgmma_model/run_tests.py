"""End-to-end: the NumPy model of the wgmma kernel vs the marlin_ref oracle (float64 reference)."""
import sys
import itertools
import numpy as np
import ml_dtypes

import marlin_ref as mr
from marlin_ref.formats import BF16, E8M0

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import model as M


def make_layer(rng, K, N, scheme, E=None):
    """Random fp8 weight + scales in kernel format; returns (qweight, scales, bias) (stacked if E)."""
    def one():
        codes = rng.integers(0, 256, (K, N), dtype=np.uint8)
        q = mr.gptq_marlin_repack(mr.pack_fp8_to_int32(codes), None, K, N, 8)
        if scheme == M.CHANNEL:
            s = mr.round_to_dtype(rng.uniform(0.5, 2.0, (1, N)) * 2.0 ** -6, "bf16")
            s = mr.marlin_permute_scales(s, K, N, -1)
            sc = np.ldexp(s, 120).astype(BF16)
        elif scheme == M.GROUP128:
            s = mr.round_to_dtype(rng.uniform(0.5, 2.0, (K // 128, N)) * 2.0 ** -6, "bf16")
            s = mr.marlin_permute_scales(s, K, N, 128)
            sc = np.ldexp(s, 120).astype(BF16)
        else:
            b = rng.integers(117, 127, (K // 32, N))
            s = np.ldexp(1.0, b - 127).astype(np.float32)
            s = mr.marlin_permute_scales(s, K, N, 32)
            sc = mr.mxfp8_marlin_process_scales(s)
        bias = mr.marlin_permute_bias(rng.normal(0, 4, N).astype(BF16))
        return q, sc, bias
    if E is None:
        return one()
    parts = [one() for _ in range(E)]
    return tuple(np.stack([pp[i] for pp in parts]) for i in range(3))


def compare(out_bits, ref, label):
    got = out_bits.view(BF16).astype(np.float64)
    ref = ref.astype(np.float64)
    exact = (got == ref) | (np.isnan(got) & np.isnan(ref))
    ulp = mr.marlin_gemm.dtype_ulp(np.maximum(np.abs(ref), np.abs(got)), BF16)
    with np.errstate(invalid="ignore"):
        within1 = exact | (np.abs(got - ref) <= ulp)
    bad = ~within1
    msg = f"{label}: exact {exact.mean() * 100:.3f}%  >1ulp {bad.sum()} of {bad.size}"
    return bad.sum() == 0, msg


def dense_case(rng, Mrows, N, K, scheme, splits, lda_pad=0, with_bias=True, modes=(("late", "early"), ("early", "late"))):
    x = rng.normal(0, 1, (Mrows, K)).astype(BF16)
    q, sc, bias = make_layer(rng, K, N, scheme)
    if not with_bias:
        bias = None
    ref = mr.marlin_gemm_reference(x, q, sc, bias, size_n=N, size_k=K)
    lda = K + lda_pad
    xpad = np.full((Mrows, lda), np.nan, np.float32).astype(BF16)   # padding columns = NaN: must never be read
    xpad[:, :K] = x
    results = []
    for copy_mode, mma_mode in modes:
        p = M.Args()
        p.M, p.N, p.K = Mrows, N, K
        p.G = sc.shape[0]
        p.lda = lda
        p.m_blocks = (Mrows + M.BM - 1) // M.BM
        M.plan_gemm(p, splits)
        p.sorted_ids = p.expert_ids = p.topk_weights = None
        p.top_k = 1
        p.b_expert_stride = p.s_expert_stride = p.bias_expert_stride = 0
        p.bias = None if bias is None else bias.view(np.uint16)
        tiles = p.m_blocks * p.n_blocks
        p.partials = np.zeros(tiles * p.splits * M.PARTIAL_FLOATS if p.splits > 1 else 0)
        p.part_written = np.zeros(p.partials.size, bool)
        p.counters = np.zeros(tiles, np.int64)
        p.out = np.full(Mrows * N, 0xFFFF, np.uint16)
        p.out_written = np.zeros(Mrows * N, bool)
        mem = M.Mem(a=xpad.view(np.uint8).ravel(), b=q.view(np.uint8).ravel(), sc=sc.view(np.uint8).ravel())
        try:
            st = M.run_kernel(p, mem, scheme, copy_mode, mma_mode, seed=int(rng.integers(1 << 30)),
                              order_seed=int(rng.integers(1 << 30)))
        except M.ModelError as e:
            results.append((False, f"MODEL ERROR ({copy_mode} copies/{mma_mode} mma): {e}"))
            continue
        ok = p.out_written.all() and (p.counters == 0).all()
        good, msg = compare(p.out.reshape(Mrows, N), ref,
                            f"copies {copy_mode}/mma {mma_mode} splits={p.splits} per={p.stages_per_split}")
        extra = "" if p.out_written.all() else f" UNWRITTEN {(~p.out_written).sum()}"
        extra += "" if (p.counters == 0).all() else " COUNTERS NOT RESET"
        results.append((good and ok, msg + extra + f" mmas={st['mmas']} sums={st['split_sums']}"))
    return results


def moe_case(rng, Mtok, top_k, E, N, K, scheme, splits, with_bias=True, with_topk=True):
    x = rng.normal(0, 1, (Mtok, K)).astype(BF16)
    q, sc, bias = make_layer(rng, K, N, scheme, E)
    if not with_bias:
        bias = None
    ids = rng.integers(-1, E, (Mtok, top_k))
    tw = rng.uniform(0.1, 1.0, (Mtok, top_k)).astype(np.float32)
    ref = mr.marlin_moe_gemm_reference(x, q, sc, bias, topk_ids=ids, size_n=N, size_k=K,
                                       topk_weights=tw if with_topk else None, mul_topk_weights=with_topk)
    rows = Mtok * top_k
    sorted_ids, expert_ids = [], []
    for e in range(E):
        r = [m * top_k + j for m in range(Mtok) for j in range(top_k) if ids[m, j] == e]
        rng.shuffle(r)
        while r:
            blk, r = r[:M.BM], r[M.BM:]
            sorted_ids += blk + [-1] * (M.BM - len(blk))
            expert_ids.append(e)
    sorted_ids = np.array(sorted_ids, np.int32)
    expert_ids = np.array(expert_ids, np.int32)
    results = []
    for copy_mode, mma_mode in (("late", "early"), ("early", "late")):
        p = M.Args()
        p.M, p.N, p.K = rows, N, K
        p.G = sc.shape[1]
        p.lda = K
        p.m_blocks = expert_ids.size
        M.plan_gemm(p, splits)
        p.sorted_ids, p.expert_ids, p.top_k = sorted_ids, expert_ids, top_k
        p.topk_weights = tw.ravel() if with_topk else None
        p.b_expert_stride = q.shape[1] * q.shape[2]
        p.s_expert_stride = sc.shape[1] * sc.shape[2]
        p.bias_expert_stride = N
        p.bias = None if bias is None else bias.view(np.uint16).ravel()
        tiles = p.m_blocks * p.n_blocks
        p.partials = np.zeros(tiles * p.splits * M.PARTIAL_FLOATS if p.splits > 1 else 0)
        p.part_written = np.zeros(p.partials.size, bool)
        p.counters = np.zeros(tiles, np.int64)
        p.out = np.zeros(rows * N, np.uint16)      # rows of no expert stay +0 (as the oracle)
        p.out_written = np.zeros(rows * N, bool)
        mem = M.Mem(a=x.view(np.uint8).ravel(), b=q.view(np.uint8).ravel(), sc=sc.view(np.uint8).ravel())
        try:
            M.run_kernel(p, mem, scheme, copy_mode, mma_mode, seed=int(rng.integers(1 << 30)),
                         order_seed=int(rng.integers(1 << 30)))
        except M.ModelError as e:
            results.append((False, f"MODEL ERROR: {e}"))
            continue
        routed = np.repeat((ids >= 0).ravel(), N)
        ok = (p.out_written == routed).all()
        good, msg = compare(p.out.reshape(rows, N), ref, f"MoE copies {copy_mode}/mma {mma_mode} splits={p.splits}")
        results.append((good and ok, msg + ("" if ok else " WRITTEN-SET MISMATCH")))
    return results


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "quick"
    rng = np.random.default_rng(1234)
    names = {M.CHANNEL: "channel", M.GROUP128: "group128", M.MX32: "mx"}
    cases = []
    if which == "quick":
        cases = [(300, 192, 1040, M.CHANNEL, 2, 8)]
    elif which == "dense":
        for Mrows in (1, 100, 256, 300):
            for N in (128, 192, 320):
                for scheme, K in ((M.CHANNEL, 64), (M.CHANNEL, 1040), (M.GROUP128, 1024), (M.MX32, 1056)):
                    for splits in (1, 2, 3):
                        if K == 64 and splits > 1:
                            continue
                        cases.append((Mrows, N, K, scheme, splits, 8 if (Mrows + N) % 3 == 0 else 0))
        sel = sys.argv[2] if len(sys.argv) > 2 else None
        if sel is not None:
            a, b = map(int, sel.split(":"))
            cases = cases[a:b]
    allok = True
    if which == "moe":
        for scheme, K in ((M.CHANNEL, 1040), (M.GROUP128, 1024), (M.MX32, 1056)):
            for splits in (1, 2):
                res = moe_case(rng, 150, 2, 3, 192, K, scheme, splits)
                for ok, msg in res:
                    allok &= ok
                    print(f"MoE {names[scheme]} K={K} forced_splits={splits}: {'OK ' if ok else 'FAIL'} {msg}", flush=True)
    for (Mrows, N, K, scheme, splits, pad) in cases:
        res = dense_case(rng, Mrows, N, K, scheme, splits, lda_pad=pad, with_bias=(Mrows % 2 == 0))
        for ok, msg in res:
            allok &= ok
            print(f"M={Mrows} N={N} K={K} {names[scheme]} forced_splits={splits} lda_pad={pad}: "
                  f"{'OK ' if ok else 'FAIL'} {msg}", flush=True)
    print("ALL OK" if allok else "FAILURES")
