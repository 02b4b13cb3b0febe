"""Drag-and-drop: a hint over the window while files are dragged, and the paths dropped."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QWidget

from rag.ingest.loaders.registry import short_list


def local_paths(mime: QMimeData) -> list[str]:
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


class DropHintWidget(QWidget):
    """A translucent overlay covering its parent: "Drop files or folders to index them"."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("dropHint")
        self.setAttribute(Qt.WA_TransparentForMouseEvents)
        self.hide()

    def show_over_parent(self) -> None:
        self.setGeometry(self.parentWidget().rect())
        self.raise_()
        self.show()

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt API)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        highlight = self.palette().highlight().color()
        fill = QColor(highlight)
        fill.setAlpha(48)
        painter.fillRect(self.rect(), fill)
        painter.setPen(QPen(highlight, 3, Qt.DashLine))
        painter.drawRoundedRect(self.rect().adjusted(12, 12, -12, -12), 16, 16)
        font = painter.font()
        font.setPointSize(font.pointSize() + 8)
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(self.palette().windowText().color())
        painter.drawText(self.rect(), Qt.AlignCenter,
                         "Drop files or folders to index them\nFolders are watched for changes")
        font.setPointSize(max(font.pointSize() - 10, 8))
        font.setBold(False)
        painter.setFont(font)
        below = self.rect().adjusted(40, self.rect().height() // 2 + 40, -40, 0)
        painter.drawText(below, Qt.AlignHCenter | Qt.AlignTop | Qt.TextWordWrap, self.formats_line())

    @staticmethod
    def formats_line() -> str:
        return "Read: " + short_list()
