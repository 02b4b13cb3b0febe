"""The source viewer: the cited PDF page with the supporting passage highlighted, a scanned
page or an image with the passage's words boxed on the picture, or the text of any other
document scrolled to the passage, and a button to open the file outside."""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QColor, QDesktopServices, QImage, QImageReader, QPainter, QPen, QPixmap, QTextCharFormat, QTextCursor
from PySide6.QtPdf import QPdfDocument, QPdfSearchModel
from PySide6.QtPdfWidgets import QPdfView
from PySide6.QtWidgets import (
    QHBoxLayout, QLabel, QPushButton, QScrollArea, QStackedWidget, QTextBrowser, QTextEdit, QToolButton, QVBoxLayout,
    QWidget,
)

from rag.ingest.loaders.registry import view_for

HIGHLIGHT = QColor(255, 213, 79)  # amber: readable on light and dark backgrounds
_EMPTY, _PDF, _TEXT, _IMAGE = range(4)
PAGE_IMAGE_WIDTH = 1100  # pixels a scanned page is drawn at; the view scrolls


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


def word_pairs(passage: str, limit: int = 12) -> list[str]:
    """Two-word pieces of a passage, for one whose words are not on one line of the page (a
    table's column, a form's labels): "Blood Pressure", "Heart Rate", ..."""
    words = [w for w in passage.split() if len(w) > 1]
    pairs = [" ".join(words[i:i + 2]) for i in range(0, max(len(words) - 1, 1), 2)]
    return [p for p in dict.fromkeys(pairs) if len(p) >= 6][:limit]


class PdfPageView(QPdfView):
    """QPdfView with the cited passage marked by the viewer itself: QPdfView's own search
    highlight (a grey-blue fill in a cyan frame) made the cited row read as disabled. The mark
    is a translucent amber multiplied over the page, so the text under it stays black, with a
    darker amber outline."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.marks: list[tuple[int, QRectF]] = []  # (0-based page, rectangle in PDF points)

    def set_marks(self, marks: list[tuple[int, QRectF]]) -> None:
        self.marks = list(marks)
        self.viewport().update()

    def page_rect(self, page: int) -> QRectF | None:
        """Where `page` is drawn, in viewport pixels (QPdfView's own layout for MultiPage and
        FitToWidth: pages stacked inside the document margins, `pageSpacing` apart)."""
        document = self.document()
        if document is None or document.status() != QPdfDocument.Status.Ready or page >= document.pageCount():
            return None
        margins, width = self.documentMargins(), self.viewport().width()
        resolution = self.logicalDpiY() / 72
        inner = width - margins.left() - margins.right()
        y = margins.top()
        for number in range(page + 1):
            size = document.pagePointSize(number)
            pixels = QSize(round(size.width() * resolution), round(size.height() * resolution))
            factor = inner / max(pixels.width(), 1)
            page_size = QSize(round(pixels.width() * factor), round(pixels.height() * factor))
            if number == page:
                x = (max(page_size.width() + margins.left() + margins.right(), width) - page_size.width()) // 2
                return QRectF(x - self.horizontalScrollBar().value(), y - self.verticalScrollBar().value(),
                              page_size.width(), page_size.height())
            y += page_size.height() + self.pageSpacing()
        return None

    def mark_rects(self) -> list[QRectF]:
        """The marks in viewport pixels."""
        rects = []
        for page, rect in self.marks:
            where = self.page_rect(page)
            size = self.document().pagePointSize(page) if where is not None else None
            if where is None or size.width() <= 0:
                continue
            scale = where.width() / size.width()
            rects.append(QRectF(where.left() + rect.left() * scale, where.top() + rect.top() * scale,
                                rect.width() * scale, rect.height() * scale).adjusted(-2, -1, 2, 1))
        return rects

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().paintEvent(event)
        rects = self.mark_rects()
        if not rects:
            return
        painter = QPainter(self.viewport())
        painter.setCompositionMode(QPainter.CompositionMode_Multiply)  # white turns amber, ink stays
        for rect in rects:
            painter.fillRect(rect, HIGHLIGHT)
        painter.setCompositionMode(QPainter.CompositionMode_SourceOver)
        painter.setPen(QPen(QColor(HIGHLIGHT).darker(150), 1.5))
        for rect in rects:
            painter.drawRect(rect)
        painter.end()


def _qt_position(text: str, index: int) -> int:
    """A document position for a str index: Qt counts UTF-16 units, so an emoji counts two."""
    return len(text[:index].encode("utf-16-le")) // 2


class SourceViewerWidget(QWidget):
    close_requested = Signal()  # the window folds the pane away until the next source

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("sourceViewer")
        self.setAccessibleName("Source viewer")
        self.source: dict | None = None
        self.requested: dict | None = None  # the source last asked for: a late answer for another is dropped
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
        self.pdf_view = PdfPageView()
        self.pdf_view.setObjectName("sourcePdfView")
        self.pdf_view.setAccessibleName("Cited PDF page")
        self.pdf_view.setDocument(self.document)
        self.pdf_view.setPageMode(QPdfView.PageMode.MultiPage)
        self.pdf_view.setZoomMode(QPdfView.ZoomMode.FitToWidth)

        self.text_view = QTextBrowser()
        self.text_view.setObjectName("sourceTextView")
        self.text_view.setAccessibleName("Cited document text")
        self.text_view.setAcceptDrops(False)

        self.image_label = QLabel()
        self.image_label.setObjectName("sourcePageImage")
        self.image_label.setAccessibleName("Cited page image")
        self.image_view = QScrollArea()
        self.image_view.setObjectName("sourceImageView")
        self.image_view.setWidget(self.image_label)
        self.image_view.setAlignment(Qt.AlignHCenter)
        self.page_image = QImage()  # the page as drawn, boxes included (for tests and screenshots)
        self.highlighted_boxes: list[QRectF] = []  # in page_image's pixels
        self._image_page: int | None = None

        empty = QLabel("No source selected.")
        empty.setAlignment(Qt.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(empty)
        self.stack.addWidget(self.pdf_view)
        self.stack.addWidget(self.text_view)
        self.stack.addWidget(self.image_view)

        self.close_button = QToolButton()
        self.close_button.setObjectName("closeSource")
        self.close_button.setText("\u2715")
        self.close_button.setToolTip("Close the source pane")
        self.close_button.setAccessibleName("Close the source pane")
        self.close_button.clicked.connect(self.close_requested)

        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.open_button)
        header.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(header)
        layout.addWidget(self.stack, 1)

    # --- what tests and the window read ---------------------------------------------------

    def pageNavigator(self):  # noqa: N802 - mirrors QPdfView for black-box tests
        return self.pdf_view.pageNavigator()

    def current_page(self) -> int | None:
        """0-based page shown (PDF view or page image); None when a text source (or nothing) is shown."""
        if self.stack.currentIndex() == _IMAGE:
            return self._image_page
        return self.pdf_view.pageNavigator().currentPage() if self.stack.currentIndex() == _PDF else None

    def is_pdf(self, source: dict) -> bool:
        return view_for(source["path"]) == "pdf"

    def may_be_scanned(self, source: dict) -> bool:
        """A PDF page or an image: OCR may have read it, and then it is shown as a picture."""
        return view_for(source["path"]) in ("pdf", "image")

    def show_source_page(self, source: dict, found: dict | None) -> None:
        """A source that may have been read by OCR, once its words are known (`found` is
        Engine.page_words()): a scanned page or an image is shown as a picture. A PDF page with
        a text layer stays as show_pdf() put it; a later click wins over this late answer."""
        if source is not self.requested:
            return
        if found is not None:
            self.show_scanned(source, found)
        elif not self.is_pdf(source):
            self.show_scanned(source, {"page": source.get("page") or 1, "words": []})

    # --- scanned pages and images ----------------------------------------------------------

    def show_scanned(self, source: dict, found: dict) -> None:
        """The page as a picture, with the words of the supporting passage boxed on it."""
        self.source = source
        page = max(int(found.get("page") or 1) - 1, 0)
        image = self._page_picture(source["path"], page)
        start, end = self._ocr_span(source)
        boxes = [w[2:] for w in found.get("words", []) if w[0] < end and w[1] > start]
        painted = image.convertToFormat(QImage.Format_ARGB32)
        self.highlighted_boxes = []
        if boxes and not painted.isNull():
            painter = QPainter(painted)
            fill = QColor(HIGHLIGHT)
            fill.setAlpha(110)
            painter.setPen(QPen(QColor(HIGHLIGHT).darker(130), 2))
            for x0, y0, x1, y1 in boxes:
                rect = QRectF(x0 * painted.width(), y0 * painted.height(),
                              (x1 - x0) * painted.width(), (y1 - y0) * painted.height()).adjusted(-2, -2, 2, 2)
                painter.fillRect(rect, fill)
                painter.drawRect(rect)
                self.highlighted_boxes.append(rect)
            painter.end()
        chunk = source.get("text", "")
        offset = source.get("char_start", 0)
        self.highlighted_text = chunk[max(start - offset, 0):max(end - offset, 0)] if boxes else ""
        self.page_image = painted
        self.image_label.setPixmap(QPixmap.fromImage(painted))
        self.image_label.resize(painted.size())
        self._image_page = page
        self.stack.setCurrentIndex(_IMAGE)
        if self.highlighted_boxes:
            first = self.highlighted_boxes[0]
            self.image_view.ensureVisible(int(first.center().x()), int(first.center().y()), 50, 120)
        self._set_title(source)

    @staticmethod
    def _ocr_span(source: dict) -> tuple[int, int]:
        """Where the passage lies in the document's text: the supporting sentence of an
        answer, else the whole chunk."""
        start = source.get("char_start", 0)
        support = source.get("support") or {}
        if support.get("text") and support.get("start") is not None:
            return start + support["start"], start + support["end"]
        return start, start + len(source.get("text", ""))

    def _page_picture(self, path: str, page: int) -> QImage:
        if view_for(path) == "pdf":
            if self.document.status() != QPdfDocument.Status.Ready or self._loaded != path:
                self.document.close()
                self.document.load(path)
                self._loaded = path
            size = self.document.pagePointSize(page)
            if size.width() <= 0:
                return QImage()
            scale = PAGE_IMAGE_WIDTH / size.width()
            return self.document.render(page, QSize(PAGE_IMAGE_WIDTH, round(size.height() * scale)))
        reader = QImageReader(path)
        reader.setAutoTransform(True)  # EXIF orientation, as OCR read it
        if page:
            reader.jumpToImage(page)
        image = reader.read()
        if not image.isNull() and image.width() > PAGE_IMAGE_WIDTH:
            image = image.scaledToWidth(PAGE_IMAGE_WIDTH, Qt.SmoothTransformation)
        return image

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
        self.pdf_view.set_marks([])
        found: list[tuple[str, list[QRectF]]] = []
        for phrase in search_phrases(passage, hint):
            rects = self._find_on_page(phrase, page)
            if rects:
                found = [(phrase, rects)]
                break
        else:
            # The passage's words lie on different lines of the page (a table's column, a
            # form): mark each pair of its words found there.
            found = [(pair, rects) for pair in word_pairs(passage) if (rects := self._find_on_page(pair, page))]
        self.search.setSearchString("")
        if not found:
            return None
        self.highlighted_text = " ".join(phrase for phrase, _ in found)
        self.pdf_view.set_marks([(page, rect) for _, rects in found for rect in rects])
        top = min(rect.top() for _, rects in found for rect in rects)
        return QPointF(0, max(top - 40, 0))

    def _find_on_page(self, phrase: str, page: int) -> list[QRectF]:
        """The rectangles (PDF points) of the first place `phrase` is on `page`."""
        self.search.setSearchString(phrase)
        results = self.search.resultsOnPage(page)
        return list(results[0].rectangles()) if results else []

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
            # A table's chunk starts with its repeated header row, which is not at that place
            # in the document: offsets hold only where the text agrees.
            if 0 <= start < end <= len(text) and text[start:end] == support.get("text", text[start:end]):
                return start, end
        for needle in (support.get("text"), chunk):
            if needle:
                at = text.find(needle, source.get("char_start", 0))
                if at < 0:
                    at = text.find(needle)
                if at >= 0:
                    return at, at + len(needle)
        return None, None

    def _set_title(self, source: dict) -> None:
        page = f" — page {source['page']}" if source.get("page") else ""
        page += f" — {source['unit']}" if source.get("unit") else ""
        self.title.setText(f"[{source.get('n', '?')}] {Path(source['path']).name}{page}")
        self.title.setToolTip(source["path"])
        self.open_button.setEnabled(True)

    @Slot()
    def _on_open_clicked(self) -> None:
        if self.source:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.source["path"]))
