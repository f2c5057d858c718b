"""marlin-ref's own checkout runs its suite: activate the plugin (installed elsewhere, it stays off unless asked for,
see marlin_pytest), and run the laws first."""

pytest_plugins = ["properties.pytest_plugin"]

# Laws first (cheapest first), then everything else in collection order: `pytest -x` stops at a law failure in
# seconds. The smallest case of every law and cell comes before any full search (properties.cases.smallest).
LAW_ORDER = ("tests/test_laws_smallest.py", "tests/test_laws_layout.py", "tests/test_laws_scales.py",
             "tests/test_laws_prepare.py", "tests/test_laws_equivalences.py", "tests/test_laws_gemm.py",
             "tests/test_laws_moe_gemm.py", "tests/test_laws_linear.py")


def pytest_collection_modifyitems(items):
    rank = {path: i for i, path in enumerate(LAW_ORDER)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(LAW_ORDER)))   # stable: ties keep order
