"""Load the marlin pytest plugin from a checkout; an installed package loads it by its pytest11 entry point."""

import sys

pytest_plugins = [] if "properties.pytest_plugin" in sys.modules else ["properties.pytest_plugin"]
