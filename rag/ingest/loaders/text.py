"""Plain text and the markups people keep as text (Markdown, reStructuredText, AsciiDoc,
Org), and RTF through striprtf."""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import FileUnreadable
from ...types import LoadedDocument, PageText
from .common import NOT_TEXT, LoadContext, clean, decode_text, looks_binary


def load_text(path: Path, data: bytes, context: LoadContext, kind: str = "text") -> LoadedDocument:
    text, warning = decode_text(data)
    if looks_binary(text):
        raise FileUnreadable(NOT_TEXT)
    return LoadedDocument(path=str(path), kind=kind, pages=[PageText(number=None, text=clean(text))],
                          warnings=[warning] if warning else [])


def load_markdown(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    return load_text(path, data, context, kind="markdown")


_RTF_CODEPAGE = re.compile(rb"\\ansicpg(\d+)")
# RTF names a few code pages by number that Python knows under another name.
_CODEPAGES = {10000: "mac_roman", 10007: "mac_cyrillic", 10029: "mac_latin2", 65001: "utf-8"}


def load_rtf(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    from striprtf.striprtf import rtf_to_text

    if not data.lstrip().startswith(b"{\\rtf"):
        raise FileUnreadable("not an RTF file (it does not start with {\\rtf); check that it is not mislabeled")
    match = _RTF_CODEPAGE.search(data[:4096])
    number = int(match.group(1)) if match else 1252
    encoding = _CODEPAGES.get(number, f"cp{number}")
    try:
        "".encode(encoding)
    except LookupError:
        encoding = "cp1252"
    # RTF is 7-bit: other characters are escapes that striprtf decodes with this code page.
    text = rtf_to_text(data.decode("latin-1"), encoding=encoding, errors="replace")
    text = re.sub(r"[ \t]*\|[ \t]*$", "", clean(text), flags=re.MULTILINE)  # the bar after a table row's last cell
    return LoadedDocument(path=str(path), kind="rtf", pages=[PageText(number=None, text=text)])
