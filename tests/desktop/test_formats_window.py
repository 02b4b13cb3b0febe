"""The window with every new format: one file of each, and a scanned PDF, dropped at once;
each is indexed and found, and citations of a scanned page and of a sheet open with the
passage highlighted: boxed on the page image, and marked in the sheet's text."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QTextBrowser, QWidget

from desktop.dropping import DropHintWidget
from desktop.progress import IndexProgressWidget
from desktop.source_viewer import HIGHLIGHT
from rag.ingest.loaders import registry
from tests.conftest import CORPUS, require
from tests.desktop.conftest import drop
from tests.desktop.test_text_sources import stored_answer  # what asking leaves in the conversation store
from tests.desktop.test_window_e2e import cite_anchors

# One file of each new format (and the fact that finds it), and a scanned PDF.
DROPPED = {
    "formats/pptx_chart.pptx": "Quarterly Duck Survey",
    "formats/stanley-cups.xlsx": "Maple Leafs Stanley Cups since 67",
    "formats/tests-example.xls": "Henry Hornbostel buildings campus architecture",
    "formats/odf_table_with_title_01.ods": "Number of freshwater ducks per year",
    "office/fake.odt": "Leader Sarah Mark Ryan",
    "formats/odf_presentation_01.odp": "A rectangle shape with this text inside",
    "office/table-semicolon-delimiter.csv": "Year Month Revenue Costs",
    "formats/markitdown-test.epub": "This is a blockquote for testing",
    "formats/mime-word-encoded-subject.eml": "Simple email with Unicode subject",
    "formats/msg_with_attachment.msg": "This email contains an attachment",
    "formats/fake-doc.rtf": "My First Heading",
    "office/README.rst": None,
    "scanned/phototest.tif": "This is a lot of 12 point text to test the OCR code",
    "scanned/ocr_test.pdf": "Docling bundles PDF document conversion to JSON and Markdown",
}
DOCLING = "Docling bundles PDF document conversion to JSON and Markdown in an easy self contained package"


def test_file_dialog_and_drop_hint_offer_every_format():
    assert "*.pptx" in registry.file_dialog_filter() and "*.tiff" in registry.file_dialog_filter()
    line = DropHintWidget.formats_line()
    assert "PowerPoint" in line and "E-mail" in line and "images" in line


def test_progress_says_which_scanned_page_is_read(qtbot):
    progress = IndexProgressWidget()
    qtbot.addWidget(progress)
    progress.begin("scans")
    progress.update_progress(0, 2, 0, "/tmp/report.pdf", 1.0, None, "reading scanned page 3 of 40")
    assert "report.pdf: reading scanned page 3 of 40" in progress.label.text()


def search_first(qtbot, window, question) -> object:
    found = []
    window.client.run(lambda engine, job: engine.search(question, "default", 3), on_result=found.append)
    qtbot.waitUntil(lambda: bool(found), timeout=60_000)
    return found[0][0]


def open_citation(qtbot, window, question, answer, marker) -> dict:
    made = []
    window.client.run(stored_answer(question, answer, marker), on_result=made.append)
    qtbot.waitUntil(lambda: bool(made), timeout=60_000)
    window._refresh_conversations()
    listing = window.conversations.list

    def row():
        return next((i for i in range(listing.count()) if question in listing.item(i).text()), None)

    qtbot.waitUntil(lambda: row() is not None, timeout=10_000)
    listing.setCurrentRow(row())  # what a click on the conversation does
    chat_view = window.findChild(QTextBrowser, "chatView")
    qtbot.waitUntil(lambda: bool(cite_anchors(chat_view)) and window.chat.source(1, 1) is not None
                    and marker in window.chat.source(1, 1)["text"], timeout=10_000)
    source = window.chat.source(1, 1)
    window.show_source(source)  # what a click on the citation does
    return source


def test_every_new_format_dropped_is_indexed_and_citable(qtbot, window, tmp_path):
    folder = tmp_path / "dropped"
    folder.mkdir()
    paths = []
    for relative in DROPPED:
        source = require(CORPUS / relative)
        paths.append(folder / source.name)
        shutil.copy(source, paths[-1])
    with qtbot.waitSignal(window.indexing_finished, timeout=600_000) as indexed:
        drop(window, paths)
    report = indexed.args[0]
    assert report["failed"] == [] and report["skipped"] == [], report
    assert report["indexed"] == len(paths)
    table = window.findChild(QAbstractItemView, "documentList").model()
    qtbot.waitUntil(lambda: table.rowCount() == len(paths), timeout=10_000)
    assert {table.document(r)["state"] for r in range(table.rowCount())} == {"indexed"}

    for relative, question in DROPPED.items():
        if question:
            hit = search_first(qtbot, window, question)
            assert Path(hit.path).name == Path(relative).name, (question, hit.path)

    # A sheet: its citation names the sheet and rows, and the rows are marked in its text.
    source = open_citation(qtbot, window, "How many Stanley Cups have the Maple Leafs won since 67?",
                           "The Maple Leafs have won 0 Stanley Cups since 67.", "Stanley Cups Since 67")
    assert source["unit"].startswith("sheet 'Stanley Cups Since 67', rows")
    viewer = window.findChild(QWidget, "sourceViewer")
    qtbot.waitUntil(lambda: "Maple Leafs" in viewer.highlighted_text, timeout=60_000)
    assert "sheet 'Stanley Cups Since 67'" in viewer.title.text()

    # The scanned page: shown as its image, the cited words boxed in the highlight colour.
    source = open_citation(qtbot, window, "What does Docling bundle?",
                           "Docling bundles PDF document conversion to JSON and Markdown.", "Docling")
    assert source["page"] == 1
    qtbot.waitUntil(lambda: viewer.current_page() == 0 and bool(viewer.highlighted_boxes), timeout=60_000)
    assert viewer.image_view.isVisibleTo(window)
    assert " ".join(viewer.highlighted_text.split()) in DOCLING and "Docling" in viewer.highlighted_text
    image = viewer.page_image
    box = viewer.highlighted_boxes[0]
    assert box.top() < image.height() * 0.3  # the sentence is near the top of the page
    # White paper under the translucent box turns amber: red and green stay high, blue drops.
    samples = [QColor(image.pixel(int(box.left() + box.width() * fx), int(box.top() + box.height() * fy)))
               for fx in (0.1, 0.3, 0.5, 0.7, 0.9) for fy in (0.15, 0.5, 0.85)]
    tinted = [c for c in samples if c.red() > 200 and c.green() > 150 and c.blue() < c.red() - 40]
    assert len(tinted) >= 3, [c.name() for c in samples]
    untouched = QColor(image.pixel(5, image.height() - 5))  # the page's corner is not highlighted
    assert untouched.blue() > 200 and untouched != QColor(HIGHLIGHT)
    assert "ocr_test.pdf" in viewer.title.text() and "page 1" in viewer.title.text()
