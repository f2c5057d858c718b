"""Pin each pytest-xdist worker to one GPU, by setting CUDA_VISIBLE_DEVICES before CUDA initialises.

Worker "gwN" gets GPU N mod (number of GPUs), counted in the list the process may see (an existing
CUDA_VISIBLE_DEVICES list, else the devices `nvidia-smi -L` lists). With one GPU every worker shares
it; without xdist (worker "master" or none) or without GPUs nothing changes. The GPU count is read
without touching CUDA in this process (a CUDA runtime that has started ignores later changes to
CUDA_VISIBLE_DEVICES), and pinning after torch has initialised CUDA raises instead of silently doing
nothing.

    >>> env = {"PYTEST_XDIST_WORKER": "gw5", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    >>> pin_worker_to_gpu(env=env)
    '1'
    >>> env["CUDA_VISIBLE_DEVICES"]
    '1'
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Callable, MutableMapping

ENV_VISIBLE = "CUDA_VISIBLE_DEVICES"
ENV_WORKER = "PYTEST_XDIST_WORKER"
_WORKER_ID = re.compile(r"gw(\d+)")


def worker_index(worker_id: str | None) -> int | None:
    """xdist worker id "gw7" -> 7; None, "" or "master" (no xdist) -> None.

    >>> worker_index("gw7"), worker_index("master"), worker_index(None)
    (7, None, None)
    """
    if not worker_id:
        return None
    match = _WORKER_ID.fullmatch(worker_id)
    return int(match.group(1)) if match else None


def nvidia_smi_gpus(timeout: float = 10.0) -> list[str]:
    """Indices of the GPUs `nvidia-smi -L` lists ("GPU 0: ..." lines); [] if it is missing or fails."""
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return re.findall(r"^GPU (\d+):", listing.stdout, flags=re.MULTILINE)


def visible_gpus(env: MutableMapping[str, str], query: Callable[[], list[str]] = nvidia_smi_gpus) -> list[str]:
    """The GPU names this process may use: the entries of CUDA_VISIBLE_DEVICES if set, else query().

    >>> visible_gpus({"CUDA_VISIBLE_DEVICES": " 2, 5 ,"})
    ['2', '5']
    >>> visible_gpus({}, query=lambda: ["0", "1"])
    ['0', '1']
    """
    if ENV_VISIBLE in env:
        return [g.strip() for g in env[ENV_VISIBLE].split(",") if g.strip()]
    return list(query())


def gpu_for_worker(index: int, gpus: list[str]) -> str:
    """Worker `index` gets gpus[index mod len(gpus)].

    >>> [gpu_for_worker(i, ["0", "1", "2"]) for i in range(5)]
    ['0', '1', '2', '0', '1']
    """
    if not gpus:
        raise ValueError("gpu_for_worker: gpus must not be empty")
    if index < 0:
        raise ValueError(f"gpu_for_worker: index={index} must be >= 0")
    return gpus[index % len(gpus)]


def _cuda_already_initialised() -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        return bool(torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001 - a torch without CUDA support
        return False


def pin_worker_to_gpu(worker_id: str | None = None, env: MutableMapping[str, str] | None = None,
                      query: Callable[[], list[str]] = nvidia_smi_gpus) -> str | None:
    """Set env[CUDA_VISIBLE_DEVICES] to this xdist worker's GPU and return it; None if nothing to pin.

    worker_id defaults to env[PYTEST_XDIST_WORKER]; env defaults to os.environ. Call it before anything
    initialises CUDA (e.g. in pytest_configure of the worker): if torch has already initialised CUDA
    in this process, RuntimeError.
    """
    env = os.environ if env is None else env
    index = worker_index(worker_id if worker_id is not None else env.get(ENV_WORKER))
    if index is None:
        return None
    gpus = visible_gpus(env, query)
    if not gpus:
        return None
    gpu = gpu_for_worker(index, gpus)
    if env is os.environ and _cuda_already_initialised() and env.get(ENV_VISIBLE) != gpu:
        raise RuntimeError(f"pin_worker_to_gpu: CUDA is already initialised in this process, so setting "
                           f"{ENV_VISIBLE}={gpu} for worker gw{index} would have no effect; pin earlier")
    env[ENV_VISIBLE] = gpu
    return gpu
