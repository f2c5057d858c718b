"""properties: the Hypothesis side of marlin-ref.

    backends    the seam: which implementation is under test (ref, torch, torch-cuda, module:attr)
    strategies  valid cases by construction (tile counts, schemes, seeds), shrinking to the smallest
    transforms  TRANSFORMS: one row per operation (cases, inputs, inverse, report layout)
    laws        the laws, run_op (inputs never mutated), check/replay; the only tolerances
    report      byte-exact comparison and failure messages in both layouts
    pytest_plugin  --marlin-backend, fixtures, Hypothesis profiles

Importing this package imports nothing heavy; torch is imported only when a torch backend is built.
"""
