"""Turn a file on disk into text, page by page.

One small function per format, chosen by the file's suffix. Every loader reads the file
once, never follows anything the document links to (images, stylesheets, URLs), and
reports problems only as `FileSkipped` (nothing to index) or `FileProblem` subclasses
(`FileUnreadable`, `PasswordRequired`), whose messages are shown to the person as-is.
"""

from __future__ import annotations

import codecs
import importlib.util
import io
import logging
import re
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import docx
from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
from bs4.dammit import EncodingDetector
from charset_normalizer import from_bytes
from docx.oxml.ns import qn
from docx.text.paragraph import Paragraph
from pypdf import PageObject, PasswordType, PdfReader
from pypdf.errors import LimitReachedError
from pypdf.generic import DictionaryObject, IndirectObject

from .errors import EnclaveError, FileSkipped, FileUnreadable, PasswordRequired
from .types import LoadedDocument, PageText

# pypdf logs a warning for every small defect it repairs; those are not the person's
# concern, and real failures still surface as exceptions.
logging.getLogger("pypdf").setLevel(logging.ERROR)

TEXT_SUFFIXES = frozenset({".txt", ".text", ".log", ".csv", ".rst"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
SUPPORTED_SUFFIXES = frozenset(
    {".pdf", ".docx"} | TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES
)

NO_TEXT = "no text found (empty file or scanned pages without a text layer)"


def load(path: str | Path, passwords: Sequence[str] = ()) -> LoadedDocument:
    """Read `path` and return its text.

    Raises FileSkipped (unsupported type, no text), FileUnreadable (damaged, mislabeled,
    binary, unreadable from disk) or PasswordRequired (encrypted PDF, no working password).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        what = suffix if suffix else "(no extension)"
        raise FileSkipped(f"unsupported file type {what}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileUnreadable(f"could not read the file: {exc.strerror or exc}") from exc
    if not data:
        raise FileSkipped(NO_TEXT)
    try:
        doc = loader(path, data, passwords)
    except (EnclaveError, MemoryError):
        raise  # MemoryError: the isolated reader reports it as a memory limit, not damage
    except Exception as exc:  # a parser bug must cost one file, never the whole batch
        raise FileUnreadable(
            f"could not read the file (it may be damaged): {_detail(exc)}"
        ) from exc
    if not any(page.text.strip() for page in doc.pages):
        if doc.page_count:
            err = FileSkipped(
                f"no text found in its {doc.page_count} page(s) "
                "(scanned pages without a text layer cannot be read)"
            )
        else:
            err = FileSkipped(NO_TEXT)
        err.page_count = doc.page_count  # the catalog still records how many pages there are
        raise err
    return doc


def _out_of_memory(exc: BaseException) -> bool:
    """zlib reports a failed allocation as zlib.error, not MemoryError."""
    return isinstance(exc, MemoryError) or (isinstance(exc, zlib.error) and "allocate" in str(exc))


def _detail(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clean(text: str) -> str:
    """One newline convention and no NULs, whatever the source."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


# --- PDF ---------------------------------------------------------------------------


def _locked_page_count(data: bytes) -> int | None:
    """Page count of a PDF we cannot decrypt: the page tree itself is not encrypted."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        reader._override_encryption = True  # pypdf's own switch for reading structure unlocked
        return len(reader.pages)
    except Exception:  # object streams are encrypted too: then the count is unknown
        return None


def _load_pdf(path: Path, data: bytes, passwords: Sequence[str]) -> LoadedDocument:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
    except Exception as exc:
        raise FileUnreadable(
            f"not a valid PDF (the file may be damaged or mislabeled): {_detail(exc)}"
        ) from exc

    if encrypted:
        # The empty password first: files with only an owner password open without asking.
        for candidate in ("", *passwords):
            try:
                if reader.decrypt(candidate) != PasswordType.NOT_DECRYPTED:
                    break
            except Exception as exc:  # unsupported algorithm, missing crypto backend
                raise FileUnreadable(
                    f"this PDF's encryption is not supported: {_detail(exc)}"
                ) from exc
        else:
            error = PasswordRequired(str(path), tried=len(passwords))
            error.page_count = _locked_page_count(data)
            raise error

    problems: list[str] = []
    page_objects, page_count = _pdf_page_objects(reader, data, problems)
    pages: list[PageText] = []
    for number in range(1, page_count + 1):
        text = ""
        if number <= len(page_objects):
            try:
                text = _clean(page_objects[number - 1].extract_text() or "")
            except LimitReachedError as exc:  # pypdf's guard against decompression bombs
                raise FileUnreadable(
                    f"refused: page {number} holds compressed data that expands beyond the "
                    f"safety limit (a decompression bomb?): {_detail(exc)}"
                ) from exc
            except Exception as exc:  # one bad page must not lose the others
                problems.append(f"page {number}: text could not be extracted ({_detail(exc)})")
        if text.count("\ufffd") > 0.3 * len(text.strip()):
            # Fonts without a character map give replacement characters, not words.
            problems.append(f"page {number}: its fonts have no readable character map")
            text = ""
        pages.append(PageText(number=number, text=text))
    return LoadedDocument(
        path=str(path), kind="pdf", pages=pages, page_count=page_count, warnings=problems
    )


def _pdf_page_objects(reader: PdfReader, data: bytes, problems: list[str]):
    """The pages in order and the document's page count.

    When the page tree itself is damaged, pages are recovered from the objects that
    survive, and the count comes from the linearization header when there is one (it
    states the page count independently of the tree).
    """
    try:
        return list(reader.pages), len(reader.pages)
    except Exception as exc:
        damage = _detail(exc)
    linearized = re.search(rb"/Linearized\b[^>]*?/N\s+(\d+)", data[:2048])
    first_page = re.search(rb"/Linearized\b[^>]*?/O\s+(\d+)", data[:2048])
    found = []
    numbers = [(num, gen) for gen, nums in reader.xref.items() for num in nums]
    numbers += [(num, 0) for num in reader.xref_objStm]
    for num, gen in sorted(set(numbers)):
        ref = IndirectObject(num, gen, reader)
        try:
            obj = ref.get_object()
        except Exception:
            continue
        if isinstance(obj, DictionaryObject) and obj.get("/Type") == "/Page":
            page = PageObject(reader, ref)
            page.update(obj)
            found.append((num, page))
    if not found:
        raise FileUnreadable(f"not a valid PDF (its page list is damaged): {damage}")
    # A linearized file names its first page; the rest keep their object order.
    first = int(first_page.group(1)) if first_page else None
    found.sort(key=lambda item: (item[0] != first, item[0]))
    count = max(int(linearized.group(1)) if linearized else 0, len(found))
    problems.append(
        f"the PDF's page list is damaged: recovered {len(found)} of {count} page(s); "
        "page numbers after the first may be off"
    )
    return [page for _, page in found], count


# --- plain text and markdown -------------------------------------------------------

# Longest BOMs first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_WIDE_ENCODINGS = ("utf_16_le", "utf_16_be", "utf_32_le", "utf_32_be")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
NOT_TEXT = (
    "not a text file: it looks like binary data (check that the file is not mislabeled)"
)


def _decode_text(data: bytes) -> tuple[str, str | None]:
    """Decode bytes of unknown encoding; return the text and a warning, if any."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace"), None
    if b"\x00" in data:
        encoding = _wide_encoding(data)
        if encoding is None:
            raise FileUnreadable(NOT_TEXT)
        try:
            return data.decode(encoding), None
        except UnicodeDecodeError as exc:
            raise FileUnreadable(NOT_TEXT) from exc
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    # Not UTF-8: most such files on a desktop are Windows-1252 (a superset of Latin-1
    # for printable text). Latin-1 accepts every byte, for the few holes cp1252 has.
    try:
        return data.decode("cp1252"), "decoded as Windows-1252 (the file is not UTF-8)"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "decoded as Latin-1 (the file is not UTF-8)"


def _wide_encoding(data: bytes) -> str | None:
    """The UTF-16/32 variant of a BOM-less file, or None when its NULs look like binary.

    Text in UTF-16/32 has its NUL bytes at fixed offsets within each code unit (the
    high bytes of Latin characters); binary data has them anywhere.
    """
    sample = data[:8192]
    for unit, layouts in (
        (4, {(2, 3): "utf_32_le", (0, 1): "utf_32_be"}),
        (2, {(1,): "utf_16_le", (0,): "utf_16_be"}),
    ):
        if len(data) % unit:
            continue
        units = len(sample) // unit or 1
        nuls = [sample[i::unit].count(0) for i in range(unit)]
        for slots, encoding in layouts.items():
            in_slots = sum(nuls[i] for i in slots)
            regular = all(nuls[i] > 0.5 * units for i in slots)
            if regular and sum(nuls) - in_slots <= 0.02 * in_slots:
                return _confirm_wide(sample, encoding)
    return None


def _confirm_wide(sample: bytes, guess: str) -> str:
    # The statistical detector settles the rare cases the NUL layout leaves open
    # (e.g. UTF-32 text that also decodes as UTF-16).
    best = from_bytes(sample, cp_isolation=list(_WIDE_ENCODINGS)).best()
    return best.encoding if best is not None and best.encoding in _WIDE_ENCODINGS else guess


def _looks_binary(text: str) -> bool:
    sample = text[:8192]
    return bool(sample) and len(_CONTROL.findall(sample)) > 0.05 * len(sample)


def _load_text(path: Path, data: bytes, passwords: Sequence[str]) -> LoadedDocument:
    text, warning = _decode_text(data)
    if _looks_binary(text):
        raise FileUnreadable(NOT_TEXT)
    kind = "markdown" if path.suffix.lower() in MARKDOWN_SUFFIXES else "text"
    return LoadedDocument(
        path=str(path),
        kind=kind,
        pages=[PageText(number=None, text=_clean(text))],
        warnings=[warning] if warning else [],
    )


# --- HTML --------------------------------------------------------------------------

_INVISIBLE_TAGS = (
    "script", "style", "noscript", "template", "head", "svg", "iframe", "object",
    "embed", "canvas",
)  # fmt: skip
_BLOCK_TAGS = (
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "details",
    "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p",
    "pre", "section", "summary", "table", "tr", "ul",
)  # fmt: skip
_CELL_TAGS = ("td", "th")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
# Marks a line break we want while HTML's own whitespace is collapsed: a Unicode
# noncharacter, so neither real text nor the whitespace pattern matches it.
_BREAK = "\ufdd0"


# lxml (a dependency of python-docx) parses large pages several times faster.
_HTML_PARSER = "lxml" if importlib.util.find_spec("lxml") else "html.parser"


def _decode_html(data: bytes) -> str:
    """BOM, then the page's declared charset, then UTF-8, then Windows-1252."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    declared = EncodingDetector.find_declared_encoding(data, is_html=True)
    candidates = [declared] if declared else []
    candidates += ["utf-8"]
    for encoding in candidates:
        try:
            return data.decode(_html_codec(encoding))
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("cp1252", errors="replace")


def _html_codec(label: str) -> str:
    # Browsers read Latin-1 and ASCII labels as Windows-1252; so do we.
    label = label.strip().lower()
    return "cp1252" if label in {"iso-8859-1", "latin1", "latin-1", "us-ascii", "ascii"} else label


def _load_html(path: Path, data: bytes, passwords: Sequence[str]) -> LoadedDocument:
    markup = _decode_html(data).replace(_BREAK, " ")
    with warnings.catch_warnings():
        # XHTML (e.g. inline-XBRL filings) is read as HTML on purpose: browsers do too.
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(markup, _HTML_PARSER)
    hidden = soup.find_all(_INVISIBLE_TAGS)
    hidden += soup.find_all(attrs={"hidden": True})
    hidden += soup.find_all(style=_HIDDEN_STYLE)
    for tag in hidden:
        tag.decompose()
    # Keep the line structure of preformatted text before whitespace is collapsed.
    for pre in soup.find_all(["pre", "textarea"]):
        for string in pre.find_all(string=True):
            string.replace_with(string.replace("\n", _BREAK))
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before(_BREAK)
        tag.insert_after(_BREAK)
    for cell in soup.find_all(_CELL_TAGS):
        cell.insert_after(" | ")
    # get_text skips comments, doctypes and processing instructions.
    text = re.sub(r"\s+", " ", soup.get_text())
    lines = (line.strip(" |") for line in text.split(_BREAK))
    text = "\n".join(line for line in lines if line)
    return LoadedDocument(path=str(path), kind="html", pages=[PageText(None, text)])


# --- DOCX --------------------------------------------------------------------------


def _load_docx(path: Path, data: bytes, passwords: Sequence[str]) -> LoadedDocument:
    if data.startswith(b"\xd0\xcf\x11\xe0"):  # OLE container: legacy .doc or encrypted .docx
        raise FileUnreadable(
            "not a .docx file: it is an old Word .doc or a password-protected document; "
            "save it as an unprotected .docx and add it again"
        )
    try:
        document = docx.Document(io.BytesIO(data))
        body = document.element.body
    except Exception as exc:
        if _out_of_memory(exc):  # a zip bomb: report the memory limit, not damage
            raise MemoryError(str(exc)) from exc
        raise FileUnreadable(
            f"not a valid Word document (the file may be damaged or mislabeled): {_detail(exc)}"
        ) from exc

    problems: list[str] = []
    lines = list(_docx_lines(body))
    # Headers and footers repeat on every page; keep each distinct one once, at the end.
    seen: set[str] = set()
    try:
        for section in document.sections:
            for part in (
                section.header, section.first_page_header, section.even_page_header,
                section.footer, section.first_page_footer, section.even_page_footer,
            ):  # fmt: skip
                if part.is_linked_to_previous:
                    continue
                text = "\n".join(_docx_lines(part._element))
                if text.strip() and text not in seen:
                    seen.add(text)
                    lines.append(text)
    except Exception as exc:
        problems.append(f"headers and footers could not be read ({_detail(exc)})")
    text = _clean("\n".join(lines))
    return LoadedDocument(
        path=str(path), kind="docx", pages=[PageText(None, text)], warnings=problems
    )


def _docx_lines(container) -> list[str]:
    """Paragraphs and tables of a body, header, footer or table cell, in document order."""
    p_tag, tbl_tag, sdt_tag = qn("w:p"), qn("w:tbl"), qn("w:sdt")
    lines: list[str] = []
    for child in container.iterchildren():
        if child.tag == p_tag:
            text = Paragraph(child, None).text
            if text.strip():
                lines.append(text)
        elif child.tag == tbl_tag:
            lines.extend(_docx_table_rows(child))
        elif child.tag == sdt_tag:  # content control: its content sits one level down
            for content in child.iterchildren(qn("w:sdtContent")):
                lines.extend(_docx_lines(content))
    return lines


def _docx_table_rows(tbl) -> list[str]:
    # Cells are read straight from the XML: python-docx's grid arithmetic fails on rows
    # with missing or offset cells, which real files contain.
    rows = []
    for tr in tbl.xpath("./w:tr | ./w:sdt/w:sdtContent/w:tr"):
        cells = [
            "" if _continues_merge(tc) else " ".join(_docx_lines(tc)).strip()
            for tc in tr.xpath("./w:tc | ./w:sdt/w:sdtContent/w:tc")
        ]
        if any(cells):
            rows.append(" | ".join(cells))
    return rows


def _continues_merge(tc) -> bool:
    # A vertically merged cell shows the text of the cell where the merge starts; Word
    # ignores whatever the continuation cells still hold.
    return bool(tc.xpath("./w:tcPr/w:vMerge[not(@w:val) or @w:val='continue']"))


_Loader = Callable[[Path, bytes, Sequence[str]], LoadedDocument]
_LOADERS: dict[str, _Loader] = {
    ".pdf": _load_pdf,
    ".docx": _load_docx,
    **{suffix: _load_text for suffix in TEXT_SUFFIXES | MARKDOWN_SUFFIXES},
    **{suffix: _load_html for suffix in HTML_SUFFIXES},
}
