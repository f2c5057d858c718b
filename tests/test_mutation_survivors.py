"""Laws and checks that kill the survivors of the mutmut benchmark (bench/mutmut/run.sh, bench/results/mutmut.md).

Each test names the mutmut mutants it was written for. They go through the backend seam (`backend` fixture,
properties.laws.check) or compare the backend under test with the oracle directly.
"""
