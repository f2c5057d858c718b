"""The layout debugger (`python -m marlin_ref`) and the mismatch explanation (properties.strength.diagnose), on real
outputs of the fast path reached through the backend seam. Expectations come from the inputs and the
spec's worked examples (§2.3.4), never from the debugger itself."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from marlin_ref.__main__ import main
from properties.reporting import report
from properties.seam.backends import get_backend, to_torch
from properties.strength.diagnose import explain_mismatch
from properties.cases.transforms import gptq_pack

BF16 = np.dtype(ml_dtypes.bfloat16)
E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)


@pytest.fixture(scope="module")
def fast():
    return get_backend("torch")


def _run(capsys, *argv) -> str:
    assert main([str(a) for a in argv]) == 0
    return capsys.readouterr().out


def _codes(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --- locate ----------------------------------------------------------------------------------------

def test_locate_spec_worked_example(capsys):
    # §2.3.4: (7, 5) -> row 0, int32 column 184, byte 2; lane t = 4*c8 + q = 4*5 + 3 = 23, register 0 hi.
    out = _run(capsys, "locate", "--k", 7, "--n", 5)
    assert "row 0, word 184, byte 2" in out
    assert "lane 23 (group id 5, thread-in-group 3), B register 0, high half" in out
    assert "word [1, 5] byte 3" in out          # GPTQ: k = 4r + j -> r = 1, j = 3 (§2.1)


@pytest.mark.parametrize("num_bits, k, n", [(8, 0, 0), (8, 9, 0), (8, 31, 127), (8, 18, 77), (4, 9, 8), (4, 30, 100)])
def test_locate_matches_the_fast_path(capsys, fast, num_bits, k, n):
    # Plant one value at (k, n), repack on the fast path: the only changed byte/nibble is where locate says.
    size_k, size_n = 32, 128
    values = np.zeros((size_k, size_n), np.uint8)
    values[k, n] = 0x5 if num_bits == 4 else 0x38
    marlin = fast.gptq_marlin_repack(b_q_weight=gptq_pack(values, num_bits), perm=None, size_k=size_k,
                                     size_n=size_n, num_bits=num_bits)
    raw = marlin.reshape(-1).view(np.uint8)
    slots = raw if num_bits == 8 else np.stack([raw & 0xF, raw >> 4], axis=1).reshape(-1)
    (where,) = np.flatnonzero(slots)
    out = _run(capsys, "locate", "--k", k, "--n", n, "--size-n", size_n, "--num-bits", num_bits)
    assert re.search(r"flat (byte|nibble) offset (\d+)", out).group(2) == str(where)


def test_locate_expert_needs_size_k(capsys):
    assert main(["locate", "--k", "1", "--n", "1", "--expert", "2"]) == 2
    assert "--expert=2 needs --size-k" in capsys.readouterr().err


# --- unrepack --------------------------------------------------------------------------------------

def _write_safetensors(path, arrays: dict) -> None:
    """A hand-made safetensors file (8-byte header size, JSON header, raw bytes) for the reader."""
    names = {np.dtype(np.int32): "I32", BF16: "BF16", np.dtype(np.uint8): "U8"}
    header, blob = {}, b""
    for name, a in arrays.items():
        header[name] = {"dtype": names[a.dtype], "shape": list(a.shape),
                        "data_offsets": [len(blob), len(blob) + a.nbytes]}
        blob += np.ascontiguousarray(a).tobytes()
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + blob)


@pytest.mark.parametrize("fmt", ["npy", "pt", "safetensors"])
def test_unrepack_dense_layer_of_the_fast_path(tmp_path, capsys, fast, fmt):
    # prepare_fp8_layer_for_marlin on the fast path, saved, then unrepacked: the logical weight is the
    # input weight and the logical scales are the input scales rounded to bf16 (§2.8 step 4).
    size_k, size_n = 256, 128
    weight = _codes((size_k, size_n), 1)
    scale = np.random.default_rng(2).uniform(1e-3, 1e-1, size_n).astype(np.float32)
    layer = fast.prepare_fp8_layer_for_marlin(weight=weight.view(E4M3), weight_scale=scale, orig_dtype="bfloat16")
    w_path, s_path = tmp_path / f"w.{fmt}", tmp_path / f"s.{fmt}"
    if fmt == "npy":
        np.save(w_path, layer.qweight)
        np.save(s_path, layer.scales)                    # bf16 goes to .npy as raw 2-byte values
        extra = ["--dtype", "bf16"]
    elif fmt == "pt":
        torch = pytest.importorskip("torch")
        torch.save(to_torch(layer.qweight), w_path)
        torch.save({"scales": to_torch(layer.scales)}, s_path)
        extra = []
    else:
        _write_safetensors(w_path, {"qweight": layer.qweight})
        _write_safetensors(s_path, {"scales": layer.scales})
        extra = []
    out_path = tmp_path / "logical.npz"
    text = _run(capsys, "unrepack", w_path, "--scales", s_path, "--size-k", size_k, "--size-n", size_n,
                "--out", out_path, *extra)
    assert "logical float8_e4m3fn[256, 128]" in text
    with np.load(out_path) as z:
        assert np.array_equal(z["weight"], weight)
        assert np.array_equal(z["scales"], scale.astype(BF16).astype(np.float32)[None, :])


def test_unrepack_moe_and_mx_scales_of_the_fast_path(tmp_path, capsys, fast):
    # MXFP8 MoE (aligned, no padding): stacked w13 [E, k/16, 8n] unrepacks to w13ᵀ per expert, and the
    # e8m0 scales to 2^(b - 127) at [E, k/32, 2n] (the checkpoint's [E, 2n, k/32] transposed, §2.10).
    e, k, n = 2, 128, 64
    w13, w2 = _codes((e, 2 * n, k), 3), _codes((e, k, n), 4)
    s13 = np.random.default_rng(5).integers(100, 150, (e, 2 * n, k // 32), dtype=np.uint8)
    s2 = np.random.default_rng(6).integers(100, 150, (e, k, n // 32), dtype=np.uint8)
    moe = fast.prepare_mxfp8_moe_layer_for_marlin(w13=w13.view(E4M3), w2=w2.view(E4M3), w13_scale=s13,
                                                  w2_scale=s2, intermediate_dtype="bfloat16")
    np.save(tmp_path / "w13.npy", moe.w13_qweight)
    np.save(tmp_path / "s13.npy", moe.w13_scales.view(np.uint8))
    _run(capsys, "unrepack", tmp_path / "w13.npy", "--scales", tmp_path / "s13.npy", "--size-k", k,
         "--size-n", 2 * n, "--out", tmp_path / "out.npz")
    with np.load(tmp_path / "out.npz") as z:
        assert np.array_equal(z["weight"], w13.transpose(0, 2, 1))
        assert np.array_equal(z["scales"], np.ldexp(1.0, s13.transpose(0, 2, 1).astype(int) - 127).astype(np.float32))


@pytest.mark.parametrize("suffix", ["pt", "safetensors", "npy"])
def test_unrepack_writes_each_output_format(tmp_path, capsys, fast, suffix):
    # The logical weight comes back as fp8 (torch.float8_e4m3fn / F8_E4M3) or uint8 codes (.npy).
    weight = _codes((128, 64), 15)
    layer = fast.prepare_fp8_layer_for_marlin(weight=weight.view(E4M3), weight_scale=np.array(0.5, np.float32),
                                              orig_dtype="float16")
    np.save(tmp_path / "w.npy", layer.qweight)
    np.save(tmp_path / "s.npy", layer.scales)
    out = tmp_path / f"out.{suffix}"
    _run(capsys, "unrepack", tmp_path / "w.npy", "--scales", tmp_path / "s.npy", "--size-k", 128, "--size-n", 64,
         "--out", out)
    if suffix == "pt":
        torch = pytest.importorskip("torch")
        saved = torch.load(out, weights_only=True)
        assert saved["weight"].dtype == torch.float8_e4m3fn
        assert np.array_equal(saved["weight"].view(torch.uint8).numpy(), weight)
        assert saved["scales"].dtype == torch.float16 and bool((saved["scales"] == 0.5).all())
    elif suffix == "safetensors":
        raw = out.read_bytes()
        (length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + length])
        assert header["weight"]["dtype"] == "F8_E4M3" and header["weight"]["shape"] == [128, 64]
        begin, end = header["weight"]["data_offsets"]
        assert raw[8 + length + begin:8 + length + end] == weight.tobytes()
    else:
        assert np.array_equal(np.load(out), weight)
        assert np.array_equal(np.load(tmp_path / "out.scales.npy"), np.full((1, 64), 0.5, np.float16))


def test_unrepack_needs_dtype_for_raw_bf16(tmp_path, capsys, fast):
    layer = fast.prepare_fp8_layer_for_marlin(weight=_codes((128, 64)).view(E4M3),
                                              weight_scale=np.array(0.5, np.float32),
                                              orig_dtype="bfloat16")
    np.save(tmp_path / "w.npy", layer.qweight)
    np.save(tmp_path / "s.npy", layer.scales)
    argv = ["unrepack", str(tmp_path / "w.npy"), "--scales", str(tmp_path / "s.npy"),
            "--size-k", "128", "--size-n", "64"]
    assert main(argv) == 2
    assert "pass --dtype bf16" in capsys.readouterr().err
    assert main(["unrepack", str(tmp_path / "missing.npy"), "--size-k", "128", "--size-n", "64"]) == 2
    assert "no such file" in capsys.readouterr().err


# --- show-tile and the module entry --------------------------------------------------------------

def test_show_tile(capsys):
    # The style guide's table: k=0 n=0..3 -> T0:0 T4:0 T8:0 T12:0; k=8 -> register 1 lo (element 2).
    out = _run(capsys, "show-tile")
    assert re.search(r"k=0\s+T0:0\s+T4:0\s+T8:0\s+T12:0", out)
    assert re.search(r"k=8\s+T0:2\s+T4:2", out)
    out4 = _run(capsys, "show-tile", "--num-bits", 4, "--cell", "storage", "--k", 9, "--n", 0, 8)
    assert re.search(r"k=9\s+0\.5\s+0\.7", out4)     # §2.3.4: (9, 0) -> nibble 5; (9, 8) -> h=1: nibble 7


def test_module_entry_runs_without_torch():
    code = ("import runpy, sys; sys.argv = ['marlin_ref', 'show-tile']; "
            "runpy.run_module('marlin_ref', run_name='__main__', alter_sys=True)")
    probe = "import sys, marlin_ref.debugger, marlin_ref.__main__; print('torch' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "False"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "T0:0" in done.stdout


# --- explain_mismatch ------------------------------------------------------------------------------

def _repack_both(name, fast, size_k=32, size_n=128):
    kwargs = {"b_q_weight": gptq_pack(_codes((size_k, size_n), 7)), "perm": None, "size_k": size_k,
              "size_n": size_n, "num_bits": 8}
    return get_backend(f"mutant:{name}").gptq_marlin_repack(**kwargs), fast.gptq_marlin_repack(**kwargs)


@pytest.mark.parametrize("name", ["interleave8_identity", "word_index_warp_major", "row_set_consecutive",
                                  "tile_order_n_reversed", "tile_order_k_major"])
def test_explain_names_the_layout_mutant(fast, name):
    got, want = _repack_both(name, fast)
    explanation = explain_mismatch(got, want, layout=report.MarlinWeight(32, 128))
    assert explanation is not None and explanation.startswith(f"matches mutant {name}:")


def test_explain_names_pack_scale_and_bias_mutants(fast):
    fp8 = _codes((64, 64), 8).view(E4M3)
    got = get_backend("mutant:pack_big_endian").pack_fp8_to_int32(fp8=fp8, size_k_first=True)
    want = fast.pack_fp8_to_int32(fp8=fp8, size_k_first=True)
    assert "pack_big_endian" in explain_mismatch(got, want, layout=report.GptqWords(8))

    s = np.random.default_rng(9).uniform(0.01, 1, (1, 128)).astype(np.float16)
    args = {"s": s, "size_k": 256, "size_n": 128, "group_size": -1}
    got = get_backend("mutant:scale_perm_swapped").marlin_permute_scales(**args)
    want = fast.marlin_permute_scales(**args)
    assert "scale_perm_swapped" in explain_mismatch(got, want, layout=report.Scales(grouped=False))

    bias = np.random.default_rng(10).uniform(-1, 1, 128).astype(np.float16)
    got = get_backend("mutant:bias_not_permuted").marlin_permute_bias(bias=bias)
    want = fast.marlin_permute_bias(bias=bias)
    assert "bias_not_permuted" in explain_mismatch(got, want, layout=report.Scales(grouped=False, kind="bias"))

    layer_args = {"weight": _codes((128, 64)).view(E4M3), "weight_scale": np.array(0.25, np.float32),
                  "orig_dtype": "float16"}
    got = get_backend("mutant:exponent_bias_doubled").prepare_fp8_layer_for_marlin(**layer_args).scales
    want = fast.prepare_fp8_layer_for_marlin(**layer_args).scales
    assert "exponent_bias_doubled" in explain_mismatch(got, want, layout=report.Scales(grouped=False))


def test_explain_names_mx_and_moe_mutants(fast):
    e, k, n = 2, 128, 64
    args = {"w13": _codes((e, 2 * n, k), 11).view(E4M3), "w2": _codes((e, k, n), 12).view(E4M3),
            "w13_scale": np.random.default_rng(13).integers(110, 140, (e, 2 * n, k // 32), dtype=np.uint8),
            "w2_scale": np.random.default_rng(14).integers(110, 140, (e, k, n // 32), dtype=np.uint8)}
    want = fast.prepare_mxfp8_moe_layer_for_marlin(**args)
    got = get_backend("mutant:mx_reorder_missing").prepare_mxfp8_moe_layer_for_marlin(**args)
    assert "mx_reorder_missing" in explain_mismatch(got.w13_scales, want.w13_scales,
                                                    layout=report.Scales(grouped=True, mx=True))
    got = get_backend("mutant:moe_experts_rolled").prepare_mxfp8_moe_layer_for_marlin(**args)
    assert "moe_experts_rolled" in explain_mismatch(got.w13_qweight, want.w13_qweight,
                                                    layout=report.MarlinWeight(k, 2 * n, experts=True))


def test_explain_names_nothing_for_unrelated_damage(fast):
    # A single flipped byte, or an equal pair, matches no mutant pattern.
    _, want = _repack_both("interleave8_identity", fast)
    damaged = want.copy()
    damaged.reshape(-1).view(np.uint8)[5] ^= 0xFF
    assert explain_mismatch(damaged, want, layout=report.MarlinWeight(32, 128)) is None
    assert explain_mismatch(want, want, layout=report.MarlinWeight(32, 128)) is None
