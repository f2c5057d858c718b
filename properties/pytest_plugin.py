"""Placeholder until the suite plugin lands (being written now)."""
pytest_plugins = ["properties.example_counter"]
