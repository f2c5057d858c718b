"""Mutation check: each mutant of the model (a plausible kernel bug) must be caught by the end-to-end test."""
import sys, importlib, types
import numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import run_tests as RT
SRC = open(__import__("pathlib").Path(__file__).resolve().parent / "model.py").read()
MUTANTS = {
  "A regs a1<->a2": ("regs = np.stack([a0, a1, a2, a3], 1)", "regs = np.stack([a0, a2, a1, a3], 1)"),
  "desc LBO/SBO swapped": ("wgmma_desc_no_swizzle(smem_base, 128, 256)", "wgmma_desc_no_swizzle(smem_base, 256, 128)"),
  "x half g from bit 4": ("x_g = (tid >> 3) & 1", "x_g = (tid >> 4) & 1"),
  "cp_async_wait NS-2": ("cp_async_wait(NS - 3)", "cp_async_wait(NS - 2)"),
  "wgmma_wait<2>": ("wgmma_wait(g, 1)", "wgmma_wait(g, 2)"),
  "load NS-1 ahead": ("""        if s + NS - 2 < nst:
            load_stage(s + NS - 2, (s + NS - 2) % NS)""", """        if s + NS - 1 < nst:
            load_stage(s + NS - 1, (s + NS - 1) % NS)"""),
  "single A buffer": ("stage(s + 1, 1)", "stage(s + 1, 0)"),
  "weight chunk store unpermuted": ("(chunk % 2) * 32 + chunk // 2) * 16", "chunk) * 16"),
  "w_lane half from w%2": ("(w // 2) * 512 + lane * 16 + (w % 2) * 8", "(w % 2) * 512 + lane * 16 + (w // 2) * 8"),
  "MX byte 2*(w%2)": ("mx_scale_pair(word[t], int(w[t] % 2))", "mx_scale_pair(word[t], int(2 * (w[t] % 2)))"),
  "MX row kk not kk//2": ("(kk // 2) * BN, 4, s)", "(kk % 2) * BN, 4, s)"),
  "group scale hi/lo swapped": ("lo, hi = group_scale_pair(group_word, 0), group_scale_pair(group_word, 1)",
                                "lo, hi = group_scale_pair(group_word, 1), group_scale_pair(group_word, 0)"),
  "channel scale unpermuted": ("single_perm_pos(col[th] + 8 * v)", "(col[th] + 8 * v)"),
  "bias unpermuted": ("bias[th, 1] = bf16_bits_to_f64(p.bias[bs + single_perm_pos(col[th] + 8)])",
                      "bias[th, 1] = bf16_bits_to_f64(p.bias[bs + col[th] + 8])"),
  "staging row 2q+e -> q*2+... (e,q swap)": ("rowoff = (8 * i + 2 * q + e)", "rowoff = (8 * i + q + 4 * e)"),
  "acc pairs (col, col+8) from i+1": ("vy = rt_bf16(acc[:, 4 * i + 2 + e])", "vy = rt_bf16(acc[:, 4 * i + 1 - e + 2 * e])"),
  "kk steps not guarded": ("if kk < steps:", "if True:"),
  "partial split stride": ("split_part = tile_part + s * 32 * THREADS", "split_part = tile_part + s * 31 * THREADS"),
}
cases = [(300, 192, 1040, 0, 2, 8), (256, 128, 1024, 1, 3, 0), (100, 320, 1056, 2, 2, 0)]
for name, (old, new) in MUTANTS.items():
    assert SRC.count(old) >= 1, name
    mod = types.ModuleType("model")
    exec(compile(SRC.replace(old, new), "mut", "exec"), mod.__dict__)
    RT.M = mod
    caught = []
    rng = np.random.default_rng(7)
    for c in cases:
        res = RT.dense_case(rng, c[0], c[1], c[2], c[3], c[4], lda_pad=c[5], with_bias=True)
        caught += [not ok for ok, msg in res]
        first_fail = next((msg for ok, msg in res if not ok), None)
        if first_fail and len(caught) <= 2: pass
    print(f"{name:45s} caught in {sum(caught)}/{len(caught)} runs", flush=True)
