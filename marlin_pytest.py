"""marlin_pytest: the pytest entry point of marlin-ref, which does nothing unless the suite is asked for.

Installing marlin-ref registers this module with pytest (entry point `pytest11`, name "marlin_pytest"), so it is
loaded in every project of the environment. It therefore only declares the suite's command-line options (so that
`pytest --marlin-backend=...` is understood anywhere) and imports nothing: no hypothesis, no torch, no `properties`
package. Hypothesis settings, environment variables, output and other projects' modules stay as they were.

The suite (`properties.pytest_plugin`: fixtures, Hypothesis profiles, GPU pinning, the compliance report) is
activated only where it is asked for:

* in marlin-ref's own checkout (its conftest.py lists the plugin);
* with `-p properties.pytest_plugin`, or `pytest_plugins = ["properties.pytest_plugin"]` in a conftest.py;
* with any `--marlin-...` option of the table below on the command line.

`-p no:marlin_pytest` blocks this entry point altogether.

    >>> sorted(OPTIONS)[:3]
    ['--marlin-backend', '--marlin-count-examples', '--marlin-load']
"""

from __future__ import annotations

import pytest

PLUGIN = "properties.pytest_plugin"
ENV_BACKEND = "MARLIN_BACKEND"      # read only once the suite is active (properties.seam.backends.ENV_VAR)

# option -> addoption keywords; every option of the suite lives here, so a late activation still parses them all
OPTIONS = {
    "--marlin-backend": dict(default=None, metavar="NAME",
                             help=f"implementation under test: ref, torch, torch-cuda, cuda, vllm, marlin-ops:<ns>, "
                                  f"mutant:<name>, module:attribute (default: env {ENV_BACKEND}, else 'torch'); "
                                  f"activates the marlin-ref suite"),
    "--marlin-load": dict(action="append", default=None, metavar="PATH_OR_MODULE",
                          help="load the implementation under test first: a shared library (torch.ops.load_library) "
                               "or a Python module (imported); repeatable; env MARLIN_LOAD adds more"),
    "--marlin-count-examples": dict(default=None, metavar="PATH",
                                    help="write the total number of Hypothesis examples executed to PATH"),
    "--marlin-report": dict(default=None, metavar="PATH",
                            help="write the compliance table to PATH.json and PATH.md (a directory: DIR/compliance.*)"),
    "--marlin-save-failures": dict(action="store_true", default=False,
                                   help="write each failing law case to <regressions dir>/<law>-<hash>.json"),
    "--marlin-regressions-dir": dict(default=None, metavar="DIR",
                                     help="where --marlin-save-failures writes and tests/test_regressions.py reads "
                                          "(default: <rootdir>/tests/regressions)"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    declare_options(parser)


def declare_options(parser: pytest.Parser) -> None:
    """The suite's options, each once: the suite's plugin declares them too where this entry point is not installed
    (a checkout run with PYTHONPATH=.), and `-p properties.pytest_plugin` loads before entry points do."""
    group = parser.getgroup("marlin", "marlin-ref (any --marlin-... option activates the suite)")
    declared = {name for option in group.options for name in option.names()}
    for name, keywords in OPTIONS.items():
        if name not in declared:
            group.addoption(name, **keywords)


def asked_for(config: pytest.Config) -> bool:
    """Whether the command line gave any of the suite's options a value other than its default."""
    return any(config.getoption(name) != keywords.get("default") for name, keywords in OPTIONS.items())


def is_active(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin(PLUGIN)


@pytest.hookimpl(tryfirst=True)   # before Hypothesis' own pytest_configure loads --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    if is_active(config) or not asked_for(config):
        return
    import importlib
    try:                               # import first: an import failure is said in one line of ours
        importlib.import_module(PLUGIN)
    except ImportError as exc:
        raise pytest.UsageError(activation_error(exc)) from None
    config.pluginmanager.import_plugin(PLUGIN)   # registers it; its pytest_configure runs now, errors and all


def activation_error(exc: ImportError) -> str:
    """One line saying why the suite cannot start: a missing test extra, or another `properties` in the way."""
    missing = _missing_module(exc)
    if missing and missing.split(".")[0] in ("hypothesis", "torch"):
        return (f"marlin-ref's suite needs {missing.split('.')[0]}, which is not installed: "
                f"pip install 'marlin-ref[test]' (or leave out the --marlin-* options)")
    import importlib.util
    try:
        spec = importlib.util.find_spec("properties")
    except (ImportError, ValueError):
        spec = None
    theirs = spec is not None and spec.submodule_search_locations is None     # a module, not our package
    if theirs or (missing or "").startswith("properties"):
        return (f"marlin-ref's suite ({PLUGIN}) cannot be imported: 'properties' resolves to "
                f"{getattr(spec, 'origin', None)}, which shadows marlin-ref's package of that name "
                f"(rename that module, or run pytest from another folder)")
    return f"marlin-ref's suite ({PLUGIN}) cannot be imported: {type(exc).__name__}: {exc}"


def _missing_module(exc: BaseException | None) -> str | None:
    """The name of the module whose absence caused `exc`, following its chain of causes."""
    while exc is not None:
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            return exc.name
        exc = exc.__cause__ or exc.__context__
    return None
