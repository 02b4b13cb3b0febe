"""Which files Enclave reads: the one table of formats.

Every place that needs to know (the indexer's triage, the reader processes, the window's file
dialog, its drop hint and its source viewer) reads `FORMATS`. Adding a format is a module
with a `load(path, data, context)` function and one line here.

This module imports nothing heavy: the window and the indexer read it without pulling in a
parser. The reader processes import a format's module the first time they meet one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Format:
    name: str                    # what the person reads in the file dialog
    suffixes: tuple[str, ...]    # lower case, with the dot
    mime_types: tuple[str, ...]
    loader: str                  # "module:function" inside rag.ingest.loaders
    view: str = "text"           # how the source viewer shows it: "pdf", "image" or "text"


FORMATS: tuple[Format, ...] = (
    Format("PDF", (".pdf",), ("application/pdf",), "pdf:load_pdf", view="pdf"),
    Format("Word", (".docx",), ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",),
           "office:load_docx"),
    Format("PowerPoint", (".pptx",), ("application/vnd.openxmlformats-officedocument.presentationml.presentation",),
           "office:load_pptx"),
    Format("OpenDocument text", (".odt",), ("application/vnd.oasis.opendocument.text",), "office:load_odt"),
    Format("OpenDocument presentation", (".odp",), ("application/vnd.oasis.opendocument.presentation",),
           "office:load_odp"),
    Format("Excel", (".xlsx", ".xlsm"), ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                                         "application/vnd.ms-excel.sheet.macroEnabled.12"), "sheet:load_xlsx"),
    Format("Excel 97-2003", (".xls",), ("application/vnd.ms-excel",), "sheet:load_xls"),
    Format("OpenDocument spreadsheet", (".ods",), ("application/vnd.oasis.opendocument.spreadsheet",),
           "sheet:load_ods"),
    Format("CSV", (".csv", ".tsv"), ("text/csv", "text/tab-separated-values"), "sheet:load_csv"),
    Format("E-book", (".epub",), ("application/epub+zip",), "ebook:load_epub"),
    Format("E-mail", (".eml",), ("message/rfc822",), "mail:load_eml"),
    Format("Outlook message", (".msg",), ("application/vnd.ms-outlook",), "mail:load_msg"),
    Format("Rich text", (".rtf",), ("application/rtf", "text/rtf"), "text:load_rtf"),
    Format("HTML", (".html", ".htm", ".xhtml"), ("text/html", "application/xhtml+xml"), "html:load_html"),
    Format("Markdown", (".md", ".markdown"), ("text/markdown",), "text:load_markdown"),
    Format("Text", (".txt", ".text", ".log", ".rst", ".adoc", ".asciidoc", ".org", ".textile"),
           ("text/plain", "text/x-rst", "text/asciidoc", "text/org"), "text:load_text"),
    Format("Image (read by OCR)", (".png", ".jpg", ".jpeg", ".tif", ".tiff"),
           ("image/png", "image/jpeg", "image/tiff"), "ocr:load_image", view="image"),
)

# Formats we recognise but do not read, and what the person can do instead.
NOT_READ: dict[str, str] = {
    ".doc": "old Word 97-2003 .doc files are not read: save it as .docx and add it again",
    ".ppt": "old PowerPoint 97-2003 .ppt files are not read: save it as .pptx and add it again",
}

_BY_SUFFIX: dict[str, Format] = {suffix: fmt for fmt in FORMATS for suffix in fmt.suffixes}
SUPPORTED_SUFFIXES = frozenset(_BY_SUFFIX)
MIME_TYPES = frozenset(mime for fmt in FORMATS for mime in fmt.mime_types)


def format_for(path: str | Path) -> Format | None:
    return _BY_SUFFIX.get(Path(path).suffix.lower())


def unsupported_reason(path: str | Path) -> str | None:
    """Why a file will not be read, or None when it will."""
    suffix = Path(path).suffix.lower()
    if suffix in _BY_SUFFIX:
        return None
    if suffix in NOT_READ:
        return NOT_READ[suffix]
    return f"unsupported file type {suffix or '(no extension)'}"


def loader_for(fmt: Format):
    module, function = fmt.loader.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)


def view_for(path: str | Path) -> str:
    fmt = format_for(path)
    return fmt.view if fmt else "text"


def file_dialog_filter() -> str:
    """The file dialog's filter: every format we read first, then one line per format."""
    everything = " ".join(f"*{s}" for s in sorted(SUPPORTED_SUFFIXES))
    lines = [f"Documents ({everything})"]
    lines += [f"{fmt.name} ({' '.join('*' + s for s in fmt.suffixes)})" for fmt in FORMATS]
    return ";;".join(lines + ["All files (*)"])


def short_list() -> str:
    """A line for the drop hint: the formats, by name."""
    names = [fmt.name.split(" (")[0] for fmt in FORMATS]
    return ", ".join(names[:-1]) + " and " + names[-1].lower() + "s"
