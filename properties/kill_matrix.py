"""`python -m properties.kill_matrix [--out PATH] ...`: the name the README documents, kept.

The code lives in properties.strength.kill_matrix.
"""

from properties.strength.kill_matrix import *  # noqa: F401,F403 - the same public names


if __name__ == "__main__":
    import sys

    from properties.strength.kill_matrix import main

    sys.exit(main())
