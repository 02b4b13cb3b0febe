"""Drag-and-drop: a hint over the window while files are dragged, and the paths dropped."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, QRect, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QWidget

from rag.ingest.loaders.registry import short_list


def local_paths(mime: QMimeData) -> list[str]:
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


TITLE = "Drop files or folders to index them"
SUBTITLE = "Folders are watched for changes"
CARD_MAX_WIDTH = 620
CARD_PADDING = 28


class DropHintWidget(QWidget):
    """An overlay over its parent while files are dragged: the window is veiled (so the chat's
    text does not show through the hint) and a card in the middle says what a drop does. The
    card is as wide as its title needs, never wider than the window, so nothing wraps or
    runs over the buttons at 1024 px."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("dropHint")
        self.setAttribute(Qt.WA_TransparentForMouseEvents)
        self.hide()

    def show_over_parent(self) -> None:
        self.setGeometry(self.parentWidget().rect())
        self.raise_()
        self.show()

    def _fonts(self) -> tuple[QFont, QFont]:
        title = QFont(self.font())
        title.setPointSizeF(self.font().pointSizeF() * 1.5)
        title.setBold(True)
        return title, QFont(self.font())

    def layout_rects(self) -> dict[str, QRect]:
        """The card and the rectangles of its three lines (for painting, and for tests)."""
        title_font, body_font = self._fonts()
        title_metrics, body_metrics = QFontMetrics(title_font), QFontMetrics(body_font)
        room = max(self.width() - 2 * 24, 120)
        needed = max(title_metrics.horizontalAdvance(TITLE), title_metrics.boundingRect(TITLE).width()) + 8
        width = min(max(needed + 2 * CARD_PADDING, 360), CARD_MAX_WIDTH, room)
        inner = width - 2 * CARD_PADDING
        title = title_metrics.boundingRect(QRect(0, 0, inner, 10_000), Qt.TextWordWrap | Qt.AlignHCenter, TITLE)
        sub = body_metrics.boundingRect(QRect(0, 0, inner, 10_000), Qt.TextWordWrap | Qt.AlignHCenter, SUBTITLE)
        formats = body_metrics.boundingRect(QRect(0, 0, inner, 10_000), Qt.TextWordWrap | Qt.AlignHCenter,
                                            self.formats_line())
        gap = body_metrics.height() // 2
        height = 2 * CARD_PADDING + title.height() + gap + sub.height() + 2 * gap + formats.height()
        card = QRect(0, 0, width, height)
        card.moveCenter(self.rect().center())
        x, y = card.left() + CARD_PADDING, card.top() + CARD_PADDING
        rects = {"card": card, "title": QRect(x, y, inner, title.height())}
        y += title.height() + gap
        rects["subtitle"] = QRect(x, y, inner, sub.height())
        y += sub.height() + 2 * gap
        rects["formats"] = QRect(x, y, inner, formats.height())
        return rects

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt API)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        palette = self.palette()
        highlight = palette.highlight().color()
        veil = QColor(palette.window().color())
        veil.setAlpha(215)  # the window shows faintly through, its text no longer competes
        painter.fillRect(self.rect(), veil)
        rects = self.layout_rects()
        painter.setPen(QPen(highlight, 2, Qt.DashLine))
        painter.setBrush(palette.base())
        painter.drawRoundedRect(rects["card"], 14, 14)
        title_font, body_font = self._fonts()
        painter.setPen(palette.text().color())
        painter.setFont(title_font)
        painter.drawText(rects["title"], Qt.TextWordWrap | Qt.AlignHCenter, TITLE)
        painter.setFont(body_font)
        painter.drawText(rects["subtitle"], Qt.TextWordWrap | Qt.AlignHCenter, SUBTITLE)
        painter.setPen(palette.placeholderText().color())
        painter.drawText(rects["formats"], Qt.TextWordWrap | Qt.AlignHCenter, self.formats_line())

    @staticmethod
    def formats_line() -> str:
        return "Read: " + short_list()
