"""The cases the laws draw: small JSON dicts that fix every input, built by construction.

    strategies      Hypothesis strategies of valid cases, shrinking to the smallest legal shape
    transforms      TRANSFORMS: one registry row per operation (cases, inputs, inverse, report layout)
    gemm_cases      the GEMM's cases and laws (§3), on Marlin tensors the oracle prepared
"""
