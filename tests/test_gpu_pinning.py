"""properties.seam.gpu_pinning without GPUs: worker ids, the GPU list, the round-robin, and when nothing is pinned."""

import subprocess
import sys
import types

import pytest

from properties.seam import gpu_pinning as gp


def no_query():
    raise AssertionError("nvidia-smi must not be asked when CUDA_VISIBLE_DEVICES is set")


@pytest.mark.parametrize("worker_id, index", [("gw0", 0), ("gw12", 12), ("master", None), ("", None),
                                              (None, None), ("gw", None), ("gwx1", None), ("xgw1", None)])
def test_worker_index(worker_id, index):
    assert gp.worker_index(worker_id) == index


def test_each_worker_gets_its_own_gpu_round_robin():
    pinned = []
    for worker in range(6):
        env = {"PYTEST_XDIST_WORKER": f"gw{worker}", "CUDA_VISIBLE_DEVICES": "4,5,6"}
        pinned.append(gp.pin_worker_to_gpu(env=env, query=no_query))
        assert env["CUDA_VISIBLE_DEVICES"] == pinned[-1]
    assert pinned == ["4", "5", "6", "4", "5", "6"]


def test_one_gpu_is_shared_by_every_worker():
    for worker in range(4):
        env = {"PYTEST_XDIST_WORKER": f"gw{worker}"}
        assert gp.pin_worker_to_gpu(env=env, query=lambda: ["0"]) == "0"
        assert env["CUDA_VISIBLE_DEVICES"] == "0"


def test_gpus_come_from_the_query_when_nothing_is_set():
    env = {}
    assert gp.pin_worker_to_gpu("gw3", env=env, query=lambda: ["0", "1"]) == "1"
    assert env == {"CUDA_VISIBLE_DEVICES": "1"}


@pytest.mark.parametrize("env", [{}, {"PYTEST_XDIST_WORKER": "master"}])
def test_no_xdist_worker_leaves_the_environment_alone(env):
    before = dict(env)
    assert gp.pin_worker_to_gpu(env=env, query=lambda: ["0", "1"]) is None
    assert env == before


def test_no_gpu_leaves_the_environment_alone():
    env = {"PYTEST_XDIST_WORKER": "gw1"}
    assert gp.pin_worker_to_gpu(env=env, query=lambda: []) is None
    assert env == {"PYTEST_XDIST_WORKER": "gw1"}
    empty = {"PYTEST_XDIST_WORKER": "gw1", "CUDA_VISIBLE_DEVICES": ""}       # explicitly no GPU
    assert gp.pin_worker_to_gpu(env=empty, query=no_query) is None
    assert empty["CUDA_VISIBLE_DEVICES"] == ""


def test_explicit_worker_id_wins_over_the_environment():
    env = {"PYTEST_XDIST_WORKER": "gw0", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert gp.pin_worker_to_gpu("gw1", env=env) == "1"


def test_gpu_for_worker_rejects_empty_and_negative():
    with pytest.raises(ValueError, match="gpus must not be empty"):
        gp.gpu_for_worker(0, [])
    with pytest.raises(ValueError, match="index=-1 must be >= 0"):
        gp.gpu_for_worker(-1, ["0"])


def test_nvidia_smi_listing_is_parsed(monkeypatch):
    listing = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2)\n"

    def fake_run(cmd, **kwargs):
        assert cmd == ["nvidia-smi", "-L"]
        return subprocess.CompletedProcess(cmd, 0, stdout=listing, stderr="")

    monkeypatch.setattr(gp.subprocess, "run", fake_run)
    assert gp.nvidia_smi_gpus() == ["0", "1"]


def test_missing_nvidia_smi_means_no_gpus(monkeypatch):
    def fake_run(cmd, **kwargs):
        raise FileNotFoundError(cmd[0])

    monkeypatch.setattr(gp.subprocess, "run", fake_run)
    assert gp.nvidia_smi_gpus() == []


def test_pinning_after_cuda_initialised_raises(monkeypatch):
    # A started CUDA runtime ignores CUDA_VISIBLE_DEVICES: refuse instead of pretending to pin.
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(RuntimeError, match="already initialised"):
        gp.pin_worker_to_gpu()
