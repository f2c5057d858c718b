"""The seam: which implementation the laws test, and how it is reached.

    backends        Backend, get_backend and the registry of names (ref, torch, cuda, module:attr, ...)
    capabilities    Cell and Capability: what a backend provides, cell by cell, and its limits
    loading         --marlin-load: libraries and modules loaded before a backend name resolves
    gpu_pinning     one GPU per pytest-xdist worker, before CUDA initialises
    adapters        vLLM's Python layer ("vllm") and compiled Marlin ops ("marlin-ops:<namespace>")
"""
