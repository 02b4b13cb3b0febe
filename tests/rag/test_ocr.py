"""OCR of scanned pages and images with the bundled models: a few pages only (each takes
seconds on a CPU); the whole of ../shared/corpus/scanned is measured by
benchmarks/ocr_quality.py."""

from __future__ import annotations

import pytest

from rag.ingest.loaders import LoadContext, load
from rag.ingest.loaders.ocr import _unturn
from tests.conftest import CORPUS, require

SCANNED = CORPUS / "scanned"
DOCLING = "Docling bundles PDF document conversion to JSON and Markdown in an easy self contained package"


def squash(text: str) -> str:
    return " ".join(text.split())


def test_a_scanned_pdf_page_is_read_with_word_boxes():
    seen = []
    doc = load(require(SCANNED / "ocr_test.pdf"), context=LoadContext(on_ocr_page=lambda p, n: seen.append((p, n))))
    assert seen == [(1, 1)]  # the reader is told, so progress can say "reading scanned page 1 of 1"
    page = doc.pages[0]
    assert page.number == 1 and doc.page_count == 1
    assert squash(page.text) == DOCLING
    assert page.words, "no word boxes"
    for start, end, x0, y0, x1, y1 in page.words:
        assert 0 <= start < end <= len(page.text)
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    docling = next(w for w in page.words if page.text[w[0]:w[1]] == "Docling")
    # The line sits in the upper part of a big white A4 page, on its left.
    assert docling[3] < 0.3 and docling[2] < 0.3


def test_a_page_turned_a_quarter_is_read_upright():
    doc = load(require(SCANNED / "phototest-rotated-R.png"))
    assert squash(doc.pages[0].text).startswith("This is a lot of 12 point text to test the")
    first = doc.pages[0].words[0]
    # The image is turned clockwise: the first line runs down its right-hand side.
    assert first[0] == 0 and first[2] > 0.5 and (first[5] - first[3]) > (first[4] - first[2])


def test_ocr_off_leaves_scans_alone():
    with pytest.raises(Exception, match="turn on reading scanned pages"):
        load(require(SCANNED / "ocr_test.pdf"), context=LoadContext(ocr=False))


def test_boxes_turn_back_to_the_page_as_shown():
    box = (10, 20, 30, 60)  # on a 100 x 200 picture turned once anticlockwise
    assert _unturn(box, 100, 200, 0) == (0.1, 0.1, 0.3, 0.3)
    assert _unturn(box, 100, 200, 1) == (0.7, 0.1, 0.9, 0.3)
    assert _unturn(box, 100, 200, 2) == (0.7, 0.7, 0.9, 0.9)
