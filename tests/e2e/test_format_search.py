"""Every new format end to end: ../shared/corpus/formats and a few of ../shared/corpus/scanned
are indexed once (real reader processes, OCR, the real embedding model, a real store), then a
fact from each file (from the READMEs there) must bring back that file, with the right slide,
sheet and rows, chapter or mail, as the first source.

The READMEs and ground-truth text files are left out: they hold the facts themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.config import Settings
from rag.engine import Engine
from tests.conftest import CORPUS, require

FORMATS = CORPUS / "formats"
SCANNED = CORPUS / "scanned"
# One of each kind of scan, each a page or two: OCR takes seconds a page on a CPU.
SCANS = ["ocr_test.pdf", "francais.pdf", "phototest.tif", "phototest-rotated-R.png",
         "layout-parser-paper-fast.jpg", "sample_with_rotation_mismatch.pdf"]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, real_embedder):
    require(FORMATS)
    require(SCANNED)
    folder = tmp_path_factory.mktemp("formats")
    for path in FORMATS.iterdir():
        if not path.name.startswith(("README", "LICENSE")):
            shutil.copy(path, folder / path.name)
    for name in SCANS:
        shutil.copy(SCANNED / name, folder / name)
    data = tmp_path_factory.mktemp("formats-data")
    engine = Engine(data, settings=Settings(top_k=3), embedder=real_embedder)
    notes = []
    report = None
    for event in engine.index([folder]):
        if hasattr(event, "detail"):
            notes.append(event.detail)
        else:
            report = event
    yield engine, folder, data, report, notes
    engine.close()


def test_every_file_the_registry_lists_is_read(indexed):
    _, folder, _, report, notes = indexed
    skipped = {Path(s["path"]).name: s["reason"] for s in report.skipped}
    failed = {Path(f["path"]).name: f["reason"] for f in report.failed}
    assert set(skipped) == {"docling-legacy_sample.doc", "docling-legacy_sample.ppt"}, skipped
    assert "save it as .docx" in skipped["docling-legacy_sample.doc"]
    assert set(failed) == {"password_protected.xlsx"}, failed
    assert failed["password_protected.xlsx"].startswith("password required")
    assert report.indexed == len(list(folder.iterdir())) - 3
    assert "reading scanned page 1 of 1" in notes  # the progress the window shows


FACTS = [
    # (question, file, the unit or page the first source must name)
    ("How many Stanley Cups have the Maple Leafs won since 67?", "stanley-cups.xlsx",
     "sheet 'Stanley Cups Since 67', rows"),
    # markitdown-test.xls and textract-raw_text.ods are twins of these two: either file will do.
    ("6ff4173b-42a5-4784-9b19-f49caff4d93d", ("markitdown-test.xlsx", "markitdown-test.xls"), "sheet 'Sheet1', rows"),
    ("Zone NA sales in millions of CHF", "2023-half-year-analyses-by-segment.xlsx",
     "sheet 'OS-Rev.and results 30 06 2023', rows"),
    ("Financial performance topics: group financial performance, segmental results", "vodafone.xlsx",
     "sheet 'Index', rows"),
    ("IFERROR returns a different result if the first argument evaluates to an error",
     ("textract-raw_text.xlsx", "textract-raw_text.ods"), "sheet 'Sheet1', rows"),
    ("Widget A sales revenue quantity", "xlsx_02_sample_sales_data.xlsm", "sheet 'SalesData', rows"),
    ("Saltwater ducks observed in 2024", "xlsx_03_chartsheet.xlsx", "sheet 'Duck"),
    ("How have the original Henry Hornbostel buildings influenced campus architecture?", "tests-example.xls",
     "sheet 'Example Test', row"),
    ("affc7dad-52dc-4b98-9b5d-51e65d8a8ad0 ColD", ("markitdown-test.xls", "markitdown-test.xlsx"),
     "sheet '09060124-b5e7-4717-9d07-3c046eb'"),
    ("Err:508 help topic", "textract-raw_text.ods", "sheet 'Sheet1', rows"),
    ("Number of freshwater ducks per year", "odf_table_with_title_01.ods", "sheet 'Sheet1', rows"),
    ("A rectangle shape with this text inside", "odf_presentation_01.odp", "slide 2"),
    # The chart is the only place the deck's numbers are (the workbook's twin chart says 170).
    ("Quarterly Duck Survey: freshwater ducks in 2022, 175", "pptx_chart.pptx", "slide 1"),
    ("This is a blockquote for testing", "markitdown-test.epub", 'chapter "Chapter 2"'),
    ("The cold storms of winter shall chill him no more", "epub_purvis_poetry.epub",
     'chapter "The Grave of the Slave"'),
    ("Welcome here! Samuel L lorem ipsum", "textract-raw_text.epub", 'chapter "Introduction"'),
    ("This is the body of the test email message", "markitdown-test_outlook_msg.msg", "mail 'Test Email Message'"),
    ("This is a test attachment file with dummy content", "msg_with_attachment.msg",
     "attachment test.txt of 'Email with Attachment'"),
    ("Simple email with Unicode subject", "mime-word-encoded-subject.eml", "mail 'Simple email"),
    ("My First Heading, table example, row 2 cell 2", "fake-doc.rtf", None),
    ("I love word documents. They are lovely.", "textract-raw_text.rtf", None),
    ("This is a Sample RTF File for the MarkItDown plugin", "markitdown-sample-plugin-test.rtf", None),
    # scans and images: the page OCR read
    ("Docling bundles PDF document conversion to JSON and Markdown", "ocr_test.pdf", 1),
    ("Portez ce vieux whisky au juge blond qui fume", "francais.pdf", 1),
    ("This is a lot of 12 point text to test the OCR code", "phototest", 1),
    ("LayoutParser: a unified toolkit for deep learning based document image analysis",
     "layout-parser-paper-fast.jpg", 1),
    ("The Slerexe Company Limited letter, 18th January 1972", "sample_with_rotation_mismatch.pdf", 1),
]


@pytest.mark.parametrize("question, name, where", FACTS, ids=[f[1] if isinstance(f[1], str) else f[1][0] for f in FACTS])
def test_a_fact_finds_its_file_and_place_first(indexed, question, name, where):
    engine = indexed[0]
    hits = engine.search(question, k=3)
    first = hits[0]
    assert Path(first.path).name.startswith(name), [(Path(h.path).name, h.unit) for h in hits]
    if isinstance(where, int):
        assert first.page == where and first.unit is None
    elif where is not None:
        assert first.unit and first.unit.startswith(where), first.unit


def test_the_fake_attachment_is_cited_as_an_attachment_of_its_mail(indexed):
    hits = indexed[0].search("Hey this is a fake attachment!", k=3)
    units = {(Path(h.path).name, h.unit) for h in hits[:2]}
    assert units == {(n, "attachment fake-attachment.txt of 'Fake email with attachment'")
                     for n in ("fake-email-attachment.eml", "fake-email-attachment.msg")}


def test_cli_search_prints_the_unit(indexed):
    engine, _, data, _, _ = indexed
    env = dict(os.environ, ENCLAVE_DATA_DIR=str(data), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "search", "Maple Leafs Stanley Cups since 67", "-k", "2",
                           "--json"], capture_output=True, text=True, env=env, timeout=600, check=True)
    first = json.loads(proc.stdout)[0]
    assert Path(first["path"]).name == "stanley-cups.xlsx"
    assert first["page"] is None and first["unit"].startswith("sheet 'Stanley Cups Since 67', rows ")
    assert first["text"].split("\n")[1] == "Team | Location | Stanley Cups"


def test_a_scanned_page_keeps_its_word_boxes(indexed):
    engine = indexed[0]
    hit = engine.search("Portez ce vieux whisky au juge blond", k=1)[0]
    found = engine.page_words(hit.chunk_id)
    assert found["page"] == 1 and found["words"]
    text = engine.catalog.chunks_by_id([hit.chunk_id])[hit.chunk_id].text
    inside = [w for w in found["words"] if hit.char_start <= w[0] < hit.char_start + len(text)]
    assert inside and all(0 <= x < 1 for w in inside for x in w[2:4])
