"""Building our CUDA extension (marlin_fast._ext.load) narrows TORCH_CUDA_ARCH_LIST to the GPU at hand and sets a
default MAX_JOBS for the compile only: the process that uses our kernels (a kernel engineer's own test run) gets its
own values back, so its later extension builds are not narrowed to one architecture. Runs on CPU: the GPU and the
compiler are stand-ins that record the environment the build sees."""

import os

import pytest

torch = pytest.importorskip("torch")
cpp_extension = pytest.importorskip("torch.utils.cpp_extension")

from marlin_fast import _ext  # noqa: E402


@pytest.fixture
def fake_gpu_build(monkeypatch, tmp_path):
    seen = {}

    def fake_load(**kwargs):
        seen.update(arch=os.environ.get("TORCH_CUDA_ARCH_LIST"), jobs=os.environ.get("MAX_JOBS"), **kwargs)
        return "module"

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(cpp_extension, "load", fake_load)
    monkeypatch.setenv("MARLIN_FAST_BUILD_DIR", str(tmp_path))
    return seen


@pytest.mark.parametrize("arch_before, jobs_before", [(None, None), ("8.0;9.0+PTX", "3")])
def test_the_build_sees_this_gpu_and_the_caller_keeps_its_environment(fake_gpu_build, monkeypatch, arch_before,
                                                                      jobs_before):
    for name, value in (("TORCH_CUDA_ARCH_LIST", arch_before), ("MAX_JOBS", jobs_before)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert _ext.load.__wrapped__() == "module"
    assert fake_gpu_build["arch"] == "9.0a" and fake_gpu_build["jobs"] == (jobs_before or str(os.cpu_count() or 4))
    assert os.environ.get("TORCH_CUDA_ARCH_LIST") == arch_before and os.environ.get("MAX_JOBS") == jobs_before


def test_a_failed_build_also_gives_the_environment_back(fake_gpu_build, monkeypatch):
    def broken_load(**kwargs):
        raise RuntimeError("nvcc failed")

    monkeypatch.setattr(cpp_extension, "load", broken_load)
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6")
    with pytest.raises(RuntimeError, match="nvcc failed"):
        _ext.load.__wrapped__()
    assert os.environ["TORCH_CUDA_ARCH_LIST"] == "8.6"


@pytest.mark.parametrize("capability, arch", [((9, 0), "9.0a"), ((8, 0), "8.0"), ((8, 9), "8.9"), ((10, 0), "10.0")])
def test_the_build_targets_sm_90a_on_hopper_only(fake_gpu_build, monkeypatch, tmp_path, capability, arch):
    # The wgmma kernel exists only in sm_90a code; "9.0a" code runs on no other device. A build directory of its own,
    # so that a plain sm_90 build left by an older version is never loaded in its place.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.delenv("MARLIN_FAST_BUILD_DIR")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    _ext.load.__wrapped__()
    assert fake_gpu_build["arch"] == arch
    assert fake_gpu_build["build_directory"].endswith(f"_sm{arch.replace('.', '')}")
