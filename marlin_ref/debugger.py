"""The layout debugger behind `python -m marlin_ref` (NumPy only; torch is imported lazily for .pt).

    locate      where a logical (expert, k, n) lands in the GPTQ-packed and Marlin tensors and in the
                scale grids, and which lane/register reads it (§2.1, §2.3.1, §2.4, §2.7, §2.14)
    unrepack    a saved Marlin weight (and scales) back to the logical fp8 weight [K, N] and logical scales
    show-tile   the lane:register map of a 16x64 tile (layout.show_tile)

    >>> print(describe_location(7, 5, size_n=64))                  # §2.3.4: (7, 5)
    W[k=7, n=5] (size_n=64, 8-bit)
      GPTQ-packed int32[K/4, N]: word [1, 5] byte 3
      Marlin int32[K/16, 4N]:    row 0, word 184, byte 2 (flat byte offset 738)
      tile: k-tile 0, n-tile 0; block j=0, n8 half h=0
      read by lane 23 (group id 5, thread-in-group 3), B register 0, high half (fragment element 1)
      lane 23 loads words 184..191 of row 0 (two 16-byte loads)
      scales: channel-wise/bias (single) column 5 -> position 17 of [G, N]; grouped (group g = k // group_size) -> position 40; MXFP8 row 0 -> position 40
"""

from __future__ import annotations

import importlib
import json
import struct
import zipfile
from pathlib import Path

import numpy as np

from marlin_ref.formats import BF16, E4M3, E8M0, FP16
from marlin_ref.fp8_fused_exponent_bias_into_scales import fp8_unfuse_exponent_bias_from_scales
from marlin_ref.gptq_marlin_repack import gptq_marlin_unrepack
from marlin_ref.layout import MX_BLOCK, TILE_K, TILE_N, locate, locate_scale, pack_factor
from marlin_ref.marlin_permute_scales import marlin_unpermute_scales
from marlin_ref.mxfp8_marlin_process_scales import mxfp8_marlin_unprocess_scales
from marlin_ref.pack_fp8_to_int32 import unpack_fp8_from_int32

WORDS_PER_LANE = {8: 8, 4: 4}   # a lane's B operand of one tile: 32 values = 8 (8-bit) / 4 (4-bit) words
SCALE_DTYPES = {"bf16": BF16, "bfloat16": BF16, "fp16": FP16, "float16": FP16, "e8m0": E8M0}
# safetensors dtype names <-> NumPy dtypes with the same bytes; torch uses the NumPy/ml_dtypes names
_ST_DTYPES = {"I32": np.dtype(np.int32), "U8": np.dtype(np.uint8), "I16": np.dtype(np.int16),
              "I64": np.dtype(np.int64), "F16": FP16, "BF16": BF16, "F32": np.dtype(np.float32),
              "F8_E4M3": E4M3, "F8_E8M0": E8M0}
_ST_NAMES = {dtype: name for name, dtype in _ST_DTYPES.items()}
_TORCH_DTYPES = {dtype.name: dtype for dtype in _ST_DTYPES.values()}     # "bfloat16", "float8_e4m3fn", ...
LOAD_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".safetensors")
NPY_MAGIC, ZIP_MAGIC, PICKLE_MAGIC = b"\x93NUMPY", b"PK", b"\x80"   # first bytes of .npy, .npz, a pickle
SAVE_SUFFIXES = LOAD_SUFFIXES


class DebuggerError(ValueError):
    """A file or option the debugger cannot use; the message says which and why."""


# --- locate ----------------------------------------------------------------------------------------

def _check_location(k: int, n: int, size_n: int, expert: int | None, size_k: int | None) -> None:
    """The ranges `locate` cannot know: --k < --size-k when given, --expert >= 0 with --size-k (§2.14)."""
    if k < 0 or n < 0:
        raise DebuggerError(f"--k={k} and --n={n} must be >= 0")
    if size_n <= 0 or size_n % TILE_N != 0:
        raise DebuggerError(f"--size-n={size_n} must be a positive multiple of {TILE_N}")
    if n >= size_n:
        raise DebuggerError(f"--n={n} must be < --size-n={size_n}")
    if size_k is not None:
        if size_k <= 0 or size_k % TILE_K != 0:
            raise DebuggerError(f"--size-k={size_k} must be a positive multiple of {TILE_K}")
        if k >= size_k:
            raise DebuggerError(f"--k={k} must be < --size-k={size_k}")
    if expert is not None:
        if size_k is None:
            raise DebuggerError(f"--expert={expert} needs --size-k (the per-expert block size)")
        if expert < 0:
            raise DebuggerError(f"--expert={expert} must be >= 0")


def describe_location(k: int, n: int, *, size_n: int, num_bits: int = 8, expert: int | None = None,
                      size_k: int | None = None) -> str:
    """Every place logical W[k, n] (of expert `expert`) occupies, in words."""
    _check_location(k, n, size_n, expert, size_k)
    loc = locate(k, n, size_n=size_n, num_bits=num_bits)
    pf, unit = pack_factor(num_bits), ("byte" if num_bits == 8 else "nibble")
    words_per_row = size_n * TILE_K // pf
    q, c8 = loc.lane % 4, loc.lane // 4
    head = f"W[k={k}, n={n}]" if expert is None else f"expert {expert}: W[k={k}, n={n}]"
    where = (f"row {loc.row}, word {loc.word}, {unit} {loc.slot} (flat {unit} offset {loc.byte_offset})")
    lines = [f"{head} (size_n={size_n}, {num_bits}-bit)",
             f"  GPTQ-packed int32[K/{pf}, N]: word [{k // pf}, {n}] {unit} {k % pf}",
             f"  Marlin int32[K/16, {16 // pf}N]:    {where}"]
    if expert is not None:
        rows = size_k // TILE_K
        lines.append(f"  stacked [E, K/16, {16 // pf}N]: [{expert}, {loc.row}, {loc.word}] = flat int32 word "
                     f"{(expert * rows + loc.row) * words_per_row + loc.word}")
    first = TILE_N * TILE_K // pf * loc.n_tile + WORDS_PER_LANE[num_bits] * loc.lane
    loads = "two 16-byte loads" if num_bits == 8 else "one 16-byte load"
    lines += [f"  tile: k-tile {loc.k_tile}, n-tile {loc.n_tile}; block j={loc.block_j}, n8 half h={loc.n8_half}",
              f"  read by lane {loc.lane} (group id {c8}, thread-in-group {q}), B register {loc.register}, "
              f"{'high' if loc.half else 'low'} half (fragment element {2 * loc.register + loc.half})",
              f"  lane {loc.lane} loads words {first}..{first + WORDS_PER_LANE[num_bits] - 1} of row {loc.row} "
              f"({loads})"]
    single = locate_scale(n, grouped=False)
    grouped = locate_scale(n, grouped=True)
    mx = locate_scale(n, grouped=True, mx=True)
    lines.append(f"  scales: channel-wise/bias (single) column {n} -> position {single.offset} of [G, N]; "
                 f"grouped (group g = k // group_size) -> position {grouped.offset}; "
                 f"MXFP8 row {k // MX_BLOCK} -> position {mx.offset}")
    return "\n".join(lines)


# --- loading and saving ----------------------------------------------------------------------------

def _torch():
    try:
        return importlib.import_module("torch")   # lazily: the oracle never needs torch
    except ModuleNotFoundError:
        raise DebuggerError("reading or writing a .pt file needs torch, which is not installed "
                            "(save the tensor with numpy.save as .npy instead)") from None


def _from_torch(t, path: Path) -> np.ndarray:
    """A torch tensor as a NumPy array with the same bytes (float8/bfloat16 through an integer view)."""
    torch = _torch()
    if not isinstance(t, torch.Tensor):
        raise DebuggerError(f"{path}: holds a {type(t).__name__}, not a tensor")
    t = t.detach().cpu().contiguous()
    name = str(t.dtype).removeprefix("torch.")
    if name not in _TORCH_DTYPES:
        raise DebuggerError(f"{path}: unsupported tensor dtype {t.dtype}")
    target = _TORCH_DTYPES[name]
    carrier = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[target.itemsize]
    return t.view(carrier).numpy().view(target)


def _to_torch(a: np.ndarray):
    torch = _torch()
    carrier = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    return torch.from_numpy(np.ascontiguousarray(a).view(carrier).copy()).view(getattr(torch, a.dtype.name))


def _pick(tensors: dict, key: str | None, path: Path):
    if key is not None:
        if key not in tensors:
            raise DebuggerError(f"{path}: no tensor named {key!r} (has {sorted(tensors)})")
        return tensors[key]
    if len(tensors) != 1:
        raise DebuggerError(f"{path}: holds {len(tensors)} tensors {sorted(tensors)}; name one with --key")
    return next(iter(tensors.values()))


def _read_safetensors(path: Path) -> dict:
    """The safetensors format: 8-byte little-endian header length, a JSON header, then the raw bytes."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _ST_DTYPES:
            raise DebuggerError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(data) - 8 - length:
            raise DebuggerError(f"{path}: tensor {name!r} has data offsets {[begin, end]} outside the file")
        raw = np.frombuffer(data[8 + length + begin:8 + length + end], dtype=np.uint8)
        out[name] = raw.view(_ST_DTYPES[info["dtype"]]).reshape(info["shape"]).copy()
    return out


def _read_numpy(path: Path, key: str | None) -> np.ndarray:
    """.npy or .npz, never unpickling: a pickled object array is refused, not loaded."""
    with open(path, "rb") as f:
        magic = f.read(len(NPY_MAGIC))
    if magic.startswith(PICKLE_MAGIC):
        raise DebuggerError(f"{path}: is a pickle, which this tool never loads (save a plain numeric array)")
    if not (magic == NPY_MAGIC or magic.startswith(ZIP_MAGIC)):
        raise DebuggerError(f"{path}: not a readable .npy/.npz file (no NumPy or zip header)")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return loaded
        with loaded:
            return _pick({k: loaded[k] for k in loaded.files}, key, path)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DebuggerError(f"{path}: holds pickled Python objects, which this tool never loads "
                                "(save a plain numeric array)") from None
        raise DebuggerError(f"{path}: not a readable .npy/.npz file ({exc})") from None
    except (EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DebuggerError(f"{path}: not a readable .npy/.npz file ({type(exc).__name__}: {exc})") from None


def load_array(path, key: str | None = None) -> np.ndarray:
    """A tensor from .npy, .npz, .pt/.pth (torch, loaded with weights_only) or .safetensors. Every failure
    (missing, a directory, unreadable, corrupt, pickled, no such key) is a DebuggerError naming the file."""
    path = Path(path)
    if not path.exists():
        raise DebuggerError(f"{path}: no such file")
    if path.is_dir():
        raise DebuggerError(f"{path}: is a directory, not a tensor file")
    suffix = path.suffix.lower()
    if suffix not in LOAD_SUFFIXES:
        raise DebuggerError(f"{path}: unknown file type {suffix!r} (use .npy, .npz, .pt or .safetensors)")
    try:
        if suffix in (".npy", ".npz"):
            return _read_numpy(path, key)
        if suffix == ".safetensors":
            try:
                tensors = _read_safetensors(path)
            except (struct.error, ValueError, KeyError, TypeError, AttributeError) as exc:
                if isinstance(exc, DebuggerError):
                    raise
                raise DebuggerError(f"{path}: not a valid .safetensors file ({type(exc).__name__}: {exc})") from None
            return _pick(tensors, key, path)
        torch = _torch()
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt or unsafe file
            message = str(exc).splitlines()[0] if str(exc) else ""
            raise DebuggerError(f"{path}: not a loadable .pt file ({type(exc).__name__}: {message})") from None
        tensors = obj if isinstance(obj, dict) else {"tensor": obj}
        return _from_torch(_pick(tensors, key, path), path)
    except OSError as exc:
        raise DebuggerError(f"{path}: cannot read ({exc.strerror or exc})") from None


def check_output_path(path) -> Path:
    """An --out path with a suffix save_arrays writes, in an existing directory."""
    path = Path(path)
    if path.suffix.lower() not in SAVE_SUFFIXES:
        raise DebuggerError(f"--out {path}: unsupported suffix {path.suffix!r} (use .npz, .npy, .pt or "
                            ".safetensors)")
    if path.is_dir():
        raise DebuggerError(f"--out {path}: is a directory")
    if not path.parent.is_dir():
        raise DebuggerError(f"--out {path}: directory {path.parent} does not exist")
    return path


def save_arrays(path, arrays: dict) -> list[Path]:
    """Write {name: array}: .npz (one file), .pt (torch dict), .safetensors, or .npy (one file per
    array: PATH for the first, PATH with .<name>.npy for the others). Returns the files written, each
    exactly at the path named (np.save would append .npy to any other suffix, so none is accepted)."""
    path = check_output_path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        np.savez(path, **{k: _portable(v) for k, v in arrays.items()})
        return [path]
    if suffix in (".pt", ".pth"):
        _torch().save({name: _to_torch(a) for name, a in arrays.items()}, path)
        return [path]
    if suffix == ".safetensors":
        header, blobs, offset = {}, [], 0
        for name, a in arrays.items():
            raw = np.ascontiguousarray(a).tobytes()
            header[name] = {"dtype": _ST_NAMES[a.dtype], "shape": list(a.shape),
                            "data_offsets": [offset, offset + len(raw)]}
            blobs.append(raw)
            offset += len(raw)
        text = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
        return [path]
    written = []
    for i, (name, a) in enumerate(arrays.items()):
        target = path if i == 0 else path.with_suffix(f".{name}.npy")
        np.save(target, _portable(a))
        written.append(target)
    return written


def _portable(a: np.ndarray) -> np.ndarray:
    """.npy/.npz keep ml_dtypes as opaque bytes: store fp8 as uint8 codes and bf16/e8m0 as float32 values."""
    if a.dtype == E4M3:
        return a.view(np.uint8)
    if a.dtype in (BF16, E8M0):
        return a.astype(np.float32)
    return a


# --- unrepack --------------------------------------------------------------------------------------

def check_sizes(size_k: int, size_n: int) -> None:
    """--size-k a positive multiple of 16, --size-n of 64: the Marlin tile (§2.3)."""
    for option, value, multiple in (("--size-k", size_k, TILE_K), ("--size-n", size_n, TILE_N)):
        if value <= 0 or value % multiple != 0:
            raise DebuggerError(f"{option}={value} must be a positive multiple of {multiple}")


def _native(a: np.ndarray) -> np.ndarray:
    """The same values in native byte order (a big-endian .npy loads as >i4, >f2, ...)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _check_stack(what: str, a: np.ndarray, tail: tuple, layout: str) -> None:
    """a is [*tail] or [E, *tail] with E >= 1."""
    if a.ndim not in (2, 3) or a.shape[-2:] != tail or a.size == 0:
        raise DebuggerError(f"{what} must be {layout} = {tail} (or [E, {layout[1:-1]}] for MoE), "
                            f"got shape {a.shape}")


def logical_weight(marlin_q_weight: np.ndarray, size_k: int, size_n: int, num_bits: int = 8) -> np.ndarray:
    """Marlin int32 [(E,) K/16, 16N/pf] -> logical [(E,) K, N] (fp8 codes as float8_e4m3fn for 8-bit,
    uint8 values for 4-bit). An act-order perm stays applied."""
    check_sizes(size_k, size_n)
    q = _native(np.asarray(marlin_q_weight))
    if q.dtype != np.int32:
        raise DebuggerError(f"the Marlin weight must hold int32 words, got dtype {q.dtype.name}")
    pf = pack_factor(num_bits)
    _check_stack("the Marlin weight", q, (size_k // TILE_K, size_n * TILE_K // pf), f"[K/16, {16 // pf}N]")
    experts = q.reshape((-1,) + q.shape[-2:])
    out = []
    for e in experts:
        gptq = gptq_marlin_unrepack(np.ascontiguousarray(e), size_k, size_n, num_bits)      # [K/pf, N]
        if num_bits == 8:
            out.append(unpack_fp8_from_int32(gptq))                                          # [K, N]
        else:
            shifts = (np.arange(8, dtype=np.uint32) * 4)[None, :, None]
            nibbles = (gptq.view(np.uint32)[:, None, :] >> shifts) & 0xF                    # [K/8, 8, N]
            out.append(nibbles.reshape(size_k, size_n).astype(np.uint8))                     # [K, N]
    stacked = np.stack(out)
    return stacked if q.ndim == 3 else stacked[0]


# raw integer carriers a scale file may hold the bytes of a 16-bit or e8m0 format in
_RAW_CARRIERS = {2: (np.dtype(np.uint16), np.dtype(np.int16)), 1: (np.dtype(np.uint8), np.dtype(np.int8))}


def _scale_dtype(s: np.ndarray, dtype: str | None) -> np.dtype:
    if dtype is not None:
        if dtype not in SCALE_DTYPES:
            raise DebuggerError(f"--dtype={dtype!r} must be one of {sorted(SCALE_DTYPES)}")
        target = np.dtype(SCALE_DTYPES[dtype])
        raw = s.dtype in _RAW_CARRIERS.get(target.itemsize, ()) or (s.dtype.kind == "V" and
                                                                   s.dtype.itemsize == target.itemsize)
        if s.dtype != target and not raw:
            raise DebuggerError(f"scales of dtype {s.dtype.name} cannot be read as --dtype {dtype} "
                                f"(only raw {target.itemsize}-byte values or {target.name} itself)")
        return target
    if s.dtype in (FP16, BF16, E8M0):
        return s.dtype
    if s.dtype == np.uint8:
        return E8M0
    raise DebuggerError(f"cannot tell the scale format from dtype {s.dtype} (a .npy of bfloat16 "
                        "loads as raw 2-byte values): pass --dtype bf16, fp16 or e8m0")


def logical_scales(scales: np.ndarray, size_k: int, size_n: int, dtype: str | None = None) -> np.ndarray:
    """Kernel scales [(E,) G, N] -> logical [(E,) G, N]: fp16/bf16 unpermuted and unfused (÷2^β), e8m0
    un-reordered, unpermuted and decoded to float32 (byte 0 -> 2^-127, 255 -> NaN, as torch)."""
    check_sizes(size_k, size_n)
    s = _native(np.asarray(scales))
    target = _scale_dtype(s, dtype)
    s = s.view(target)
    if s.ndim not in (2, 3) or s.shape[-1] != size_n or s.size == 0:
        raise DebuggerError(f"scales must be [G, N] (or [E, G, N]) with N = --size-n {size_n}, "
                            f"got shape {s.shape}")
    groups = s.shape[-2]
    if target == E8M0:
        if groups != size_k // MX_BLOCK or groups < 2:
            raise DebuggerError(f"e8m0 scales must have G = size_k/{MX_BLOCK} = {size_k // MX_BLOCK} "
                                f"(>= 2) rows for --size-k {size_k}, got shape {s.shape}")
        group_size = MX_BLOCK
    else:
        group_size = -1 if groups == 1 else size_k // groups
        if groups != 1 and (groups * group_size != size_k or group_size not in (32, 64, 128)):
            raise DebuggerError(f"scales with G={groups} rows give group_size = {size_k}/{groups}; "
                                f"it must be 32, 64 or 128 (or G = 1, channel-wise)")
    out = []
    for g in s.reshape((-1,) + s.shape[-2:]):
        if target == E8M0:
            floats = mxfp8_marlin_unprocess_scales(g, dtype="float32")                      # [G, N] permuted
            out.append(marlin_unpermute_scales(floats, size_k, size_n, group_size))
        else:
            out.append(fp8_unfuse_exponent_bias_from_scales(marlin_unpermute_scales(g, size_k, size_n, group_size)))
    stacked = np.stack(out)
    return stacked if s.ndim == 3 else stacked[0]
