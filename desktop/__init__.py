"""Enclave's desktop window (PySide6). The engine lives in `rag`; this package only shows it."""
