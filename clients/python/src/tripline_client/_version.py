"""The SDK's version, kept equal to the one in pyproject.toml (a test checks)."""

__version__ = "0.1.0"
