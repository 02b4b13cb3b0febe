"""Turn a file on disk into text, unit by unit (pages, slides, sheets, chapters, mails).

One module per family of formats (pdf, office, sheet, text, html, ebook, mail, ocr) and one
table, `registry.FORMATS`, that says which module reads which suffix. Every loader reads the
file once, never follows anything the document links to (images, stylesheets, URLs), and
reports problems only as `FileSkipped` (nothing to index) or `FileProblem` subclasses
(`FileUnreadable`, `PasswordRequired`), whose messages are shown to the person as-is.

Loaders run inside the isolated reader processes (rag/ingest/parsing.py), under their time and
memory limits; importing this package imports no parser.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...errors import EnclaveError, FileSkipped, FileUnreadable
from ...types import LoadedDocument
from .common import LoadContext, detail
from .registry import FORMATS, NOT_READ, SUPPORTED_SUFFIXES, format_for, loader_for, unsupported_reason

__all__ = ["FORMATS", "NOT_READ", "SUPPORTED_SUFFIXES", "LoadContext", "load", "format_for", "unsupported_reason"]

NO_TEXT = "no text found (empty file or scanned pages without a text layer)"


def load(path: str | Path, passwords: Sequence[str] = (), context: LoadContext | None = None) -> LoadedDocument:
    """Read `path` and return its text.

    Raises FileSkipped (unsupported type, no text), FileUnreadable (damaged, mislabeled,
    binary, unreadable from disk) or PasswordRequired (encrypted, no working password).
    """
    path = Path(path)
    context = context or LoadContext()
    if passwords:
        context.passwords = tuple(passwords)
    fmt = format_for(path)
    if fmt is None:
        raise FileSkipped(unsupported_reason(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileUnreadable(f"could not read the file: {exc.strerror or exc}") from exc
    if not data:
        raise FileSkipped(NO_TEXT)
    try:
        doc = loader_for(fmt)(path, data, context)
    except (EnclaveError, MemoryError):
        raise  # MemoryError: the isolated reader reports it as a memory limit, not damage
    except Exception as exc:  # a parser bug must cost one file, never the whole batch
        raise FileUnreadable(f"could not read the file (it may be damaged): {detail(exc)}") from exc
    doc.warnings = context.warnings + [w for w in doc.warnings if w not in context.warnings]
    if not any(page.text.strip() for page in doc.pages):
        if doc.page_count:
            scanned = "turn on reading scanned pages (OCR) in Settings" if not context.ocr else "OCR found no text"
            err = FileSkipped(f"no text found in its {doc.page_count} page(s) ({scanned})")
        else:
            err = FileSkipped(NO_TEXT)
        err.page_count = doc.page_count  # the catalog still records how many pages there are
        raise err
    return doc
