"""`properties.diagnose.explain_mismatch(got, want, layout=...)`: the name the README documents, kept.

The code lives in properties.strength.diagnose.
"""

from properties.strength.diagnose import *  # noqa: F401,F403 - the same public names

