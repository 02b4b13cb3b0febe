"""A password-protected PDF: dropped, it waits for its password; given one in the window (by a
double-click or Enter on its row), it indexes."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QLineEdit

from tests.conftest import CORPUS, require
from tests.desktop.conftest import drop

LOCKED = CORPUS / "pdf" / "005-libreoffice-writer-password" / "libreoffice-writer-password.pdf"
PASSWORD = "openpassword"  # its user password (corpus README); files.json: encrypted, 1 page


def test_encrypted_pdf_asks_for_its_password_and_indexes_with_it(qtbot, window, data_dir, monkeypatch):
    pdf = require(LOCKED).resolve()  # the engine reports resolved paths (../shared may be a link)
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as dropped:
        drop(window, [pdf])
    report = dropped.args[0]
    assert report["indexed"] == 0 and [f["path"] for f in report["failed"]] == [str(pdf)], report
    assert report["failed"][0]["reason"].startswith("password required")

    table = window.findChild(QAbstractItemView, "documentList")
    model = table.model()
    qtbot.waitUntil(lambda: model.rowCount() == 1 and model.index(0, 1).data() != "Indexing…", timeout=10_000)
    assert model.index(0, 1).data() == "Password required"
    table.setCurrentIndex(model.index(0, 0))
    details = window.library.details.toPlainText()
    assert "Double-click the document (or select it and press Enter) to give its password" in details
    assert "--password-file" not in details  # the command line's advice is no use in the window

    prompts = []
    replies = iter([("not the password", True), (PASSWORD, True)])

    def get_text(parent, title, label, echo=QLineEdit.Normal, *args, **kwargs):
        prompts.append((title, label, echo))
        return next(replies)

    monkeypatch.setattr("desktop.library.QInputDialog.getText", get_text)

    def double_click():  # press and release, then the second press (a view needs both on one row)
        at = table.visualRect(model.index(0, 0)).center()
        qtbot.mouseClick(table.viewport(), Qt.LeftButton, pos=at)
        qtbot.mouseDClick(table.viewport(), Qt.LeftButton, pos=at)

    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as wrong:
        double_click()
    assert prompts == [("Password required", f"Password for {pdf.name}:", QLineEdit.Password)]
    assert wrong.args[0]["indexed"] == 0
    assert "none of the 1 given password(s) opened it" in wrong.args[0]["failed"][0]["reason"]
    qtbot.waitUntil(lambda: "none of the 1" in (model.index(0, 1).data(Qt.ToolTipRole) or ""), timeout=10_000)
    assert model.index(0, 1).data() == "Password required"

    table.setFocus()
    table.setCurrentIndex(model.index(0, 0))
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as right:
        qtbot.keyClick(table, Qt.Key_Return)  # the same prompt from the keyboard
    assert len(prompts) == 2 and prompts[1] == prompts[0]
    report = right.args[0]
    assert report["indexed"] == 1 and report["failed"] == [] and report["pages"] == 1, report
    qtbot.waitUntil(lambda: model.index(0, 1).data() == "Indexed", timeout=10_000)
    assert model.rowCount() == 1 and model.index(0, 2).data() == "1"

    double_click()  # an indexed document asks for nothing
    assert len(prompts) == 2

    hits = []
    window.client.run(lambda engine, job: engine.search("Lorem ipsum dolor sit amet", "default", 3),
                      on_result=hits.append)
    qtbot.waitUntil(lambda: bool(hits), timeout=30_000)
    assert hits[0] and hits[0][0].path == str(pdf)

    # the password opened the file and was not kept
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), f"the password is stored in {path}"
