"""Errors whose messages are written for the person using Enclave.

Each message says what happened and, where it can, what to do about it. The CLI prints
`str(error)` on one line; the window shows it in a message box.
"""

from __future__ import annotations


class EnclaveError(Exception):
    """Base class: `str(error)` is a complete, user-facing sentence."""


class FileProblem(EnclaveError):
    """A single file could not be indexed. The batch goes on; the file is marked failed."""


class FileUnreadable(FileProblem):
    """The file is damaged, truncated, of the wrong type, or not text at all."""


class PasswordRequired(FileProblem):
    """An encrypted PDF that none of the given passwords opens."""

    def __init__(self, path: str, tried: int = 0):
        hint = (
            f"none of the {tried} given password(s) opened it"
            if tried
            else "give its password with --password-file"
        )
        super().__init__(f"password required: {hint}")
        self.path = path


class FileSkipped(EnclaveError):
    """Not an error: the file is of a type Enclave does not read, or holds no text."""


class ModelError(EnclaveError):
    """A model file is missing or cannot be used."""


class ModelNotFound(ModelError):
    pass


class ModelInvalid(ModelError):
    pass


class ModelCrashed(ModelError):
    """The model's process died (a signal, an abort, killed for memory); it was restarted."""

    def __init__(self, message: str, exit: str = ""):
        super().__init__(message)
        self.exit = exit  # "signal 11", "exit code 1"


class IndexLocked(EnclaveError):
    """Another Enclave process is writing to this data folder."""


class IndexDamaged(EnclaveError):
    """The catalog or vector store cannot be read."""


class RebuildRequired(EnclaveError):
    """The collection was built with another embedding model."""
