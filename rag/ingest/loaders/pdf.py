"""PDF: text by page with pypdf; pages without a text layer are read by OCR (see ocr.py)."""

from __future__ import annotations

import io
import logging
import re

from pypdf import PageObject, PasswordType, PdfReader
from pypdf.errors import LimitReachedError
from pypdf.generic import DictionaryObject, IndirectObject

from ...errors import FileUnreadable, PasswordRequired
from ...types import LoadedDocument, PageText
from .common import LoadContext, clean, detail

# pypdf logs a warning for every small defect it repairs; those are not the person's
# concern, and real failures still surface as exceptions.
logging.getLogger("pypdf").setLevel(logging.ERROR)

# A page with fewer letters and digits than this in its text layer is a scan (a stray page
# number or a scanner's stamp is not the page's text): it is read by OCR.
SCANNED_BELOW = 20


def _locked_page_count(data: bytes) -> int | None:
    """Page count of a PDF we cannot decrypt: the page tree itself is not encrypted."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        reader._override_encryption = True  # pypdf's own switch for reading structure unlocked
        return len(reader.pages)
    except Exception:  # object streams are encrypted too: then the count is unknown
        return None


def load_pdf(path, data: bytes, context: LoadContext) -> LoadedDocument:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
    except Exception as exc:
        raise FileUnreadable(
            f"not a valid PDF (the file may be damaged or mislabeled): {detail(exc)}"
        ) from exc

    password = None
    if encrypted:
        # The empty password first: files with only an owner password open without asking.
        for candidate in ("", *context.passwords):
            try:
                if reader.decrypt(candidate) != PasswordType.NOT_DECRYPTED:
                    password = candidate
                    break
            except Exception as exc:  # unsupported algorithm, missing crypto backend
                raise FileUnreadable(
                    f"this PDF's encryption is not supported: {detail(exc)}"
                ) from exc
        else:
            error = PasswordRequired(str(path), tried=len(context.passwords))
            error.page_count = _locked_page_count(data)
            raise error

    problems: list[str] = []
    page_objects, page_count = _pdf_page_objects(reader, data, problems)
    texts: dict[int, str] = {}
    for number in range(1, page_count + 1):
        text = ""
        if number <= len(page_objects):
            try:
                text = clean(page_objects[number - 1].extract_text() or "")
            except LimitReachedError as exc:  # pypdf's guard against decompression bombs
                raise FileUnreadable(
                    f"refused: page {number} holds compressed data that expands beyond the "
                    f"safety limit (a decompression bomb?): {detail(exc)}"
                ) from exc
            except Exception as exc:  # one bad page must not lose the others
                problems.append(f"page {number}: text could not be extracted ({detail(exc)})")
        if text.count("\ufffd") > 0.3 * len(text.strip()):
            # Fonts without a character map give replacement characters, not words.
            problems.append(f"page {number}: its fonts have no readable character map")
            text = ""
        texts[number] = text

    scanned = [n for n, text in texts.items() if sum(c.isalnum() for c in text) < SCANNED_BELOW]
    read: dict = {}
    if scanned and context.ocr and len(page_objects) == page_count:  # pdfium needs an intact page list
        from .ocr import read_pdf_pages

        read = read_pdf_pages(data, password, scanned, context, page_count)
    pages = []
    for number, text in texts.items():
        ocr_text, words = read.get(number, ("", ()))
        if ocr_text.strip():
            pages.append(PageText(number=number, text=ocr_text, words=words))
        else:
            pages.append(PageText(number=number, text=text))
    return LoadedDocument(path=str(path), kind="pdf", pages=pages, page_count=page_count, warnings=problems)


def _pdf_page_objects(reader: PdfReader, data: bytes, problems: list[str]):
    """The pages in order and the document's page count.

    When the page tree itself is damaged, pages are recovered from the objects that
    survive, and the count comes from the linearization header when there is one (it
    states the page count independently of the tree).
    """
    try:
        return list(reader.pages), len(reader.pages)
    except Exception as exc:
        damage = detail(exc)
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
