"""The single source of Pachón's version number."""

__version__ = "0.1.0"
