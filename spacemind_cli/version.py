"""The package's version, in a core module so that every layer may read it (the package root
is the library's API, above the layers)."""

__version__ = "0.1.0"
