"""The source viewer: the cited PDF page with the supporting passage highlighted, or the text
of any other document scrolled to the passage, and a button to open the file outside."""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QPointF, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QColor, QDesktopServices, QTextCharFormat, QTextCursor
from PySide6.QtPdf import QPdfDocument, QPdfSearchModel
from PySide6.QtPdfWidgets import QPdfView
from PySide6.QtWidgets import (
    QHBoxLayout, QLabel, QPushButton, QStackedWidget, QTextBrowser, QTextEdit, QVBoxLayout, QWidget,
)

HIGHLIGHT = QColor(255, 213, 79)  # amber: readable on light and dark backgrounds
_EMPTY, _PDF, _TEXT = range(3)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 3}


def search_phrases(passage: str, hint: str = "", limit: int = 12) -> list[str]:
    """Pieces of a passage likely to be found by a PDF text search: whole lines first (a PDF
    search does not cross line breaks), those sharing most words with `hint` (the question and
    the answer) first, then the longest; then runs of four words."""
    lines = [" ".join(line.split()) for line in re.split(r"[\r\n]+", passage)]
    wanted = _words(hint)
    lines = sorted({line for line in lines if len(line) >= 6},
                   key=lambda line: (len(_words(line) & wanted), len(line)), reverse=True)
    words = passage.split()
    runs = [" ".join(words[i:i + 4]) for i in range(0, max(len(words) - 3, 1), 2)]
    out = []
    for phrase in lines[:6] + runs:
        if phrase and phrase not in out:
            out.append(phrase)
    return out[:limit]


def _qt_position(text: str, index: int) -> int:
    """A document position for a str index: Qt counts UTF-16 units, so an emoji counts two."""
    return len(text[:index].encode("utf-16-le")) // 2


class SourceViewerWidget(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("sourceViewer")
        self.setAccessibleName("Source viewer")
        self.source: dict | None = None
        self.highlighted_text = ""  # what is highlighted now (for tests and the title)

        self.title = QLabel("Click a citation to see where the answer comes from.")
        self.title.setObjectName("sourceTitle")
        self.title.setWordWrap(True)
        self.open_button = QPushButton("Open in default app")
        self.open_button.setObjectName("openSourceButton")
        self.open_button.setAccessibleName("Open the source in its default application")
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(self._on_open_clicked)

        self.document = QPdfDocument(self)
        self.search = QPdfSearchModel(self)
        self.search.setDocument(self.document)
        self.pdf_view = QPdfView()
        self.pdf_view.setObjectName("sourcePdfView")
        self.pdf_view.setAccessibleName("Cited PDF page")
        self.pdf_view.setDocument(self.document)
        self.pdf_view.setSearchModel(self.search)
        self.pdf_view.setPageMode(QPdfView.PageMode.MultiPage)
        self.pdf_view.setZoomMode(QPdfView.ZoomMode.FitToWidth)

        self.text_view = QTextBrowser()
        self.text_view.setObjectName("sourceTextView")
        self.text_view.setAccessibleName("Cited document text")
        self.text_view.setAcceptDrops(False)

        empty = QLabel("No source selected.")
        empty.setAlignment(Qt.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(empty)
        self.stack.addWidget(self.pdf_view)
        self.stack.addWidget(self.text_view)

        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(header)
        layout.addWidget(self.stack, 1)

    # --- what tests and the window read ---------------------------------------------------

    def pageNavigator(self):  # noqa: N802 - mirrors QPdfView for black-box tests
        return self.pdf_view.pageNavigator()

    def current_page(self) -> int | None:
        """0-based page shown in the PDF view; None when a text source (or nothing) is shown."""
        return self.pdf_view.pageNavigator().currentPage() if self.stack.currentIndex() == _PDF else None

    def is_pdf(self, source: dict) -> bool:
        return Path(source["path"]).suffix.lower() == ".pdf"

    # --- showing ---------------------------------------------------------------------------

    def show_pdf(self, source: dict) -> None:
        self.source = source
        path = source["path"]
        if self.document.status() != QPdfDocument.Status.Ready or self._loaded != path:
            self.document.close()
            self.document.load(path)
            self._loaded = path
        page = max((source.get("page") or 1) - 1, 0)
        passage = (source.get("support") or {}).get("text") or source.get("text", "")
        found_at = self._highlight_pdf(passage, page, source.get("hint", ""))
        self.stack.setCurrentIndex(_PDF)
        location = found_at if found_at is not None else QPointF(0, 0)
        self.pdf_view.pageNavigator().jump(page, location, 0)
        self._set_title(source)

    _loaded = ""

    def _highlight_pdf(self, passage: str, page: int, hint: str) -> QPointF | None:
        self.highlighted_text = ""
        for phrase in search_phrases(passage, hint):
            self.search.setSearchString(phrase)
            results = self.search.resultsOnPage(page)
            if results:
                before = sum(len(self.search.resultsOnPage(p)) for p in range(page))
                self.pdf_view.setCurrentSearchResultIndex(before)
                self.highlighted_text = phrase
                rects = results[0].rectangles()
                if rects:
                    top = rects[0].topLeft()
                    return QPointF(0, max(top.y() - 40, 0))
                return None
        self.search.setSearchString("")
        return None

    def show_text(self, source: dict, text: str) -> None:
        """Show a document's text, scrolled to the source's supporting passage, highlighted."""
        self.source = source
        self.text_view.setPlainText(text)
        start, end = self._passage_span(source, text)
        selections = []
        if start is not None:
            self.highlighted_text = text[start:end]
            start, end = _qt_position(text, start), _qt_position(text, end)
            cursor = QTextCursor(self.text_view.document())
            cursor.setPosition(start)
            cursor.setPosition(end, QTextCursor.KeepAnchor)
            selection = QTextEdit.ExtraSelection()
            selection.cursor = cursor
            fmt = QTextCharFormat()
            fmt.setBackground(HIGHLIGHT)
            fmt.setForeground(QColor("black"))
            selection.format = fmt
            selections.append(selection)
            self.stack.setCurrentIndex(_TEXT)
            self.text_view.setExtraSelections(selections)
            self._scroll_to(start, end)
            QTimer.singleShot(0, lambda: self._scroll_to(start, end))  # again once laid out
        else:
            self.highlighted_text = ""
            self.text_view.setExtraSelections([])
            self.stack.setCurrentIndex(_TEXT)
        self._set_title(source)

    def _scroll_to(self, start: int, end: int) -> None:
        """Bring the passage into view: its end first, then its start (long passages)."""
        cursor = QTextCursor(self.text_view.document())
        cursor.setPosition(min(end, self.text_view.document().characterCount() - 1))
        self.text_view.setTextCursor(cursor)
        self.text_view.ensureCursorVisible()
        cursor.setPosition(start)
        self.text_view.setTextCursor(cursor)
        self.text_view.ensureCursorVisible()

    @staticmethod
    def _passage_span(source: dict, text: str) -> tuple[int | None, int | None]:
        support = source.get("support") or {}
        chunk = source.get("text", "")
        if "char_start" in source and support.get("start") is not None:
            start = source["char_start"] + support["start"]
            end = source["char_start"] + support["end"]
            if 0 <= start < end <= len(text):
                return start, end
        for needle in (support.get("text"), chunk):
            if needle:
                at = text.find(needle)
                if at >= 0:
                    return at, at + len(needle)
        return None, None

    def _set_title(self, source: dict) -> None:
        page = f" — page {source['page']}" if source.get("page") else ""
        self.title.setText(f"[{source.get('n', '?')}] {Path(source['path']).name}{page}")
        self.title.setToolTip(source["path"])
        self.open_button.setEnabled(True)

    @Slot()
    def _on_open_clicked(self) -> None:
        if self.source:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.source["path"]))
