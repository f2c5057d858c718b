"""The GPU tier's gate: its contract checks run on the backend under test when its GEMM runs on a CUDA device."""

import os

import pytest

DRY_RUN = "MARLIN_GPU_TIER_ON_CPU"   # set: run the contract checks on a CPU backend too (to check the checks; slow)


@pytest.fixture(scope="session")
def device_backend(backend):
    """The backend under test, when its marlin_gemm runs on a CUDA device; else a skip (the GPU tier is about GPUs),
    and "not provided" for a backend whose GEMM takes NumPy arrays."""
    device = backend.op_device("marlin_gemm")
    if not str(device).startswith("cuda") and not os.environ.get(DRY_RUN):
        pytest.skip(f"the GPU tier: backend {backend.name!r} runs its GEMM on {device}, not on a CUDA device")
    return backend
