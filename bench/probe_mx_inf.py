"""Probe: the MXFP8 kernel output where two +inf products meet (found by the gemm_within_bound law, gpu run
of 9f2afdc: out[12, 227] = NaN, oracle +inf). Prints the kernel's value for the failing row and for
activations keeping only the non-finite terms of that column, alone and together."""

import json

import numpy as np
import torch

from marlin_fast import cuda
from marlin_ref.marlin_gemm import dequantize_marlin_weight
from properties.seam.backends import to_numpy, to_torch
from properties.cases.gemm_cases import build_gemm

CASE = ('{"scheme":"mx","dtype":"bfloat16","size_k":64,"size_n":384,"activations":"normal","rows":13,'
        '"act_exponent":0,"bias":false,"specials":"many","seed":87}')
kw = build_gemm(json.loads(CASE)).kwargs
a = kw["a"]
w = dequantize_marlin_weight(kw["b_q_weight"], kw["b_scales"], 64, 384, dtype=a.dtype)
bad = [k for k in range(64) if not np.isfinite(w[k, 227])]
print("non-finite W_eff[k, 227]:", [(k, w[k, 227], float(a[12, k])) for k in bad])


def run(rows):
    out = cuda.marlin_gemm(to_torch(np.ascontiguousarray(rows), "cuda"), to_torch(kw["b_q_weight"], "cuda"),
                           to_torch(kw["b_scales"], "cuda"), None, size_n=384, size_k=64)
    torch.cuda.synchronize()
    return to_numpy(out)[:, 227].astype(np.float64)


print("full case, row 12:", run(a)[12])
print("row 12 alone (M=1):", run(a[12:13])[0])
for keep in [bad[:1], bad[1:2], bad]:
    x = np.zeros_like(a[12:13])
    x[0, keep] = a[12, keep]
    print("only k in", keep, "->", run(x)[0])
x = a[12:13].copy()
x[0, bad] = 0
print("row 12 without them ->", run(x)[0])
