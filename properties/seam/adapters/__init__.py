"""Adapters of external implementations to the backend seam (properties.seam.backends).

    "vllm"               vLLM's own Python functions, when vLLM is importable (properties.seam.adapters.vllm)
    "marlin-ops:<ns>"    any torch.ops.<ns> registering vLLM's Marlin op schemas, with marlin_fast's
                         transforms around it (properties.seam.adapters.marlin_ops)

`register()` adds both names to the registry. It imports neither torch, vLLM nor the adapter modules (the
factories do, on first use), so properties.seam.backends may call it while it is itself being imported.
"""

from __future__ import annotations

import importlib

# registry name (or scheme) -> (module, factory); "scheme:" marks a scheme
ADAPTERS = {
    "vllm": ("properties.seam.adapters.vllm", "vllm_backend"),
    "marlin-ops:": ("properties.seam.adapters.marlin_ops", "marlin_ops_backend"),
}


def _lazy(module: str, factory: str):
    def build(*args, **kwargs):
        return getattr(importlib.import_module(module), factory)(*args, **kwargs)
    build.__qualname__ = f"{module}.{factory}"
    return build


def register() -> None:
    """Register "vllm" and the "marlin-ops" scheme with properties.seam.backends (idempotent)."""
    from properties.seam.backends import register_backend, register_scheme

    for name, (module, factory) in ADAPTERS.items():
        if name.endswith(":"):
            register_scheme(name[:-1], _lazy(module, factory))
        else:
            register_backend(name, _lazy(module, factory))
