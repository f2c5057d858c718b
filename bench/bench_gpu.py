"""GPU benchmark of the CUDA fast path: repack bandwidth and Marlin FP8 GEMM latency.

    PYTHONPATH=. python3 bench/bench_gpu.py --out DIR [--quick] [--commit SHA]

* Copy bandwidth: a 1 GiB device-to-device copy, counting bytes read + written.
* Repack: gptq_marlin_repack and the fused checkpoint path on an 8192 x 8192 fp8 weight, against a
  device copy of the same 64 MiB.
* GEMM: bf16 activations, channel-wise and group-128 scales, M in {1, 16, 64, 256, 1024},
  (N, K) in {(4096, 4096), (8192, 8192), (28672, 4096), (4096, 14336)}; the Marlin kernel against
  torch bf16 matmul (cuBLAS) on the dequantised weight, and against the floor of reading the fp8
  weight once at the measured copy bandwidth. Each case is checked once against a float64 reference
  before timing. Timing: CUDA events around one call, L2 flushed (a 256 MiB write) before every call,
  median of --reps; plus a CUDA-graph figure: --graph-calls back-to-back calls over rotating weight
  copies (> L2) captured in one graph, replay time / calls.
* Peer (optional): --peer-load PATH loads another Marlin library through the suite's seam (as --marlin-load does)
  and --peer-backend names it (default marlin-ops:marlin_snapshot, vLLM's 2025 snapshot built by
  bench/peers/build_vllm_snapshot.py); its repack and GEMM are timed on the same tensors, in the same process, after
  the same correctness check, and the tables gain ours/peer time ratios (above 1: ours slower). The seam's GEMM
  allocates the zeroed Marlin workspace (one int32 lock per SM) on every call, so the peer's figures include one
  small memset that vLLM, which keeps its workspace, does not pay.
Writes DIR/bench_gpu.json, DIR/bench_gpu.md and DIR/bench_gpu.png (matplotlib; the peer's times too when given);
`--out DIR --replot` redraws the plot from DIR/bench_gpu.json alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_setup import check_against_reference, make_gemm_inputs  # noqa: E402

from marlin_fast import cuda as kernels  # noqa: E402

SHAPES = [(4096, 4096), (8192, 8192), (28672, 4096), (4096, 14336)]   # (N, K)
ROWS = [1, 16, 64, 256, 1024]
SCHEMES = ["channel", "group128"]
FLUSH_BYTES = 256 << 20        # > 50 MB L2 of an H100
COPY_BYTES = 1 << 30
PEER_BACKEND = "marlin-ops:marlin_snapshot"   # the seam's name of bench/peers/build_vllm_snapshot.py's library


class Timer:
    """Median GPU time of fn() in microseconds: events around each call, L2 flushed before it."""

    def __init__(self):
        self.flush = torch.empty(FLUSH_BYTES, dtype=torch.uint8, device="cuda")

    def __call__(self, fn, reps: int, warmup: int = 5) -> float:
        for _ in range(warmup):
            fn()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for i in range(reps):
            self.flush.zero_()     # evicts L2 and keeps the GPU busy while the host enqueues the call
            starts[i].record()
            fn()
            ends[i].record()
        torch.cuda.synchronize()
        return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends)) * 1e3


def graph_time(calls, reps: int = 10) -> float:
    """Microseconds per call of the callables in `calls` (run in turn) captured in one CUDA graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for fn in calls:     # warm-up on the capture stream (workspace allocations happen here)
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        for fn in calls:
            fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(calls))
    return statistics.median(times)


def rotation(t: torch.Tensor) -> list:
    """t and enough copies of it that cycling through them never hits L2 (> 3/4 of the flush size)."""
    copies = max(1, -(-3 * FLUSH_BYTES // 4 // (t.numel() * t.element_size())))
    return [t] + [t.clone() for _ in range(copies - 1)]


def copy_bandwidth(timer: Timer) -> dict:
    src = torch.randint(0, 255, (COPY_BYTES,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    us = timer(lambda: dst.copy_(src), reps=20)
    return {"bytes": COPY_BYTES, "us": us, "bytes_per_s": 2 * COPY_BYTES / (us * 1e-6)}


def load_peer(path: str | None, name: str):
    """(the peer's torch-level gptq_marlin_repack, its torch-level marlin_gemm), loaded through the seam; or None."""
    if not path:
        return None
    from properties.seam import loading
    from properties.seam.backends import get_backend

    loading.load_all([path])
    peer = get_backend(name)
    return peer.device_op("gptq_marlin_repack")[0], peer.device_op("marlin_gemm")[0]


def bench_repack(timer: Timer, reps: int, peer=None) -> dict:
    size_k = size_n = 8192
    gen = torch.Generator(device="cuda").manual_seed(1)
    ckpt = torch.randint(0, 256, (size_n, size_k), dtype=torch.uint8, device="cuda", generator=gen)
    packed = ckpt.view(torch.int32).t().contiguous()                      # GPTQ-packed [K/4, N] (§2.2)
    marlin = kernels.gptq_marlin_repack(packed, None, size_k, size_n, 8)
    assert torch.equal(kernels.fp8_marlin_repack_from_checkpoint(ckpt), marlin), "fused path != repack"
    dst = torch.empty_like(packed)
    copy_us = timer(lambda: dst.copy_(packed), reps)
    repack_us = timer(lambda: kernels.gptq_marlin_repack(packed, None, size_k, size_n, 8), reps)
    fused_us = timer(lambda: kernels.fp8_marlin_repack_from_checkpoint(ckpt), reps)
    nbytes = packed.numel() * 4
    result = {"size_k": size_k, "size_n": size_n, "bytes": nbytes, "copy_us": copy_us, "repack_us": repack_us,
              "checkpoint_repack_us": fused_us, "repack_over_copy": repack_us / copy_us,
              "checkpoint_over_copy": fused_us / copy_us}
    if peer is not None:
        peer_repack = peer[0]
        assert torch.equal(peer_repack(packed, None, size_k, size_n, 8), marlin), "peer repack != ours"
        peer_us = timer(lambda: peer_repack(packed, None, size_k, size_n, 8), reps)
        result.update(peer_repack_us=peer_us, peer_repack_over_copy=peer_us / copy_us)
    return result


def time_gemm(timer: Timer, gemm, x, q_copies, scales, size_n, size_k, reps, graph_calls) -> tuple[float, float]:
    """(eager us, graph us per call) of gemm(x, qweight, scales, size_n=, size_k=)."""
    eager = timer(lambda: gemm(x, q_copies[0], scales, size_n=size_n, size_k=size_k), reps)
    graph = graph_time([(lambda q=q: gemm(x, q, scales, size_n=size_n, size_k=size_k))
                        for q in (q_copies * graph_calls)[:graph_calls]])
    return eager, graph


def bench_gemm(timer: Timer, copy_bw: float, reps: int, graph_calls: int, shapes, rows_list, schemes,
               peer=None) -> list:
    from marlin_fast import _ext

    ext = _ext.load()
    results = []
    dtype = torch.bfloat16
    gen = torch.Generator(device="cuda").manual_seed(2)
    for size_n, size_k in shapes:
        for scheme in schemes:
            qweight, scales, w_eff, w_deq = make_gemm_inputs(kernels, size_n, size_k, scheme, dtype, gen)
            weight_bytes = size_n * size_k
            q_copies = rotation(qweight)                                       # > L2 in graph replays
            d_copies = rotation(w_deq)
            for rows in rows_list:
                x = torch.randn((rows, size_k), device="cuda", generator=gen).to(dtype)
                checked = min(rows, 128)   # the timed call's config, checked on its first rows
                out = kernels.marlin_gemm(x, qweight, scales, size_n=size_n, size_k=size_k)
                ratio = check_against_reference(out[:checked], x[:checked], w_eff)
                marlin_us, marlin_graph = time_gemm(timer, kernels.marlin_gemm, x, q_copies, scales, size_n, size_k,
                                                    reps, graph_calls)
                cublas_us = timer(lambda: F.linear(x, w_deq), reps)
                cublas_graph = graph_time([(lambda w=w: F.linear(x, w)) for w in (d_copies * graph_calls)[:graph_calls]])
                floor_us = weight_bytes / copy_bw * 1e6
                row = {
                    "N": size_n, "K": size_k, "M": rows, "scheme": scheme, "dtype": "bfloat16",
                    "config": ext.gemm_dense_config(rows, size_n, size_k),   # ours: 6 = wgmma, else mma.sync
                    "check_err_over_bound": ratio, "check_ok": ratio <= 1.0,
                    "marlin_us": marlin_us, "cublas_us": cublas_us,
                    "marlin_graph_us": marlin_graph, "cublas_graph_us": cublas_graph,
                    "fp8_read_floor_us": floor_us,
                    "speedup_vs_cublas": cublas_us / marlin_us,
                    "weight_read_fraction_of_copy_bw": floor_us / marlin_us,
                    "graph_weight_read_fraction_of_copy_bw": floor_us / marlin_graph,
                    "marlin_tflops": 2 * rows * size_n * size_k / (marlin_us * 1e-6) / 1e12,
                    "cublas_tflops": 2 * rows * size_n * size_k / (cublas_us * 1e-6) / 1e12,
                }
                if peer is not None:
                    peer_ratio = check_against_reference(
                        peer[1](x, qweight, scales, size_n=size_n, size_k=size_k)[:checked], x[:checked], w_eff)
                    peer_us, peer_graph = time_gemm(timer, peer[1], x, q_copies, scales, size_n, size_k, reps,
                                                    graph_calls)
                    row.update(peer_check_err_over_bound=peer_ratio, peer_check_ok=peer_ratio <= 1.0,
                               peer_us=peer_us, peer_graph_us=peer_graph, ours_over_peer=marlin_us / peer_us,
                               graph_ours_over_peer=marlin_graph / peer_graph,
                               peer_graph_weight_read_fraction_of_copy_bw=floor_us / peer_graph)
                    print(f"    peer {peer_us:8.1f} us (graph {peer_graph:7.1f})  ours/peer {marlin_us / peer_us:4.2f} "
                          f"(graph {marlin_graph / peer_graph:4.2f})  check {peer_ratio:.2f}", flush=True)
                results.append(row)
                print(f"N={size_n:5d} K={size_k:5d} M={rows:4d} {scheme:8s} marlin {marlin_us:8.1f} us "
                      f"(graph {marlin_graph:7.1f})  cublas {cublas_us:8.1f} (graph {cublas_graph:7.1f})  "
                      f"floor {floor_us:6.1f}  x{cublas_us / marlin_us:4.2f}  check {ratio:.2f}", flush=True)
            del q_copies, d_copies
            torch.cuda.empty_cache()
    return results


def environment(args) -> dict:
    props = torch.cuda.get_device_properties(0)
    return {
        "device": torch.cuda.get_device_name(0), "sms": props.multi_processor_count,
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "commit": args.commit, "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def markdown(env: dict, copy: dict, repack: dict, gemm: list) -> str:
    lines = [
        "# GPU benchmark: marlin_fast CUDA kernels", "",
        f"Device {env['device']} ({env['sms']} SMs), torch {env['torch']}, CUDA {env['cuda']}, "
        f"commit {env['commit']}, {env['date']}. Command: `{env['command']}`.", "",
        f"Device copy bandwidth (1 GiB, read + write): **{copy['bytes_per_s'] / 1e12:.3f} TB/s**.", "",
        "## Repack, 8192 x 8192 fp8 (64 MiB in, 64 MiB out)", "",
        "| op | us | / device copy of the same bytes |", "|---|---|---|",
        f"| device copy | {repack['copy_us']:.1f} | 1.00 |",
        f"| gptq_marlin_repack | {repack['repack_us']:.1f} | {repack['repack_over_copy']:.2f} |",
        f"| fp8_marlin_repack_from_checkpoint | {repack['checkpoint_repack_us']:.1f} | "
        f"{repack['checkpoint_over_copy']:.2f} |",
        *([f"| peer gptq_marlin_repack | {repack['peer_repack_us']:.1f} | {repack['peer_repack_over_copy']:.2f} |"]
          if "peer_repack_us" in repack else []), "",
        "## GEMM, bf16 activations (median us, L2 flushed; graph = back-to-back calls in a CUDA graph)", "",
        "| N x K | M | scales | Marlin | Marlin graph | cuBLAS bf16 | cuBLAS graph | fp8 floor | "
        "cuBLAS / Marlin | floor / Marlin | Marlin TFLOP/s | check |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in gemm:
        lines.append(
            f"| {r['N']}x{r['K']} | {r['M']} | {r['scheme']} | {r['marlin_us']:.1f} | {r['marlin_graph_us']:.1f} | "
            f"{r['cublas_us']:.1f} | {r['cublas_graph_us']:.1f} | {r['fp8_read_floor_us']:.1f} | "
            f"{r['speedup_vs_cublas']:.2f} | {r['weight_read_fraction_of_copy_bw']:.2f} | {r['marlin_tflops']:.0f} | "
            f"{'ok' if r['check_ok'] else 'FAIL'} ({r['check_err_over_bound']:.2f}) |")
    peered = [r for r in gemm if "peer_us" in r]
    if peered:
        lines += ["", "## Against the peer (same tensors, same process; ours / peer: above 1 = ours slower)", "",
                  "| N x K | M | scales | ours | peer | ours / peer | ours graph | peer graph | ours / peer graph | "
                  "peer floor / graph | peer check |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in peered:
            lines.append(
                f"| {r['N']}x{r['K']} | {r['M']} | {r['scheme']} | {r['marlin_us']:.1f} | {r['peer_us']:.1f} | "
                f"{r['ours_over_peer']:.2f} | {r['marlin_graph_us']:.1f} | {r['peer_graph_us']:.1f} | "
                f"{r['graph_ours_over_peer']:.2f} | {r['peer_graph_weight_read_fraction_of_copy_bw']:.2f} | "
                f"{'ok' if r['peer_check_ok'] else 'FAIL'} ({r['peer_check_err_over_bound']:.2f}) |")
    return "\n".join(lines) + "\n"


def plot(gemm: list, path: str) -> None:
    """Median time against M per shape: ours, cuBLAS, the peer when the rows carry it, and the fp8 read floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = sorted({(r["N"], r["K"]) for r in gemm})
    fig, axes = plt.subplots(1, len(shapes), figsize=(4.5 * len(shapes), 4), squeeze=False)
    for ax, (n, k) in zip(axes[0], shapes):
        for scheme, style in (("channel", "-"), ("group128", "--")):
            rs = [r for r in gemm if (r["N"], r["K"]) == (n, k) and r["scheme"] == scheme]
            if not rs:
                continue
            ms = [r["M"] for r in rs]
            ax.plot(ms, [r["marlin_us"] for r in rs], "o" + style, color="C0", label=f"Marlin {scheme}")
            ax.plot(ms, [r["cublas_us"] for r in rs], "s" + style, color="C1", label=f"cuBLAS bf16 ({scheme} W)")
            if all("peer_us" in r for r in rs):   # --peer-load: the peer's column
                ax.plot(ms, [r["peer_us"] for r in rs], "^" + style, color="C2", label=f"peer {scheme}")
        rs = [r for r in gemm if (r["N"], r["K"]) == (n, k)]
        ax.axhline(rs[0]["fp8_read_floor_us"], color="gray", ls=":", label="fp8 weight-read floor")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("M")
        ax.set_ylabel("us (median, L2 flushed)")
        ax.set_title(f"N={n}, K={k}")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--graph-calls", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="two shapes, M in {1, 16, 1024}")
    parser.add_argument("--commit", default=os.environ.get("MARLIN_COMMIT", "unknown"))
    parser.add_argument("--peer-load", default=None, metavar="PATH",
                        help="a peer Marlin library to time beside ours (loaded as --marlin-load does)")
    parser.add_argument("--peer-backend", default=PEER_BACKEND, metavar="NAME",
                        help=f"the seam's name of the peer (default: {PEER_BACKEND})")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw OUT/bench_gpu.png from OUT/bench_gpu.json (no GPU needed)")
    args = parser.parse_args(argv)
    if args.replot:
        try:
            with open(os.path.join(args.out, "bench_gpu.json")) as f:
                gemm = json.load(f)["gemm"]
        except (OSError, ValueError, KeyError) as exc:
            parser.error(f"--replot: cannot read {args.out}/bench_gpu.json: {exc}")
        plot(gemm, os.path.join(args.out, "bench_gpu.png"))
        return 0
    try:
        peer = load_peer(args.peer_load, args.peer_backend)
    except Exception as exc:     # a library that does not exist or load, a name the seam cannot resolve: one line
        parser.error(f"--peer-load {args.peer_load} / --peer-backend {args.peer_backend}: {exc}")
    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    env = environment(args)
    timer = Timer()
    copy = copy_bandwidth(timer)
    print(f"device copy: {copy['bytes_per_s'] / 1e12:.3f} TB/s", flush=True)
    repack = bench_repack(timer, args.reps, peer)
    print(f"repack 8192x8192: {repack['repack_us']:.1f} us, checkpoint {repack['checkpoint_repack_us']:.1f} us, "
          f"copy {repack['copy_us']:.1f} us -> x{repack['repack_over_copy']:.2f} / x{repack['checkpoint_over_copy']:.2f}",
          flush=True)
    shapes = SHAPES[:2] if args.quick else SHAPES
    rows = [1, 16, 1024] if args.quick else ROWS
    gemm = bench_gemm(timer, copy["bytes_per_s"], args.reps, args.graph_calls, shapes, rows, SCHEMES, peer)
    result = {"environment": env, "copy": copy, "repack": repack, "gemm": gemm}
    with open(os.path.join(args.out, "bench_gpu.json"), "w") as f:
        json.dump(result, f, indent=1)
    md = markdown(env, copy, repack, gemm)
    with open(os.path.join(args.out, "bench_gpu.md"), "w") as f:
        f.write(md)
    try:
        plot(gemm, os.path.join(args.out, "bench_gpu.png"))
    except ImportError as exc:
        print(f"no plot: {exc}")
    print(md)
    return 0 if all(r["check_ok"] and r.get("peer_check_ok", True) for r in gemm) else 1


if __name__ == "__main__":
    sys.exit(main())
