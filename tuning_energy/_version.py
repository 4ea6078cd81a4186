"""The package version, in one place (the package root, store/runs.py and the runner read it)."""

__version__ = "0.1.0"
