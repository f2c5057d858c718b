"""Build Marlin GEMM inputs on the GPU for bench_gpu.py, and the torch reference it checks against.

Weights start as random e4m3 codes in the checkpoint layout [N, K]; the Marlin weight comes from the
CUDA kernel fp8_marlin_repack_from_checkpoint (itself checked against the oracle by tests/gpu); the
scales are permuted here with the spec's formulas (§2.4) so the bench depends on nothing else.
"""

from __future__ import annotations

import torch

GROUP = 128                    # FP8 group size with a Marlin kernel (§4.2)
E4M3_NAN_MAGNITUDE = 0x7F      # 0x7F / 0xFF are NaN codes; the kernel reads them as ±480 (§3.1)
BETA = {torch.float16: 8, torch.bfloat16: 120}  # §2.6


def grouped_perm(device) -> torch.Tensor:
    """§2.4: out[64a + p] = in[64a + p//8 + 8(p%8)]."""
    p = torch.arange(64, device=device)
    return p // 8 + 8 * (p % 8)


def single_perm(device) -> torch.Tensor:
    """§2.4: out[32a + p] = in[32a + 2(p//8) + (p%2) + 8((p%8)//2)]."""
    p = torch.arange(32, device=device)
    return 2 * (p // 8) + (p % 2) + 8 * ((p % 8) // 2)


def permute_scales(s: torch.Tensor, grouped: bool) -> torch.Tensor:
    perm = grouped_perm(s.device) if grouped else single_perm(s.device)
    chunk = perm.numel()
    return s.reshape(-1, chunk)[:, perm].reshape(s.shape).contiguous()     # [G*N/chunk, chunk] -> [G, N]


def random_codes(size_n: int, size_k: int, generator: torch.Generator, device) -> torch.Tensor:
    """uint8 [N, K] e4m3 codes without NaN codes (they are tested elsewhere; keep timing data ordinary)."""
    codes = torch.randint(0, 256, (size_n, size_k), dtype=torch.uint8, device=device, generator=generator)
    nan = (codes & 0x7F) == E4M3_NAN_MAGNITUDE
    return torch.where(nan, codes ^ 0x01, codes)


def decode(codes: torch.Tensor) -> torch.Tensor:
    return codes.view(torch.float8_e4m3fn).to(torch.float32)


def make_gemm_inputs(kernels, size_n, size_k, scheme, dtype, generator, device="cuda"):
    """(qweight, fused scales, W_eff [N, K] float32 exact, W_deq [N, K] in dtype for cuBLAS)."""
    codes = random_codes(size_n, size_k, generator, device)                               # [N, K]
    groups = 1 if scheme == "channel" else size_k // GROUP
    s = torch.empty((groups, size_n), device=device).uniform_(2 ** -8, 2 ** -4, generator=generator).to(dtype)
    qweight = kernels.fp8_marlin_repack_from_checkpoint(codes)                           # [K/16, 4N]
    fused = permute_scales(s, grouped=groups > 1) * (2.0 ** BETA[dtype])                  # exact: power of two
    s_nk = s.float().repeat_interleave(size_k // groups, dim=0).t()                       # [N, K]
    w_eff = decode(codes) * s_nk                                                          # exact in fp32
    if scheme != "channel":
        w_eff = w_eff.to(dtype).float()                                                   # RT(u*S_g) (§3.2 B)
    return qweight, fused.contiguous(), w_eff, w_eff.to(dtype)


def check_against_reference(out: torch.Tensor, x: torch.Tensor, w_eff: torch.Tensor) -> float:
    """max |out - ref| / (ulp(ref) + K*2^-24 * |x|.|W|): <= 1 means within the §3.6-style bound."""
    ref = x.double() @ w_eff.double().t()
    spread = x.double().abs() @ w_eff.double().abs().t()
    mant = 7 if out.dtype == torch.bfloat16 else 10
    _, exp = torch.frexp(ref.abs().clamp_min(2.0 ** -120))
    ulp = torch.ldexp(torch.ones_like(ref), exp - 1 - mant)
    bound = ulp + x.shape[1] * 2.0 ** -24 * spread
    return float(((out.double() - ref).abs() / bound).max())
