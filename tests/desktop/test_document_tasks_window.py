"""Summaries and comparisons in the real window, asserted on what a person sees: a
comparison's changes as two columns (before | after) whose citations open each document at
its sentence, and a long model summary that shows its extract at once, then "reading part
2 of 4" with the time left, and ends at once on Stop. The models are scripted, so nothing
rests on model wording or speed."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QUrl
from PySide6.QtGui import QTextCursor, QTextTable
from PySide6.QtWidgets import QWidget

from tests.desktop.test_answer_trust import model_window
from tests.desktop.test_library_summarize import QUOTED, ScriptedModel
from tests.desktop.test_window_e2e import cite_anchors
from tests.rag.test_documents import FakeModel, long_text


def _index(qtbot, window, paths):
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as indexed:
        window.add_paths([str(p) for p in paths])
    assert indexed.args[0]["indexed"] == len(paths)
    qtbot.waitUntil(lambda: all(str(p) in window.library.model.paths() for p in paths), timeout=10_000)


def _tables(document) -> list[QTextTable]:
    found, frames = [], [document.rootFrame()]
    while frames:
        frame = frames.pop()
        for child in frame.childFrames():
            (found if isinstance(child, QTextTable) else frames).append(child)
    return found


def _cell_text(table: QTextTable, row: int, column: int) -> str:
    cell = table.cellAt(row, column)
    cursor = cell.firstCursorPosition()
    cursor.setPosition(cell.lastCursorPosition().position(), cursor.MoveMode.KeepAnchor)
    return " ".join(cursor.selectedText().split())


def _cell_href(table: QTextTable, row: int, column: int) -> str:
    cell = table.cellAt(row, column)
    for position in range(cell.firstCursorPosition().position(), cell.lastCursorPosition().position() + 1):
        cursor = table.document().find("[", position)
        fmt = cursor.charFormat()
        if fmt.isAnchor() and fmt.anchorHref().startswith("cite:"):
            return fmt.anchorHref()
    raise AssertionError(f"no citation in cell {row}, {column}")


def test_a_comparison_shows_each_change_side_by_side_and_each_side_opens_its_passage(
        qtbot, data_dir, real_embedder, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    old, new = folder / "fees-2024.txt", folder / "fees-2025.txt"
    old.write_text(long_text(4))
    new.write_text(long_text(4).replace("counted 121 in", "counted 175 in"))
    window = model_window(qtbot, data_dir, real_embedder, ScriptedModel())
    try:
        _index(qtbot, window, [old, new])
        library = window.library
        library.table.clearSelection()
        for path in (old, new):
            library.table.selectionModel().select(
                library.model.index(library.model.paths().index(str(path)), 0),
                library.table.selectionModel().SelectionFlag.Select
                | library.table.selectionModel().SelectionFlag.Rows)
        compare = next(a for a in library.table.actions() if a.text() == "Compare the two selected")
        with qtbot.waitSignal(window.answer_finished, timeout=300_000):
            compare.trigger()

        tables = _tables(window.chat.view.document())
        assert len(tables) == 1 and tables[0].columns() == 2 and tables[0].rows() == 2  # header and one change
        table = tables[0]
        assert _cell_text(table, 0, 0) == "Before, in fees-2024.txt"
        assert _cell_text(table, 0, 1) == "After, in fees-2025.txt"
        before, after = _cell_text(table, 1, 0), _cell_text(table, 1, 1)
        assert "counted 121 in the first spring" in before and "175" not in before
        assert "counted 175 in the first spring" in after and "121" not in after
        # The words that differ are in bold, the rest as it is.
        bold = {c.charFormat().fontWeight() > 500 for c in _chars(table, 1, 1, "175")}
        assert bold == {True}
        assert {c.charFormat().fontWeight() > 500 for c in _chars(table, 1, 1, "counted")} == {False}

        viewer = window.findChild(QWidget, "sourceViewer")
        for column, path, number in ((0, old, "121"), (1, new, "175")):
            href = _cell_href(table, 1, column)
            assert href in cite_anchors(window.chat.view)
            window.chat.view.anchorClicked.emit(QUrl(href))  # what QTextBrowser emits on a click
            qtbot.waitUntil(lambda p=path: viewer.source is not None and viewer.source["path"] == str(p)
                            and bool(viewer.highlighted_text), timeout=20_000)
            assert f"counted {number} in the first spring" in viewer.highlighted_text
        assert window.bridge.messages == []
    finally:
        window.close()


def _chars(table: QTextTable, row: int, column: int, word: str) -> list[QTextCursor]:
    """A cursor after each character of the first `word` in the cell (its charFormat is that
    character's)."""
    cell = table.cellAt(row, column)
    document = table.document()
    found = document.find(word, cell.firstCursorPosition().position())
    assert not found.isNull() and found.selectionEnd() <= cell.lastCursorPosition().position()
    cursors = []
    for position in range(found.selectionStart() + 1, found.selectionEnd() + 1):
        cursor = QTextCursor(document)
        cursor.setPosition(position)
        cursors.append(cursor)
    return cursors


class GatedModel(FakeModel):
    """FakeModel whose every step waits until the test lets it go (or Stop): the window's
    state between parts is then observed, not raced."""

    def __init__(self, context: int):
        super().__init__(context)
        self.released = threading.Semaphore(0)
        self.started = 0
        self.finished = 0

    def stream(self, messages, max_tokens, temperature=0.0, should_stop=None, refuse_at=None):
        self.started += 1
        while not self.released.acquire(timeout=0.01):
            if should_stop and should_stop():
                return
        yield from super().stream(messages, max_tokens, temperature, should_stop, refuse_at)
        self.finished += 1


def test_a_long_summary_shows_the_extract_its_parts_and_time_left_and_stop_ends_it_at_once(
        qtbot, data_dir, real_embedder, tmp_path):
    report = tmp_path / "docs" / "report.txt"
    report.parent.mkdir()
    report.write_text(long_text(12))
    model = GatedModel(context=700)  # smaller than the report: a map-reduce of several parts
    window = model_window(qtbot, data_dir, real_embedder, model)
    view = window.chat.view
    try:
        _index(qtbot, window, [report])
        with qtbot.waitSignal(window.answer_finished, timeout=300_000) as answered:
            window.ask("summarize report.txt")
            # Before the first part is read: the estimate, and the document's own sentences,
            # already cited.
            qtbot.waitUntil(lambda: "Reading part 1 of" in view.toPlainText(), timeout=120_000)
            shown = view.toPlainText()
            assert model.finished == 0
            line = next(x for x in shown.splitlines() if x.startswith("Reading part 1 of"))
            parts = int(line.split(" of ")[1].split()[0])
            assert parts >= 3
            assert " left" in line and "about" in line, line
            assert "Stop keeps what is shown below" in line
            assert window.chat.status.text().startswith("Reading part 1 of")
            assert "in its own words" in shown and "\u201c" in shown  # the extract, quoted
            assert cite_anchors(view), "the extract's citations are not links while the model reads"

            model.released.release()  # part 1 is read
            qtbot.waitUntil(lambda: f"Reading part 2 of {parts}" in view.toPlainText(), timeout=60_000)
            assert model.finished == 1 and model.started == 2
            stopped_at = time.monotonic()
            window.chat.stop_button.click()
        took = time.monotonic() - stopped_at
        answer = answered.args[0]
        assert took < 10, f"Stop took {took:.1f} s"  # at once: part 2 never finished
        assert model.started == 2 and model.finished == 1
        text = view.toPlainText()
        assert "Reading part" not in text
        assert "The model's summary was stopped" in text
        quoted = QUOTED.findall(answer["answer"])
        assert len(quoted) >= 3 and quoted[0][0] in " ".join(text.split())  # the extract stands
        assert window.chat.status.text().startswith("Stopped")
        assert not window.chat.stop_button.isEnabled()
    finally:
        model.released.release(10)
        window.close()
