"""The bad-input battery, part 3: `python -m marlin_ref` (locate, unrepack, show-tile) on bad options and files.

Every case runs the real command in a subprocess and must exit with status 2, print nothing on stdout and
exactly one line on stderr (no traceback) that matches the case's regex; files are read without pickle.
`{d}` in a case's arguments is the directory holding the files of `bad_files`.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

from marlin_ref.__main__ import parser

W = "--size-k 16 --size-n 64"          # a valid weight for these sizes is int32 [1, 256]

CLI_CASES = [
    # locate: ranges locate() alone cannot know (§2.14)
    ("locate --k 1 --n 1 --expert -1 --size-k 16", r"--expert=-1 must be >= 0"),
    ("locate --k 20 --n 1 --size-k 16", r"--k=20 must be < --size-k=16"),
    ("locate --k 16 --n 1 --expert 0 --size-k 16", r"--k=16 must be < --size-k=16"),
    ("locate --k -1 --n 1", r"--k=-1 .* must be >= 0"),
    ("locate --k 1 --n -1", r"--n=-1 must be >= 0"),
    ("locate --k 1 --n 64 --size-n 64", r"--n=64 must be < --size-n=64"),
    ("locate --k 1 --n 1 --size-n 96", r"--size-n=96 must be a positive multiple of 64"),
    ("locate --k 1 --n 1 --size-n 0", r"--size-n=0 must be a positive multiple of 64"),
    ("locate --k 1 --n 1 --expert 0 --size-k 20", r"--size-k=20 must be a positive multiple of 16"),
    ("locate --k 1 --n 1 --size-k 0", r"--size-k=0 must be a positive multiple of 16"),
    ("locate --k 1 --n 1 --expert 2", r"--expert=2 needs --size-k"),
    ("locate --k abc --n 1", r"argument --k: invalid int value: 'abc'"),
    ("locate --k 1 --n 1 --num-bits 16", r"argument --num-bits: invalid choice"),
    ("locate --k 1", r"the following arguments are required: --n"),
    # unrepack: options
    (f"unrepack {{d}}/w.npy --size-k 100 --size-n 64", r"--size-k=100 must be a positive multiple of 16"),
    (f"unrepack {{d}}/w.npy --size-k -16 --size-n 64", r"--size-k=-16 must be a positive multiple of 16"),
    (f"unrepack {{d}}/w.npy --size-k 16 --size-n 96", r"--size-n=96 must be a positive multiple of 64"),
    (f"unrepack {{d}}/w.npy {W} --num-bits 3", r"argument --num-bits: invalid choice"),
    (f"unrepack {{d}}/w.npy {W} --dtype fp8", r"argument --dtype: invalid choice"),
    (f"unrepack {{d}}/w.npy {W} --out {{d}}/x.txt", r"--out .*x\.txt: unsupported suffix '\.txt'"),
    (f"unrepack {{d}}/w.npy {W} --out {{d}}/x", r"--out .*x: unsupported suffix ''"),
    (f"unrepack {{d}}/w.npy {W} --out {{d}}/sub.npz", r"--out .*sub\.npz: is a directory"),
    (f"unrepack {{d}}/w.npy {W} --out {{d}}/missing/x.npz", r"directory .*missing does not exist"),
    ("unrepack --size-k 16 --size-n 64", r"the following arguments are required: weight"),
    # unrepack: the weight file
    (f"unrepack {{d}}/w_f32.npy {W}", r"must hold int32 words, got dtype float32"),
    (f"unrepack {{d}}/w_u32.npy {W}", r"must hold int32 words, got dtype uint32"),
    (f"unrepack {{d}}/w_shape.npy {W}", r"Marlin weight must be \[K/16, 4N\] = \(1, 256\).*got shape \(2, 256\)"),
    (f"unrepack {{d}}/w_4d.npy {W}", r"got shape \(1, 1, 1, 256\)"),
    (f"unrepack {{d}}/w_1d.npy {W}", r"got shape \(256,\)"),
    (f"unrepack {{d}}/w.npy --size-k 32 --size-n 64", r"got shape \(1, 256\)"),
    (f"unrepack {{d}}/nothing.npy {W}", r"nothing\.npy: no such file"),
    (f"unrepack {{d}}/sub.npz {W}", r"sub\.npz: is a directory"),
    (f"unrepack {{d}}/w.txt {W}", r"w\.txt: unknown file type '\.txt'"),
    (f"unrepack {{d}}/corrupt.npy {W}", r"corrupt\.npy: not a readable \.npy/\.npz file"),
    (f"unrepack {{d}}/truncated.npy {W}", r"truncated\.npy: not a readable \.npy/\.npz file"),
    (f"unrepack {{d}}/pickled.npy {W}", r"pickled\.npy: holds pickled Python objects, which this tool never loads"),
    (f"unrepack {{d}}/raw_pickle.npy {W}", r"raw_pickle\.npy: is a pickle, which this tool never loads"),
    (f"unrepack {{d}}/corrupt.npz {W}", r"corrupt\.npz: not a readable \.npy/\.npz file"),
    (f"unrepack {{d}}/two.npz {W}", r"two\.npz: holds 2 tensors \['a', 'b'\]; name one with --key"),
    (f"unrepack {{d}}/two.npz {W} --key c", r"two\.npz: no tensor named 'c' \(has \['a', 'b'\]\)"),
    (f"unrepack {{d}}/corrupt.safetensors {W}", r"corrupt\.safetensors: not a valid \.safetensors file"),
    (f"unrepack {{d}}/offsets.safetensors {W}", r"offsets\.safetensors: tensor 'w' has data offsets .* outside"),
    (f"unrepack {{d}}/corrupt.pt {W}", r"corrupt\.pt: not a loadable \.pt file"),
    (f"unrepack {{d}}/list.pt {W}", r"list\.pt: holds a list, not a tensor"),
    (f"unrepack {{d}}/unreadable.npy {W}", r"unreadable\.npy: cannot read \(Permission denied\)"),
    # unrepack: the scales file
    (f"unrepack {{d}}/w.npy {W} --scales {{d}}/s_f32.npy", r"cannot tell the scale format from dtype float32"),
    (f"unrepack {{d}}/w.npy {W} --scales {{d}}/s_f16.npy --dtype bf16",
     r"scales of dtype float16 cannot be read as --dtype bf16"),
    (f"unrepack {{d}}/w.npy {W} --scales {{d}}/s_n32.npy",
     r"scales must be \[G, N\] .*--size-n 64, got shape \(1, 32\)"),
    (f"unrepack {{d}}/w128.npy --size-k 128 --size-n 64 --scales {{d}}/s_g3.npy", r"G=3 rows give group_size = 128/3"),
    (f"unrepack {{d}}/w128.npy --size-k 128 --size-n 64 --scales {{d}}/s_e8m0_g1.npy",
     r"e8m0 scales must have G = size_k/32 = 4"),
    (f"unrepack {{d}}/w.npy {W} --scales {{d}}/nothing.npy", r"nothing\.npy: no such file"),
    # show-tile
    ("show-tile --k 16", r"show_tile: k=16 must be in \[0, 16\)"),
    ("show-tile --n 64", r"show_tile: n=64 must be in \[0, 64\)"),
    ("show-tile --n -1", r"show_tile: n=-1 must be in \[0, 64\)"),
    ("show-tile --cell bytes", r"argument --cell: invalid choice"),
    ("show-tile --num-bits 5", r"argument --num-bits: invalid choice"),
    ("show-tile --k x", r"argument --k: invalid int value: 'x'"),
    # no or an unknown subcommand
    ("", r"the following arguments are required: command"),
    ("bogus", r"argument command: invalid choice: 'bogus'"),
]


def _safetensors(path, header: dict, blob: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + blob)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_files")
    np.save(d / "w.npy", np.zeros((1, 256), np.int32))
    np.save(d / "w128.npy", np.zeros((8, 256), np.int32))
    for name, a in {"w_f32": np.zeros((1, 256), np.float32), "w_u32": np.zeros((1, 256), np.uint32),
                    "w_shape": np.zeros((2, 256), np.int32), "w_4d": np.zeros((1, 1, 1, 256), np.int32),
                    "w_1d": np.zeros(256, np.int32), "s_f32": np.ones((1, 64), np.float32),
                    "s_f16": np.ones((1, 64), np.float16), "s_n32": np.ones((1, 32), np.float16),
                    "s_g3": np.ones((3, 64), np.float16), "s_e8m0_g1": np.full((1, 64), 127, np.uint8)}.items():
        np.save(d / f"{name}.npy", a)
    (d / "sub.npz").mkdir()
    (d / "w.txt").write_text("0 1 2\n")
    (d / "corrupt.npy").write_bytes(b"this is not a numpy file at all")
    (d / "truncated.npy").write_bytes((d / "w128.npy").read_bytes()[:200])
    np.save(d / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "raw_pickle.npy").write_bytes(pickle.dumps({"w": 1}))
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04 broken zip")
    np.savez(d / "two.npz", a=np.zeros((1, 256), np.int32), b=np.zeros((1, 256), np.int32))
    (d / "corrupt.safetensors").write_bytes(b"\xff" * 7)
    _safetensors(d / "offsets.safetensors", {"w": {"dtype": "I32", "shape": [1, 256], "data_offsets": [0, 1024]}},
                 b"\0" * 16)
    (d / "corrupt.pt").write_bytes(b"not a torch file")
    torch = pytest.importorskip("torch")
    torch.save({"w": [1, 2, 3]}, d / "list.pt")
    unreadable = d / "unreadable.npy"
    np.save(unreadable, np.zeros((1, 256), np.int32))
    unreadable.chmod(0)
    return d


def _run(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marlin_ref", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("argv, match", CLI_CASES, ids=[a or "(none)" for a, _ in CLI_CASES])
def test_cli_rejects_bad_input_in_one_line(bad_files, argv, match):
    if "unreadable" in argv and os.access(bad_files / "unreadable.npy", os.R_OK):
        pytest.skip("running as a user that can read a mode-000 file (root)")
    done = _run(argv.format(d=bad_files).split(), bad_files)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("python -m marlin_ref"), lines[0]
    assert re.search(match, lines[0]), f"{match!r} not in {lines[0]!r}"


def test_every_subcommand_has_cases():
    # Adding a subcommand without battery cases fails here.
    (sub,) = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    covered = {argv.split()[0] for argv, _ in CLI_CASES if argv}
    assert set(sub.choices) - covered == set()


def test_out_writes_exactly_the_path_it_reports(bad_files, tmp_path):
    # .npy: the first array at PATH itself, the others at PATH.<name>.npy; nothing else is written.
    np.save(tmp_path / "s.npy", np.ones((1, 64), np.float16))
    out = tmp_path / "logical.npy"
    done = _run(["unrepack", str(bad_files / "w.npy"), *W.split(), "--scales", str(tmp_path / "s.npy"),
                 "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr
    written = re.search(r"wrote (.*?)(?: \(|$)", done.stdout, re.M).group(1).split(", ")
    assert written == [str(out), str(tmp_path / "logical.scales.npy")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logical.npy", "logical.scales.npy", "s.npy"]


def test_big_endian_weight_is_read_by_value(tmp_path):
    # A .npy written on a big-endian machine loads as >i4: the same words, converted, not refused.
    words = np.arange(256, dtype=np.int32).reshape(1, 256)
    np.save(tmp_path / "le.npy", words)
    np.save(tmp_path / "be.npy", words.astype(">i4"))
    outs = [_run(["unrepack", str(tmp_path / f), *W.split(), "--out", str(tmp_path / f"{f}.npz")], tmp_path)
            for f in ("le.npy", "be.npy")]
    assert [o.returncode for o in outs] == [0, 0]
    with np.load(tmp_path / "le.npy.npz") as le, np.load(tmp_path / "be.npy.npz") as be:
        assert np.array_equal(le["weight"], be["weight"])
