"""The suite's own strength: planted bugs and whether the laws kill them.

    mutations       the building blocks of plausible bugs (wrong interleave, tile order, scale table, ...)
    mutants         MUTANTS: named bugs from real ones (spec §6), as backends "mutant:<name>[@base]"
    kill_matrix     every mutant against the laws, each in its own pytest subprocess (CLI)
    diagnose        explain_mismatch: which planted bug a wrong Marlin weight looks like
"""
