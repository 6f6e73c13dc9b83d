"""The package's version, in one place (the package, its model files and its metadata read it)."""

__version__ = "0.1.0"
