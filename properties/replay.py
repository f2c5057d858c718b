"""`python -m properties.replay FILE... [--backend NAME]`: the name the README documents, kept.

The code lives in properties.reporting.replay.
"""

from properties.reporting.replay import *  # noqa: F401,F403 - the same public names


if __name__ == "__main__":
    import sys

    from properties.reporting.replay import main

    sys.exit(main())
