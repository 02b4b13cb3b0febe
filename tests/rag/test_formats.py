"""The formats beyond PDF, Word, HTML and text: each loader against real files from other
projects' test suites (facts from ../shared/corpus/formats/README.md), the registry, and the
chunking of tables. No models here: OCR has its own tests (test_ocr.py)."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from rag.ingest.chunking import Chunker
from rag.errors import FileSkipped, FileUnreadable, PasswordRequired
from rag.ingest.loaders import LoadContext, load, registry
from rag.types import PageText
from tests.conftest import CORPUS, require
from tests.fakes import WordTokenizer

FORMATS = CORPUS / "formats"
OFFICE = CORPUS / "office"


def units(name, folder=FORMATS):
    doc = load(require(folder / name))
    return {page.label: page.text for page in doc.pages}


# --- the registry ---------------------------------------------------------------------


def test_registry_is_the_one_list_of_formats():
    suffixes = [s for fmt in registry.FORMATS for s in fmt.suffixes]
    assert len(suffixes) == len(set(suffixes)), "a suffix is claimed by two formats"
    for fmt in registry.FORMATS:
        assert registry.loader_for(fmt) is not None  # every line names a loader that exists
        for suffix in fmt.suffixes:
            assert f"*{suffix}" in registry.file_dialog_filter()
    assert {".pptx", ".xlsx", ".xlsm", ".xls", ".ods", ".odt", ".odp", ".csv", ".tsv", ".epub", ".eml",
            ".msg", ".rtf", ".rst", ".png", ".jpg", ".tiff"} <= registry.SUPPORTED_SUFFIXES
    assert registry.view_for("scan.PDF") == "pdf" and registry.view_for("a.tif") == "image"
    assert registry.view_for("deck.pptx") == "text"


@pytest.mark.parametrize("name, advice", [("docling-legacy_sample.doc", ".docx"),
                                          ("docling-legacy_sample.ppt", ".pptx")])
def test_legacy_binary_office_files_are_skipped_with_advice(name, advice):
    assert advice in registry.unsupported_reason(FORMATS / name)
    with pytest.raises(FileSkipped, match=f"save it as \\{advice}"):
        load(require(FORMATS / name))


# --- presentations ----------------------------------------------------------------------


def test_pptx_slide_per_unit_with_tables_and_chart_values():
    chart = units("pptx_chart.pptx")
    assert list(chart) == ["slide 1", "slide 2"]
    assert chart["slide 1"].startswith("Quarterly Duck Survey")  # the title reads first
    # The numbers live only in the chart's XML.
    assert "Freshwater Ducks — 2019: 120, 2020: 130, 2021: 150, 2022: 175" in chart["slide 1"]
    table = units("fake-power-point-table.pptx", OFFICE)
    assert "Red | Green | Blue" in table["slide 1"]


def test_a_slide_without_positions_still_reads():
    # Its date placeholder has no position of its own (the file unstructured calls malformed).
    slide = units("fake-power-point-malformed.pptx", OFFICE)["slide 1"]
    assert "Test Slide" in slide and "Problem Date Placeholder" in slide


def test_a_damaged_pptx_fails_with_a_reason(tmp_path):
    broken = tmp_path / "broken.pptx"
    broken.write_bytes(require(OFFICE / "fake-power-point.pptx").read_bytes()[:3000])
    with pytest.raises(FileUnreadable, match="not a valid PowerPoint presentation"):
        load(broken)


def test_odp_slides_with_notes_and_odt_tables():
    slides = units("odf_presentation_01.odp")
    assert "Second slide title" in slides["slide 2"]
    assert "A rectangle shape with this text inside." in slides["slide 2"]
    assert "Notes: Some notes on the second slide." in slides["slide 2"]
    assert "List item6" in slides["slide 3"]
    odt = units("fake.odt", OFFICE)[None]
    assert "Color | Blue | Red | Green" in odt


# --- spreadsheets ------------------------------------------------------------------------


def test_xlsx_sheets_rows_and_header():
    sheets = load(require(FORMATS / "stanley-cups.xlsx")).pages
    assert [s.label for s in sheets] == ["sheet 'Stanley Cups'", "sheet 'Stanley Cups Since 67'"]
    first = sheets[0]
    lines = first.text.split("\n")
    assert lines[first.header] == "Team | Location | Stanley Cups"  # the merged title sits above it
    assert "Maple Leafs | TOR | 13" in lines and first.rows[lines.index("Maple Leafs | TOR | 13")] == 5
    assert "Maple Leafs | TOR | 0" in sheets[1].text


def test_xlsx_formulas_count_by_cached_value_and_charts_by_series():
    nestle = load(require(FORMATS / "2023-half-year-analyses-by-segment.xlsx")).pages[0]
    assert "Zone NA | 12553" in nestle.text.replace(" |  | ", " | ")
    assert "Nestlé Health Science | 3318" in nestle.text
    chart = units("xlsx_03_chartsheet.xlsx")["sheet 'Duck Chart'"]
    assert "Freshwater Ducks — 2019: 120" in chart
    sales = units("xlsx_02_sample_sales_data.xlsm")["sheet 'SalesData'"]
    assert "Widget A | 2024-01-01 | 5 | 5000" in sales


def test_xls_and_ods_read_like_xlsx():
    assert "affc7dad-52dc-4b98-9b5d-51e65d8a8ad0" in units("markitdown-test.xls")[
        "sheet '09060124-b5e7-4717-9d07-3c046eb'"]
    assert units("tests-example.xls")["sheet 'Example Test'"].startswith("MC | What is 2+2? | 4")
    ods = units("textract-raw_text.ods")
    assert "Logical | IFERROR |" in ods["sheet 'Sheet1'"]
    assert "Statistical | 83" in ods["sheet 'Sheet2'"]


def test_encrypted_workbook_needs_its_password():
    with pytest.raises(PasswordRequired, match="password required"):
        load(require(FORMATS / "password_protected.xlsx"))
    with pytest.raises(PasswordRequired, match="none of the 1"):
        load(FORMATS / "password_protected.xlsx", passwords=["not-it"])


def test_csv_dialects_are_sniffed():
    semicolons = load(require(OFFICE / "table-semicolon-delimiter.csv")).pages[0]
    assert semicolons.text.split("\n")[0] == "Year | Month | Revenue | Costs"
    assert "2023 | 2 | 143,1 | -814,38" in semicolons.text  # decimal commas stay in their cell
    tsv = load(_write("table.tsv", "name\tcity\nZoë\tKöln\n")).pages[0]
    assert tsv.text == "name | city\nZoë | Köln" and tsv.label is None


def _write(name, text):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / name
    path.write_text(text, encoding="utf-8")
    return path


def test_table_chunks_repeat_the_header_and_name_their_rows():
    rows = ["Quarterly figures", "Region | Quarter | Revenue"]
    rows += [f"Region {i} | Q{i % 4 + 1} | {1000 + i}" for i in range(1, 201)]
    page = PageText(number=None, text="\n".join(rows), label="sheet 'Sales'",
                    rows=tuple(range(1, 203)), header=1)
    chunks = Chunker(WordTokenizer(), max_tokens=60, overlap=10).chunk([page], "doc")
    assert len(chunks) > 5
    assert chunks[0].text.startswith("Quarterly figures\nRegion | Quarter | Revenue")
    for chunk in chunks[1:]:
        assert chunk.text.startswith("Region | Quarter | Revenue\n"), chunk.text[:60]
        assert chunk.tokens <= 60
    last = chunks[-1]
    assert last.unit.startswith("sheet 'Sales', rows ") and last.unit.endswith("–202")
    # Its offsets cover its rows in the document text (the header it repeats is elsewhere).
    assert page.text[last.char_start:last.char_end].endswith("Region 200 | Q1 | 1200")
    covered = [line for c in chunks for line in c.text.split("\n")[1:]]
    assert set(rows[2:]) <= set(covered)  # every row is in some chunk


# --- e-books, mail, RTF -------------------------------------------------------------------


def test_epub_chapters_in_spine_order():
    pages = load(require(FORMATS / "markitdown-test.epub")).pages
    labels = [p.label for p in pages]
    assert labels.index('chapter "Chapter 1"') < labels.index('chapter "Chapter 2"')
    assert "This is a blockquote for testing." in pages[labels.index('chapter "Chapter 2"')].text
    epub2 = units("textract-raw_text.epub")  # EPUB 2: titles from the NCX
    assert epub2['chapter "Introduction"'].startswith("Introduction\nWelcome here!")
    poems = units("epub_purvis_poetry.epub")
    assert poems['chapter "The Grave of the Slave"'].split("\n")[1].startswith(
        "The cold storms of winter shall chill him no more")


def test_eml_headers_body_and_attachment():
    mail = units("fake-email-attachment.eml")
    body = mail["mail 'Fake email with attachment'"]
    assert "From: Mallori Harrell <mallori@unstructured.io>" in body and "Subject: Fake email with attachment" in body
    assert mail["attachment fake-attachment.txt of 'Fake email with attachment'"] == "Hey this is a fake attachment!"
    assert "Subject: Simple email with ☸☿ Unicode subject" in units("mime-word-encoded-subject.eml")[
        "mail 'Simple email with ☸☿ Unicode subject'"]
    forwarded = units("textract-raw_text.eml")["mail 'test'"]
    assert "Forwarded message:" in forwarded and forwarded.count("Subject: test") == 2


def test_msg_properties_and_a_bad_attachment_costs_only_itself():
    outlook = units("markitdown-test_outlook_msg.msg")["mail 'Test Email Message'"]
    assert "test.sender@example.com" in outlook and "M. C. Kurtuluş" in outlook
    assert "This is the body of the test email message" in outlook
    doc = load(require(FORMATS / "msg_with_attachment.msg"))
    labels = [p.label for p in doc.pages]
    assert labels == ["mail 'Email with Attachment'", "attachment test.txt of 'Email with Attachment'"]
    assert any("report.pdf" in w for w in doc.warnings)  # 26 bytes of fake PDF


def test_rtf_text_and_code_pages():
    assert "Row 2, Cell 2" in units("fake-doc.rtf")[None]
    assert units("textract-raw_text.rtf")[None].startswith("I love word documents. They are lovely.")
    assert units("markitdown-sample-plugin-test.rtf")[None].startswith("This is a Sample RTF File")


def test_rst_reads_as_text():
    doc = load(require(OFFICE / "README.rst"))
    assert doc.kind == "text" and doc.pages[0].text.strip()


def test_a_damaged_archive_fails_cleanly(tmp_path):
    for name in ("bad.xlsx", "bad.epub", "bad.odt", "bad.ods"):
        path = tmp_path / name
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("mimetype", "nothing useful")
        path.write_bytes(buffer.getvalue())
        with pytest.raises(FileUnreadable, match="not a valid"):
            load(path)


def test_images_need_ocr(tmp_path):
    with pytest.raises(FileSkipped, match="OCR") as err:
        load(require(CORPUS / "scanned" / "phototest.tif"), context=LoadContext(ocr=False))
    assert err.value.page_count == 1
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not an image at all")
    with pytest.raises(FileUnreadable, match="not a readable image"):
        load(fake)


def test_the_welcome_guide_names_every_format_enclave_reads_and_the_card_words():
    # It once said Enclave read only PDF, Word, HTML, Markdown and text, and that cards showed a score.
    from rag.ingest.loaders.registry import FORMATS

    guide = (Path(__file__).resolve().parents[2] / "assets" / "welcome" / "enclave-guide.md").read_text("utf-8")
    words = set(re.findall(r"[a-z0-9]+", guide.lower()))
    for fmt in FORMATS:
        assert any(suffix[1:] in words for suffix in fmt.suffixes), fmt.name
    assert "strong, partial or weak match" in guide and "a score" not in guide
