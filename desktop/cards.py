"""Source cards: one card per source of the selected answer, in a row under the chat.

Each card reads like a reference: a file-type badge, the file name (elided, the full path in
the tooltip), where in the file ("page 3", "sheet 'Q1', rows 2–9"), how well it answers in a
word, and two lines of the supporting passage cut at a word. A list widget with a painting
delegate keeps clicks, keyboard focus and accessibility of a plain list.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, QRect, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QAbstractItemView, QApplication, QListView, QListWidget, QListWidgetItem, QStyle, QStyledItemDelegate, QStyleOptionViewItem,
)

from .style import RADIUS, tones

CARD_WIDTH = 250
CARD_HEIGHT = 84
PAD = 10

_KINDS = {  # suffix -> (badge text, colour family in style.tones().badge)
    ".pdf": ("PDF", "pdf"), ".doc": ("DOC", "doc"), ".docx": ("DOC", "doc"), ".odt": ("ODT", "doc"),
    ".rtf": ("RTF", "doc"), ".epub": ("EPUB", "doc"), ".xls": ("XLS", "sheet"), ".xlsx": ("XLS", "sheet"),
    ".ods": ("ODS", "sheet"), ".csv": ("CSV", "sheet"), ".ppt": ("PPT", "slides"), ".pptx": ("PPT", "slides"),
    ".odp": ("ODP", "slides"), ".eml": ("MAIL", "mail"), ".msg": ("MAIL", "mail"), ".mbox": ("MAIL", "mail"),
    ".html": ("HTML", "web"), ".htm": ("HTML", "web"), ".md": ("MD", "text"), ".txt": ("TXT", "text"),
    ".png": ("IMG", "image"), ".jpg": ("IMG", "image"), ".jpeg": ("IMG", "image"), ".tif": ("IMG", "image"),
    ".tiff": ("IMG", "image"),
}


def file_kind(path: str) -> tuple[str, str]:
    """(badge text, colour family) for a file; unknown types show their suffix."""
    suffix = Path(path).suffix.lower()
    return _KINDS.get(suffix, ((suffix[1:5] or "FILE").upper(), "text"))


def unit(source: dict) -> str:
    """Where in the file, in words: "page 3", or the format's own unit (slide, sheet and rows)."""
    parts = []
    if source.get("page"):
        parts.append(f"page {source['page']}")
    if source.get("unit"):
        parts.append(str(source["unit"]))
    return ", ".join(parts)


def relevance_word(source: dict) -> str:
    """The calibrated evidence as a word; a raw fusion score means nothing to a reader."""
    relevance = source.get("relevance")
    return f"{relevance.capitalize()} match" if relevance else ""


def support_text(source: dict) -> str:
    return " ".join(((source.get("support") or {}).get("text") or source.get("text", "")).split())


def cut_lines(text: str, metrics: QFontMetrics, width: int, lines: int = 2) -> list[str]:
    """`text` wrapped into at most `lines` lines of `width` pixels, cut after a whole word
    with "…" when it does not fit (a word longer than a line is elided inside itself)."""
    words, out, line = text.split(), [], ""
    for word in words:
        candidate = f"{line} {word}" if line else word
        if metrics.horizontalAdvance(candidate) <= width:
            line = candidate
            continue
        if not line:  # one word wider than the line
            line = metrics.elidedText(word, Qt.ElideRight, width)
            if len(out) + 1 == lines:
                out.append(line)
                return out
            out.append(line)
            line = ""
            continue
        if len(out) + 1 == lines:  # the last line: end it at this word boundary
            while line and metrics.horizontalAdvance(line + " …") > width:
                line = line.rsplit(" ", 1)[0] if " " in line else ""
            out.append((line + " …") if line else "…")
            return out
        out.append(line)
        line = word
    if line:
        out.append(line)
    return out[:lines]


def card_text(source: dict) -> str:
    """The card as plain text: what screen readers and tests read."""
    where = unit(source)
    head = f"[{source['n']}] {Path(source['path']).name}" + (f", {where}" if where else "")
    relevance = relevance_word(source)
    snippet = support_text(source)
    return head + (f" · {relevance.lower()}" if relevance else "") + (f"\n“{snippet[:200]}”" if snippet else "")


class SourceCardDelegate(QStyledItemDelegate):
    def sizeHint(self, option, index) -> QSize:  # noqa: N802 (Qt API)
        return QSize(CARD_WIDTH, CARD_HEIGHT)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        source = index.data(Qt.UserRole)
        if not source:
            return
        # The application's palette: the list's own is transparent (style sheet), which would
        # read as a dark scheme.
        palette = QApplication.palette()
        t = tones(palette)
        painter.save()
        painter.setRenderHint(QPainter.Antialiasing)
        rect = option.rect.adjusted(2, 2, -4, -2)
        hovered = option.state & QStyle.State_MouseOver
        selected = option.state & QStyle.State_Selected
        edge = t.accent if (hovered or selected) else t.card_edge
        painter.setPen(QPen(edge, 1.2))
        painter.setBrush(t.card)
        painter.drawRoundedRect(rect, RADIUS, RADIUS)

        inner = rect.adjusted(PAD, PAD - 2, -PAD, -PAD + 2)
        base_font = QFont(option.font)
        small = QFont(base_font)
        small.setPointSizeF(max(base_font.pointSizeF() - 1.5, 7.0))
        bold = QFont(base_font)
        bold.setBold(True)

        # row 1: badge, [n], file name
        badge_text, family = file_kind(source["path"])
        badge_font = QFont(small)
        badge_font.setBold(True)
        bm = QFontMetrics(badge_font)
        badge = QRect(inner.left(), inner.top(), bm.horizontalAdvance(badge_text) + 10, bm.height() + 4)
        painter.setPen(Qt.NoPen)
        painter.setBrush(t.badge.get(family, t.badge["text"]))
        painter.drawRoundedRect(badge, 4, 4)
        painter.setFont(badge_font)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(badge, Qt.AlignCenter, badge_text)

        painter.setFont(bold)
        fm = QFontMetrics(bold)
        text_color = palette.color(QPalette.Text)
        x = badge.right() + 8
        number = f"[{source['n']}]"
        painter.setPen(t.accent)
        name_rect = QRect(x, badge.top(), inner.right() - x, badge.height())
        painter.drawText(name_rect, Qt.AlignVCenter | Qt.AlignLeft, number)
        x += fm.horizontalAdvance(number + " ")
        painter.setPen(text_color)
        name = fm.elidedText(Path(source["path"]).name, Qt.ElideMiddle, inner.right() - x)
        painter.drawText(QRect(x, badge.top(), inner.right() - x, badge.height()), Qt.AlignVCenter | Qt.AlignLeft, name)

        # row 2: where, and how well it answers
        painter.setFont(small)
        sm = QFontMetrics(small)
        y = badge.bottom() + 4
        detail = " · ".join(p for p in (unit(source), relevance_word(source)) if p)
        painter.setPen(t.muted)
        painter.drawText(QRect(inner.left(), y, inner.width(), sm.height()), Qt.AlignLeft,
                         sm.elidedText(detail, Qt.ElideRight, inner.width()))

        # rows 3-4: the passage, two lines cut at a word
        painter.setFont(base_font)
        bm2 = QFontMetrics(base_font)
        y += sm.height() + 3
        painter.setPen(text_color)
        for line in cut_lines(support_text(source), bm2, inner.width()):
            painter.drawText(QRect(inner.left(), y, inner.width(), bm2.height()), Qt.AlignLeft, line)
            y += bm2.height()
        painter.restore()


class SourceCardsWidget(QListWidget):
    """The sources of the selected answer as a row of cards; clicking one opens it."""

    source_activated = Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("sourceCards")
        self.setAccessibleName("Sources of the answer")
        self.setItemDelegate(SourceCardDelegate(self))
        self.setFlow(QListView.LeftToRight)
        self.setWrapping(False)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollPerPixel)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setMouseTracking(True)  # the hovered card gets an accent edge
        self.setSpacing(2)
        self.setFixedHeight(CARD_HEIGHT + 8 + self.horizontalScrollBar().sizeHint().height())
        self.itemClicked.connect(self._on_item_clicked)
        self.itemActivated.connect(self._on_item_clicked)

    def set_sources(self, sources: list[dict]) -> None:
        self.clear()
        self.setVisible(bool(sources))
        for source in sources:
            item = QListWidgetItem(card_text(source))
            item.setData(Qt.UserRole, source)
            tip = source["path"]
            if source.get("relevance"):
                tip += f"\n{relevance_word(source)}: how well this source's sentences answer the question"
            item.setToolTip(tip)
            item.setSizeHint(QSize(CARD_WIDTH, CARD_HEIGHT))
            self.addItem(item)

    @Slot(QListWidgetItem)
    def _on_item_clicked(self, item: QListWidgetItem) -> None:
        self.source_activated.emit(item.data(Qt.UserRole))
