"""The real window, driven as a user would: drop, index, ask, click the citation, stop."""

from __future__ import annotations

import shutil
import time

from PySide6.QtCore import QUrl
from PySide6.QtPdfWidgets import QPdfView
from PySide6.QtWidgets import QAbstractItemView, QLabel, QProgressBar, QPushButton, QTextBrowser, QWidget

from tests.desktop.conftest import drop

QUESTION = "What is the capital of Denmark?"


def cite_anchors(browser: QTextBrowser) -> list[str]:
    """Every cite: link in the chat view, in document order (what a click would activate)."""
    hrefs = []
    block = browser.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fmt = it.fragment().charFormat()
            if fmt.isAnchor() and fmt.anchorHref().startswith("cite:"):
                hrefs.append(fmt.anchorHref())
            it += 1
        block = block.next()
    return hrefs


def test_contract_widgets_exist(window):
    for name, kind in (("documentList", QAbstractItemView), ("addFilesButton", QPushButton),
                       ("chatInput", QWidget), ("sendButton", QPushButton), ("stopButton", QPushButton),
                       ("chatView", QTextBrowser), ("sourceViewer", QWidget), ("indexProgress", QProgressBar),
                       ("statusModel", QLabel)):
        assert window.findChild(kind, name) is not None, name
    assert "Enclave" in window.windowTitle()
    assert not window.windowIcon().isNull()


def test_drop_pdf_ask_and_open_cited_page(qtbot, window, multicolumn, tmp_path):
    pdf = tmp_path / "docs" / "multicolumn.pdf"
    pdf.parent.mkdir()
    shutil.copy(multicolumn, pdf)
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as indexed:
        drop(window, [pdf])
    report = indexed.args[0]
    assert report["indexed"] == 1 and report["failed"] == [] and report["pages"] == 3
    qtbot.waitUntil(lambda: window.findChild(QAbstractItemView, "documentList").model().rowCount() == 1,
                    timeout=10_000)

    chat_view = window.findChild(QTextBrowser, "chatView")
    updates = []
    chat_view.textChanged.connect(lambda: updates.append(1))
    chat_input = window.findChild(QWidget, "chatInput")
    chat_input.setPlainText(QUESTION)
    with qtbot.waitSignal(window.answer_finished, timeout=120_000) as answered:
        qtbot.mouseClick(window.findChild(QPushButton, "sendButton"), __import__("PySide6.QtCore").QtCore.Qt.LeftButton)
    answer = answered.args[0]
    assert set(answer) >= {"answer", "refused", "uncited", "sources", "timings", "model"}
    assert not answer["refused"]
    assert len(updates) >= 3, "the answer did not stream"
    pages = {s["page"] for s in answer["sources"] if s["path"] == str(pdf)}
    assert 3 in pages

    hrefs = cite_anchors(chat_view)
    n = next(s["n"] for s in answer["sources"] if s["page"] == 3)
    href = next(h for h in hrefs if h.endswith(f"/{n}"))
    chat_view.anchorClicked.emit(QUrl(href))  # what QTextBrowser emits when the link is clicked
    viewer = window.findChild(QWidget, "sourceViewer")
    pdf_view = viewer.findChild(QPdfView)
    assert pdf_view.isVisibleTo(window)
    assert pdf_view.pageNavigator().currentPage() == 2
    assert viewer.highlighted_text, "the supporting passage was not found on the page"
    assert window.bridge.messages == []


def test_stop_ends_a_long_answer_at_once(qtbot, window, multicolumn):
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000):
        window.add_paths([str(multicolumn)])
    pieces = []
    window.client.worker.progress.connect(lambda job, piece: pieces.append(piece))
    window.chat.input.setPlainText(
        "Describe in great detail every country in the EU countries table: population, area, capital "
        "and official language, one long paragraph for each.")
    window.chat._on_send_clicked()
    qtbot.waitUntil(lambda: len(pieces) >= 2, timeout=60_000)
    stop = window.findChild(QPushButton, "stopButton")
    assert stop.isEnabled()
    started = time.perf_counter()
    with qtbot.waitSignal(window.answer_finished, timeout=5_000) as answered:
        qtbot.mouseClick(stop, __import__("PySide6.QtCore").QtCore.Qt.LeftButton)
    assert time.perf_counter() - started < 1.5, "Stop took more than a second and a half"
    assert answered.args[0]["timings"]["tokens"] < 384
    assert not stop.isEnabled()
    assert "Stopped" in window.chat.status.text()


def test_watched_folder_indexes_new_files(qtbot, window, tmp_path):
    folder = tmp_path / "watched"
    folder.mkdir()
    (folder / "first.txt").write_text("The lighthouse keeper of Skagen is named Ingrid Holm.\n")
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as first:
        drop(window, [folder])
    assert first.args[0]["indexed"] == 1
    assert str(folder) in window.watcher.folders()

    (folder / "second.md").write_text("# Ferries\n\nThe ferry to Laeso leaves from Frederikshavn at dawn.\n")
    with qtbot.waitSignal(window.indexing_finished, timeout=30_000) as second:
        pass  # nobody asks: the watcher notices, waits for quiet, and indexes
    assert second.args[0]["indexed"] == 1 and second.args[0]["unchanged"] == 1
    model = window.library.model
    qtbot.waitUntil(lambda: any(p.endswith("second.md") for p in model.paths()), timeout=10_000)

    (folder / "first.txt").unlink()
    with qtbot.waitSignal(window.indexing_finished, timeout=30_000) as third:
        pass
    assert third.args[0]["removed_documents"] == 1


def test_broken_file_shows_its_reason_and_the_batch_goes_on(qtbot, window, tmp_path):
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "broken.pdf").write_bytes(b"this is not a PDF at all, only some bytes\n" * 20)
    (folder / "notes.txt").write_text("Quarterly numbers: revenue grew by twelve percent in Jutland.\n")
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as done:
        window.add_paths([str(folder)])
    report = done.args[0]
    assert report["indexed"] == 1
    assert [f["path"] for f in report["failed"]] == [str(folder / "broken.pdf")]
    reason = report["failed"][0]["reason"]
    assert reason

    table = window.findChild(QAbstractItemView, "documentList")
    model = table.model()
    # The list is refreshed after the run ends; until then the last file may still read "Indexing…".
    qtbot.waitUntil(lambda: model.rowCount() == 2
                    and all(model.index(r, 1).data() != "Indexing…" for r in range(2)), timeout=10_000)
    row = next(r for r in range(model.rowCount()) if model.index(r, 0).data() == "broken.pdf")
    assert model.index(row, 1).data() == "Failed"
    assert reason in model.index(row, 1).data(__import__("PySide6.QtCore").QtCore.Qt.ToolTipRole)
    table.setCurrentIndex(model.index(row, 0))
    assert reason in window.library.details.toPlainText()
    good = next(r for r in range(model.rowCount()) if model.index(r, 0).data() == "notes.txt")
    assert model.index(good, 1).data() == "Indexed"
