"""--marlin-load (properties.seam.loading): libraries and modules load before the backend resolves, in the controller and
in every xdist worker; what cannot load is a usage error naming it; replay commands repeat what was loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from properties.reporting.report import repro_command
from properties.seam import loading
from test_plugin_opt_in import entry_point_installed

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_loaded(monkeypatch):
    monkeypatch.setattr(loading, "LOADED", [])
    return loading.LOADED


def test_a_shared_library_is_loaded_with_torch_and_remembered(fresh_loaded):
    # any real shared object shows the path is taken; torch's own smallest library registers nothing
    library = Path(torch.__file__).parent / "lib" / "libtorch_global_deps.so"
    if not library.is_file():
        pytest.skip(f"{library} is not part of this torch build")
    assert loading.load(str(library)) == f"{library} (torch.ops.load_library)"
    assert fresh_loaded == [str(library)]
    assert loading.load(str(library)).endswith("(already loaded)") and fresh_loaded == [str(library)]
    assert repro_command("matches_oracle", "marlin_permute_bias", {"seed": 0}, "torch").endswith(
        f"--backend 'torch' --load '{library}'")


@pytest.mark.parametrize("item, message", [
    ("/no/such/_C.so", "--marlin-load: the library '/no/such/_C.so' does not exist"),
    ("missing_lib.so", "--marlin-load: the library 'missing_lib.so' does not exist"),
    ("no_such_package_xyz.ops", "--marlin-load: importing the module 'no_such_package_xyz.ops' failed: "
                                "ModuleNotFoundError"),
])
def test_what_cannot_load_is_named(fresh_loaded, item, message):
    with pytest.raises(loading.LoadError, match="^" + message.replace(".", r"\.").replace("(", r"\(")):
        loading.load(item)
    assert fresh_loaded == []


def test_a_file_that_is_not_a_library_fails_to_load_with_its_name(fresh_loaded, tmp_path):
    fake = tmp_path / "not_a_library.so"
    fake.write_text("plain text")
    with pytest.raises(loading.LoadError, match="loading the library '.*not_a_library.so' failed: OSError"):
        loading.load(str(fake))


def _activation() -> list[str]:
    """Installed, any --marlin-* option activates the suite (entry point marlin_pytest); a checkout run without
    installing (a GPU runner with PYTHONPATH=<checkout>) names the suite's plugin instead."""
    return [] if entry_point_installed() else ["-p", "properties.pytest_plugin"]


def _run(tmp_path, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({"PYTHONPATH": f"{tmp_path}{os.pathsep}{env.get('PYTHONPATH', '')}", **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *_activation(), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_a_missing_library_stops_pytest_with_one_line(tmp_path):
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    done = _run(tmp_path, "--marlin-load", "/no/such/_C.so", "--marlin-backend=ref")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert (done.stdout + done.stderr).strip().splitlines() == [
        "ERROR: --marlin-load: the library '/no/such/_C.so' does not exist"]


def test_every_xdist_worker_and_the_controller_load_before_the_backend_resolves(tmp_path):
    # the loaded module defines the backend the run names, so resolving it proves the order; each process that
    # imports it leaves its pid behind
    (tmp_path / "my_marlin_ops.py").write_text(textwrap.dedent("""
        import os
        open(os.path.join(os.environ["MARKS"], str(os.getpid())), "w").close()
    """))
    (tmp_path / "test_uses_it.py").write_text(textwrap.dedent("""
        import sys
        def test_loaded(backend):
            assert "my_marlin_ops" in sys.modules and backend.name == "ref"
    """) + "".join(f"def test_more_{i}(backend):\n    pass\n" for i in range(4)))
    marks = tmp_path / "marks"
    marks.mkdir()
    done = _run(tmp_path, "-n", "2", "--marlin-backend=ref", env_extra={"MARKS": str(marks),
                                                                        "MARLIN_LOAD": "my_marlin_ops"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(list(marks.iterdir())) == 3          # the controller and two workers


def test_requested_joins_the_option_and_the_environment():
    assert loading.requested(None, {}) == []
    assert loading.requested(["a.so", " "], {"MARLIN_LOAD": f"b.ops{os.pathsep}{os.pathsep}a.so"}) == ["a.so", "b.ops"]
