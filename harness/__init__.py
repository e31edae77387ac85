"""Ettin encoder-vs-decoder evaluation harness."""

__version__ = "0.1.0"
