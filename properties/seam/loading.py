"""Load the implementation under test before its backend name resolves: `--marlin-load PATH_OR_MODULE`.

A kernel library usually registers its operators when it is loaded (`torch.ops.<namespace>` exists only then), so
the suite loads it first, in the controller and in every pytest-xdist worker (after the worker is pinned to its GPU;
loading a library does not initialise CUDA):

    item                                 how it is loaded
    a path to a file, or a name ending   torch.ops.load_library(path): a standalone build of vLLM's kernels,
    in .so / .dylib / .dll / .pyd        a kernels-community build, your own extension
    anything else                        importlib.import_module(name): vLLM's `vllm._C`, a package of yours
                                         that registers ops or defines a backend

`--marlin-load` may be given several times; the environment variable MARLIN_LOAD adds more (separated by
os.pathsep, e.g. `MARLIN_LOAD=/opt/k/_C.so:mypkg.ops`), loaded after the command line's. Anything that does not
exist or fails to load is a usage error naming it. What was loaded is kept in LOADED, so that every replay command
a failure prints repeats it (`load_arguments`).

    >>> kind_of("build/_marlin_C.so"), kind_of("vllm._C"), kind_of("./lib/ops.pyd")
    ('library', 'module', 'library')
    >>> load_arguments(["/opt/k/_C.so", "vllm._C"])
    " --load '/opt/k/_C.so' --load 'vllm._C'"
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Iterable, Mapping

ENV_VAR = "MARLIN_LOAD"
LIBRARY_SUFFIXES = (".so", ".dylib", ".dll", ".pyd")
LOADED: list[str] = []          # items loaded by this process, in order


class LoadError(ValueError):
    """An item of --marlin-load that does not exist or fails to load (its message names it)."""


def requested(option_values: Iterable[str] | None, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The items to load: the command line's, then MARLIN_LOAD's, without empty entries or repeats.

    >>> requested(["a.so"], {"MARLIN_LOAD": "mypkg.ops" + os.pathsep + "a.so"})
    ['a.so', 'mypkg.ops']
    """
    items = [*(option_values or []), *environ.get(ENV_VAR, "").split(os.pathsep)]
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))


def kind_of(item: str) -> str:
    """'library' (loaded with torch.ops.load_library) or 'module' (imported)."""
    if item.endswith(LIBRARY_SUFFIXES) or os.sep in item or Path(item).is_file():
        return "library"
    return "module"


def load(item: str) -> str:
    """Load one item; returns what was done. Raises LoadError naming the item."""
    if item in LOADED:
        return f"{item} (already loaded)"
    if kind_of(item) == "library":
        path = Path(item).expanduser()
        if not path.is_file():
            raise LoadError(f"--marlin-load: the library {item!r} does not exist"
                            + ("" if path.suffix else " (a Python module is named with dots, e.g. vllm._C)"))
        try:
            import torch
            torch.ops.load_library(str(path.resolve()))
        except Exception as exc:  # noqa: BLE001 - OSError, RuntimeError from the library's own initialisers
            raise LoadError(f"--marlin-load: loading the library {item!r} failed: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        done = f"{item} (torch.ops.load_library)"
    else:
        try:
            importlib.import_module(item)
        except Exception as exc:  # noqa: BLE001 - ImportError, or anything its import raises
            raise LoadError(f"--marlin-load: importing the module {item!r} failed: {type(exc).__name__}: {exc}"
                            ) from None
        done = f"{item} (imported)"
    LOADED.append(item)
    return done


def load_all(items: Iterable[str]) -> list[str]:
    """Load every item in order; returns what was done for each."""
    return [load(item) for item in items]


def load_arguments(items: Iterable[str] | None = None) -> str:
    """The ` --load ...` arguments of a replay command for `items` (default: what this process loaded)."""
    return "".join(f" --load '{item}'" for item in (LOADED if items is None else items))
