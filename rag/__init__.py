"""Enclave's engine: loading, chunking, embedding, storing, retrieving and answering.

This package never imports Qt; the desktop window and the CLI are thin consumers of it.
"""

__version__ = "0.1.0"
