"""The package version: one definition, read by pyproject.toml and written into every metrics.json."""
__version__ = "0.1.0"
