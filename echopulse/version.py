"""The package version, in a module of its own so that any layer can say which echopulse wrote a file."""

__version__ = "0.1.0"
