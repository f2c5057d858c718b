"""marlin-ref's own checkout runs its suite: activate the plugin (installed elsewhere, it stays off unless asked for,
see marlin_pytest)."""

pytest_plugins = ["properties.pytest_plugin"]
