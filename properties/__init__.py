"""properties: the Hypothesis side of marlin-ref, one sub-package per concern.

    seam/        which implementation is under test: backends, capabilities, --marlin-load, adapters, GPU pinning
    cases/       the cases the laws draw: strategies, the TRANSFORMS registry, the GEMM's cases and laws
    laws.py      the laws, run_op (inputs never mutated), check; the only tolerances; `python -m properties.laws`
    reporting/   failure reports, compliance cells and table, example counters, replayable cases
    strength/    mutants, the kill matrix, the mismatch diagnosis
    pytest_plugin.py  the suite as a pytest plugin (fixtures, profiles), active only where asked for

`properties.replay`, `properties.kill_matrix` and `properties.diagnose` are the names the README documents for
reporting.replay, strength.kill_matrix and strength.diagnose, kept as they were.

Importing this package imports nothing heavy; torch is imported only when a torch backend is built.
"""
