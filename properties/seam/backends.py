"""The backend seam: which implementation the laws test, chosen by name, never imported by a test.

A `Backend` has a `name`, a `version` string, the set of operations it `provides` (names from
`OPERATIONS`, the design contract's public functions), and one callable per operation, reached as an
attribute (`backend.gptq_marlin_repack(...)`) or with `backend.op(name)`. Every callable takes and
returns NumPy arrays; ml_dtypes' `float8_e4m3fn`, `bfloat16` and `float8_e8m0fnu` cross to torch's
dtypes of the same names by reinterpreting bytes, never by value (`to_torch`, `to_numpy`).

What a backend lacks raises `NotProvided` (a `unittest.SkipTest`, so pytest and Hypothesis report a
skip with the reason; the pytest plugin counts these skips separately). It is never a pass.

Names `get_backend` resolves, in this order:

    a registered name      "ref" (marlin_ref against itself), "torch" (marlin_fast on CPU tensors),
                           "torch-cuda" = "cuda" (marlin_fast on CUDA tensors; every op "not provided"
                           without a CUDA device), and whatever `register_backend` added
    "scheme:rest"          a scheme added with `register_scheme` (room for "marlin-ops:<ns>")
    "module:attribute"     the object at that path (dotted attribute; empty = the module itself):
                           * a Backend is used as is;
                           * an object may declare what it provides cell by cell in MARLIN_CAPABILITIES
                             (properties.seam.capabilities); undeclared ops provide every cell;
                           * an object with op-named attributes (module, torch.ops namespace, instance)
                             is adapted: each op-named callable becomes an op. Array convention, per op:
                             the object's `MARLIN_ARRAYS` ("numpy" or "torch") if it sets one, else
                             torch when the callable is a torch operator or a Python function whose
                             module globals hold the torch module (it did `import torch`), else numpy;
                           * any other callable is a factory, called with no arguments; it must return
                             a Backend (how a mutant is named on the command line).

Mutants for the meta tests (and the next issues' MUTANT backends) wrap a correct backend and replace
one operation: `backend.replaced(name, op=fn)`; the laws never change.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import sys
import unittest
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import ml_dtypes
import numpy as np

from properties.seam.capabilities import EVERYTHING, Capability, Cell, from_declaration

# op name -> module stem in marlin_ref / marlin_fast (design.md, "One name per transform")
OPERATIONS: dict[str, str] = {
    "pack_fp8_to_int32": "pack_fp8_to_int32",
    "unpack_fp8_from_int32": "pack_fp8_to_int32",
    "gptq_marlin_repack": "gptq_marlin_repack",
    "gptq_marlin_unrepack": "gptq_marlin_repack",
    "marlin_permute_scales": "marlin_permute_scales",
    "marlin_unpermute_scales": "marlin_permute_scales",
    "uses_grouped_scale_permutation": "marlin_permute_scales",
    "marlin_permute_bias": "marlin_permute_bias",
    "marlin_unpermute_bias": "marlin_permute_bias",
    "fp8_fused_exponent_bias_into_scales": "fp8_fused_exponent_bias_into_scales",
    "fp8_unfuse_exponent_bias_from_scales": "fp8_fused_exponent_bias_into_scales",
    "mxfp8_marlin_process_scales": "mxfp8_marlin_process_scales",
    "mxfp8_marlin_unprocess_scales": "mxfp8_marlin_process_scales",
    "convert_fp8_scales": "scale_schemes",
    "convert_fp8_moe_scales": "scale_schemes",
    "mxfp8_scales_to_float": "scale_schemes",
    "marlin_padded_nk": "padding",
    "marlin_moe_padded_intermediate": "padding",
    "prepare_fp8_layer_for_marlin": "prepare_fp8_layer_for_marlin",
    "prepare_fp8_moe_layer_for_marlin": "prepare_fp8_moe_layer_for_marlin",
    "prepare_mxfp8_layer_for_marlin": "prepare_mxfp8_layer_for_marlin",
    "prepare_mxfp8_moe_layer_for_marlin": "prepare_mxfp8_moe_layer_for_marlin",
    "marlin_gemm": "marlin_gemm",
    "marlin_moe_gemm": "marlin_gemm",
    "apply_fp8_marlin_linear": "apply_fp8_marlin_linear",
    "apply_mxfp8_marlin_linear": "apply_fp8_marlin_linear",
}

DEFAULT_BACKEND = "torch"
ENV_VAR = "MARLIN_BACKEND"

# ml_dtypes dtype -> (torch dtype name, integer carrier of the same width): the one-to-one byte mapping
_BYTE_VIEWS = {
    np.dtype(ml_dtypes.float8_e4m3fn): ("float8_e4m3fn", np.uint8),
    np.dtype(ml_dtypes.float8_e8m0fnu): ("float8_e8m0fnu", np.uint8),
    np.dtype(ml_dtypes.bfloat16): ("bfloat16", np.int16),
}


class NotProvided(unittest.SkipTest):
    """The backend under test lacks an operation: reported as a skip, counted apart from passes."""

    PREFIX = "not provided"

    def __init__(self, backend: str, op: str, reason: str):
        super().__init__(f"{self.PREFIX}: backend {backend!r} lacks {op}: {reason}")
        self.backend, self.op, self.reason = backend, op, reason


class BackendError(RuntimeError):
    """A backend exists but cannot be built (e.g. its module raises on import): a failure, not a skip."""


# --- numpy <-> torch, by bytes ------------------------------------------------------------------

def _torch():
    import torch  # lazily: the oracle side and `ref` never need it
    return torch


def to_torch(a: np.ndarray, device: str = "cpu"):
    """A NumPy array as a torch tensor with the same bytes (CPU: shares memory, so in-place writes show)."""
    torch = _torch()
    if not (a.flags.c_contiguous and a.flags.writeable):
        a = np.ascontiguousarray(a).copy()  # torch.from_numpy needs positive strides and a writable buffer
    view = _BYTE_VIEWS.get(a.dtype)
    if view is None:
        t = torch.from_numpy(a)
    else:
        t = torch.from_numpy(a.view(view[1])).view(getattr(torch, view[0]))
    return t if device == "cpu" else t.to(device)


def to_numpy(t) -> np.ndarray:
    """A torch tensor as a NumPy array with the same bytes (ml_dtypes for the float8/bfloat16 dtypes)."""
    torch = _torch()
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    for np_dtype, (torch_name, carrier) in _BYTE_VIEWS.items():
        if t.dtype == getattr(torch, torch_name):
            return t.view(getattr(torch, np.dtype(carrier).name)).numpy().view(np_dtype)
    return t.numpy()


def _map(value, fn_array, array_type):
    """Apply fn_array to every array in a (possibly nested) argument or result."""
    if isinstance(value, array_type):
        return fn_array(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple such as MarlinLayer
        return type(value)._make(_map(v, fn_array, array_type) for v in value)
    if isinstance(value, (tuple, list)):
        return type(value)(_map(v, fn_array, array_type) for v in value)
    if isinstance(value, dict):
        return {k: _map(v, fn_array, array_type) for k, v in value.items()}
    return value


def torch_adapter(fn: Callable, device: str = "cpu") -> Callable:
    """Wrap a torch-tensor function as a NumPy-in, NumPy-out one. On a device other than the CPU the
    input tensors are copies, so a write into one is copied back to the NumPy input: the laws that
    check inputs are never mutated then see it as they would on the CPU."""
    torch = _torch()

    def call(*args, **kwargs):
        pairs = []

        def convert(a):
            t = to_torch(a, device)
            pairs.append((a, t))
            return t

        result = fn(*_map(args, convert, np.ndarray), **_map(kwargs, convert, np.ndarray))
        if device != "cpu":
            for a, t in pairs:
                back = to_numpy(t)
                if a.flags.writeable and back.tobytes() != a.tobytes():
                    a.view(np.uint8).reshape(-1)[:] = back.view(np.uint8).reshape(-1)
        return _map(result, to_numpy, torch.Tensor)

    call.__wrapped__, call.device = fn, device      # the torch-level op and its device (Backend.device_op)
    call.__name__ = getattr(fn, "__name__", "op")
    return call


# --- the Backend ----------------------------------------------------------------------------------

@dataclass
class Backend:
    """name, version, ops {op name: NumPy-in NumPy-out callable}, missing {op name: reason}, capabilities
    {op name: Capability} (an op without an entry provides every cell of the contract; properties.seam.capabilities)."""

    name: str
    version: str
    ops: Mapping[str, Callable] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)
    capabilities: Mapping[str, Capability] = field(default_factory=dict)

    @property
    def provides(self) -> frozenset[str]:
        return frozenset(self.ops)

    def reason(self, op: str) -> str:
        """Why `op` is not provided ("" if it is)."""
        if op in self.ops:
            return ""
        if op not in OPERATIONS:
            return f"{op!r} is not an operation of the contract"
        return self.missing.get(op, "no such function")

    def op(self, op: str) -> Callable:
        if op not in self.ops:
            raise NotProvided(self.name, op, self.reason(op))
        return self.ops[op]

    def require(self, *ops: str) -> None:
        for op in ops:
            self.op(op)

    def device_op(self, op: str) -> tuple[Callable, str]:
        """(the torch-level op, its device) for checks that need tensors on the device (poisoned output buffers,
        strided activations); NotProvided for an op that takes NumPy arrays."""
        device = self.op_device(op)
        wrapped = getattr(self.op(op), "__wrapped__", None)
        if wrapped is None:     # e.g. a mutant: it wraps the NumPy-level op, its torch-level one is the correct one
            raise NotProvided(self.name, op, f"it wraps the NumPy-level op (on {device}): no device-level form")
        return wrapped, device

    def op_device(self, op: str) -> str:
        """The device `op` computes on ("cuda:0"); NotProvided for an op that takes and computes NumPy arrays."""
        device = getattr(self.op(op), "device", None)
        if device is None:
            raise NotProvided(self.name, op, "it takes NumPy arrays: no device-level form for tensor-level checks")
        return device

    def capability(self, op: str) -> Capability:
        """What this backend provides of `op` (NotProvided if it lacks the operation altogether)."""
        self.op(op)
        return self.capabilities.get(op, EVERYTHING)

    def gap(self, cell: Cell) -> str | None:
        """Why `cell` is not provided ("" never): the operation is missing, or its capability leaves it out."""
        if cell.op not in self.ops:
            return self.reason(cell.op)
        return self.capabilities.get(cell.op, EVERYTHING).gap(cell)

    def require_cell(self, cell: Cell) -> None:
        """NotProvided unless this backend provides `cell` (checked before a single example is drawn)."""
        why = self.gap(cell)
        if why:
            raise NotProvided(self.name, cell.op if cell.op not in self.ops else f"{cell.op} [{cell.label()}]", why)

    def __getattr__(self, op: str) -> Callable:
        if op in OPERATIONS:
            return self.op(op)
        raise AttributeError(f"{type(self).__name__} {self.name!r} has no attribute {op!r}")

    def replaced(self, name: str, **ops: Callable) -> "Backend":
        """A copy named `name` with some operations replaced (a mutant) or added."""
        unknown = sorted(set(ops) - set(OPERATIONS))
        if unknown:
            raise ValueError(f"Backend.replaced: {unknown} are not operations of the contract")
        ops = {op: _computing_on(getattr(self.ops.get(op), "device", None), fn) for op, fn in ops.items()}
        return Backend(name, f"{self.version} with {sorted(ops)} replaced", {**self.ops, **ops},
                       {k: v for k, v in self.missing.items() if k not in ops}, self.capabilities)


def _computing_on(device: str | None, fn: Callable) -> Callable:
    """A replacement that calls the op it replaces computes where that one does (the GPU tier's gate reads it); it
    gets that device but no __wrapped__, so Backend.device_op never hands out the op it replaced."""
    if device is None or getattr(fn, "device", None) is not None:
        return fn

    def call(*args, **kwargs):
        return fn(*args, **kwargs)
    call.__name__, call.device = getattr(fn, "__name__", "op"), device
    return call


def _checkout_version(top) -> str | None:
    """"<version> (checkout <folder>)" when the top-level module `top` is imported from a source checkout:
    the folder holding it has a pyproject.toml with a static [project] version (editable installs too).
    None otherwise: an installed copy sits in site-packages, which has no pyproject.toml."""
    import tomllib
    from pathlib import Path

    file = getattr(top, "__file__", None)
    if not file:
        return None                                   # a namespace package or a built-in module
    path = Path(file).resolve()
    root = path.parent.parent if path.name == "__init__.py" else path.parent
    try:
        with open(root / "pyproject.toml", "rb") as f:
            version = tomllib.load(f).get("project", {}).get("version")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return f"{version} (checkout {root})" if version else None


def _package_version(module) -> str:
    """The version of the package `module` belongs to: its __version__, else the checkout's pyproject.toml
    version when imported from a source checkout ("0.1.0 (checkout /path)"), else the installed
    distribution's metadata version, else "unknown"."""
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    top = getattr(module, "__name__", "").split(".")[0]
    checkout = _checkout_version(sys.modules.get(top, module))
    if checkout:
        return checkout
    for dist in importlib.metadata.packages_distributions().get(top, []):
        return importlib.metadata.version(dist)
    return "unknown"


def _uses_torch(fn: Callable) -> bool:
    """The automatic convention rule: torch operators and functions of modules that import torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False  # nothing has imported torch, so fn cannot be a torch function
    if type(fn).__module__.split(".")[0] == "torch":
        return True  # torch.ops.<ns>.<op> packets and overloads, torch builtins
    fn = inspect.unwrap(fn)
    return any(value is torch for value in getattr(fn, "__globals__", {}).values())


def _broken(op: str, module_name: str, exc: BaseException) -> Callable:
    """An op whose module raises on import: calling it fails (BackendError), it is never skipped."""
    message = f"{op}: importing {module_name} failed: {type(exc).__name__}: {exc}"

    def call(*args, **kwargs):
        raise BackendError(message) from exc

    call.MARLIN_BROKEN = message
    return call


def adapt(name: str, version: str, obj: Any, *, convention: str | None = None, device: str = "cpu",
          stems: bool = False) -> Backend:
    """A Backend from the op-named callables of `obj`. `stems`: obj is a package whose submodules are
    named by OPERATIONS' module stems, imported on demand (marlin_ref, marlin_fast)."""
    convention = convention or getattr(obj, "MARLIN_ARRAYS", None)
    if convention not in (None, "numpy", "torch"):
        raise ValueError(f"adapt: MARLIN_ARRAYS={convention!r} must be 'numpy' or 'torch'")
    ops, missing = {}, {}
    for op, stem in OPERATIONS.items():
        fn = getattr(obj, op, None)
        if fn is None and stems:
            module_name = f"{obj.__name__}.{stem}"
            try:
                fn = getattr(importlib.import_module(module_name), op, None)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    fn = _broken(op, module_name, exc)  # it exists but an import inside it fails
                else:
                    missing[op] = f"{module_name} does not exist"
                    continue
            except Exception as exc:  # noqa: BLE001 - a broken module fails the tests that use it
                fn = _broken(op, module_name, exc)
        if not callable(fn):
            missing.setdefault(op, f"{getattr(obj, '__name__', obj)!r} has no function {op}")
            continue
        torch_fn = convention == "torch" or (convention is None and _uses_torch(fn))
        ops[op] = torch_adapter(fn, device) if torch_fn else fn
    return Backend(name, version, ops, missing, declared_capabilities(obj, name))


def declared_capabilities(obj: Any, where: str) -> dict[str, Capability]:
    """The capabilities an object declares in its MARLIN_CAPABILITIES attribute ({} if none)."""
    declared = getattr(obj, "MARLIN_CAPABILITIES", None)
    if declared is None:
        return {}
    if not isinstance(declared, Mapping):
        raise TypeError(f"{where}: MARLIN_CAPABILITIES must be a dict of operation -> capability, "
                        f"got {type(declared).__name__}")
    unknown = sorted(set(declared) - set(OPERATIONS))
    if unknown:
        raise ValueError(f"{where}: MARLIN_CAPABILITIES names {unknown}, which are not operations of the contract")
    return {op: from_declaration(op, value, where) for op, value in declared.items()}


def _package_backend(name: str, package: str, *, convention: str, device: str = "cpu",
                     extra: str = "") -> Backend:
    try:
        module = importlib.import_module(package)
    except ModuleNotFoundError as exc:
        if exc.name != package:
            raise BackendError(f"backend {name!r}: importing {package} failed: {exc}") from exc
        return Backend(name, "absent", {}, {op: f"package {package} is not importable" for op in OPERATIONS})
    version = f"{package} {_package_version(module)}{extra}"
    return adapt(name, version, module, convention=convention, device=device, stems=True)


def _ref_backend() -> Backend:
    return _package_backend("ref", "marlin_ref", convention="numpy")


def _torch_backend() -> Backend:
    return _package_backend("torch", "marlin_fast", convention="torch",
                            extra=f", torch {_torch().__version__} (cpu)")


def _torch_cuda_backend() -> Backend:
    torch = _torch()
    if not torch.cuda.is_available():
        why = f"no CUDA device (torch {torch.__version__}: torch.cuda.is_available() is False)"
        return Backend("torch-cuda", "unavailable", {}, {op: why for op in OPERATIONS})
    return _package_backend("torch-cuda", "marlin_fast", convention="torch", device="cuda",
                            extra=f", torch {torch.__version__} ({torch.cuda.get_device_name()})")


# --- the registry ------------------------------------------------------------------------------

_FACTORIES: dict[str, Callable[[], Backend]] = {}
_SCHEMES: dict[str, Callable[[str], Backend]] = {}
_CACHE: dict[str, Backend] = {}
_LAZY_SCHEMES = {"mutant": "properties.strength.mutants"}   # schemes whose module registers them on import


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Register a lazily built backend; the factory runs on first use (e.g. imports torch then)."""
    _FACTORIES[name] = factory
    _CACHE.pop(name, None)


def register_scheme(scheme: str, resolver: Callable[[str], Backend]) -> None:
    """Register "scheme:rest" names, e.g. "marlin-ops" for "marlin-ops:<namespace>"."""
    _SCHEMES[scheme] = resolver


def backend_names() -> list[str]:
    return sorted(_FACTORIES)


register_backend("ref", _ref_backend)
register_backend("torch", _torch_backend)
register_backend("torch-cuda", _torch_cuda_backend)


def _cuda_backend() -> Backend:
    """marlin_fast on CUDA tensors, with the CUDA kernels (marlin_fast.cuda) for the repack and the GEMM."""
    base = _torch_cuda_backend()
    if not base.ops:
        return Backend("cuda", base.version, {}, base.missing)
    kernels = importlib.import_module("marlin_fast.cuda")
    ops = {op: torch_adapter(getattr(kernels, op), "cuda")
           for op in ("gptq_marlin_repack", "marlin_gemm", "marlin_moe_gemm", "apply_fp8_marlin_linear",
                      "apply_mxfp8_marlin_linear")}
    return Backend("cuda", base.version.replace("(", "(kernels, ", 1), {**base.ops, **ops},
                   {k: v for k, v in base.missing.items() if k not in ops})


register_backend("cuda", _cuda_backend)


def check_backend_name(name: str) -> None:
    """Fail early (no imports) on a name get_backend can never resolve."""
    if name in _FACTORIES or ":" in name:
        return
    raise ValueError(f"get_backend: backend {name!r} is not one of {backend_names()} "
                     "and is not of the form 'module:attribute' or 'scheme:rest'")


def _resolve_path(spec: str) -> Backend:
    module_name, _, attribute = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"get_backend: cannot import module {module_name!r} of backend {spec!r}: {exc}") from exc
    for part in filter(None, attribute.split(".")):
        if not hasattr(obj, part):
            raise ValueError(f"get_backend: {module_name} has no attribute path {attribute!r} (at {part!r})")
        obj = getattr(obj, part)
    if isinstance(obj, Backend):
        return obj
    if not any(hasattr(obj, op) for op in OPERATIONS) and callable(obj) and not inspect.ismodule(obj):
        made = obj()
        if not isinstance(made, Backend):
            raise TypeError(f"get_backend: factory {spec!r} must return a Backend, got {type(made).__name__}")
        return made
    top = sys.modules.get(module_name) or obj
    return adapt(spec, f"{module_name} {_package_version(top)}", obj)


def get_backend(name: str | None = None) -> Backend:
    """The backend called `name` (default: env MARLIN_BACKEND, else "torch"), built once and cached."""
    import os

    name = name or os.environ.get(ENV_VAR) or DEFAULT_BACKEND
    if name not in _CACHE:
        check_backend_name(name)
        scheme, _, rest = name.partition(":")
        if name in _FACTORIES:
            backend = _FACTORIES[name]()
        elif scheme in _SCHEMES or scheme in _LAZY_SCHEMES:
            if scheme not in _SCHEMES:
                importlib.import_module(_LAZY_SCHEMES[scheme])  # registers the scheme on import
            backend = _SCHEMES[scheme](rest)
        else:
            backend = _resolve_path(name)
        _CACHE[name] = backend
    return _CACHE[name]


def oracle() -> Backend:
    """The NumPy oracle marlin_ref as a Backend (what every law compares against)."""
    return get_backend("ref")


from properties.seam.adapters import register as _register_adapters  # noqa: E402  ("vllm", "marlin-ops:<ns>")

_register_adapters()
