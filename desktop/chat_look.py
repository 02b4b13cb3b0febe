"""How the conversation looks: message blocks with clear roles, and the empty state.

The chat is rendered from Markdown (chat.py); this module only dresses the rendered document,
so the text, its links and the claim marks stay exactly as chat.py made them. Each message
is moved into a frame of its own: the question as a tinted block set in from the left, the
answer full width, a refusal and an answer no source supports in their own colours; the
quote from the documents is a tinted, indented block inside the answer.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import (
    QBrush, QFont, QPalette, QTextBlockFormat, QTextCharFormat, QTextCursor, QTextDocument, QTextFormat, QTextFrameFormat,
    QTextLength, QTextTable, QTextTableFormat,
)
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from .style import SPACE, tones

MEASURE = 560  # px: the empty state's widest line
USER_INDENT = 56  # px: the question sits to the right of the answer's left edge
EXAMPLE_QUESTION = "How do I add documents?"  # the Welcome guide answers it
_HEADERS = ("You", "Enclave")


def _is_header(block) -> bool:
    text = block.text()
    return text in _HEADERS or text.startswith("You · ")


def style_blocks(document: QTextDocument, messages: list[dict], waiting: int, palette: QPalette,
                 unsupported=lambda m: False) -> None:
    """Frame each message of the rendered conversation. `messages` are chat.py's, `waiting`
    the number of questions shown below them; if the headers found do not match (a question
    holding a line "You"), the document is left plain rather than framed wrongly."""
    t = tones(palette)
    headers = []
    block = document.begin()
    while block.isValid():
        if _is_header(block):
            headers.append(block)
        block = block.next()
    roles = [m["role"] for m in messages] + ["user"] * waiting
    if len(headers) != len(roles):
        return
    # Last first: framing a message moves no text before it.
    for k in range(len(headers) - 1, -1, -1):
        start = headers[k]
        end = headers[k + 1].previous() if k + 1 < len(headers) else document.lastBlock()
        while end.isValid() and end != start and (not end.text().strip()):
            end = end.previous()  # the ruler and empty blocks stay outside
        message = messages[k] if k < len(messages) else {"role": "user"}
        _frame(document, start, end, message, t, palette, unsupported(message), k >= len(messages))
    _dress_tables(document.rootFrame(), t)
    # The rulers and the empty blocks Qt keeps between frames become a thin gap: the frames'
    # own margins are the spacing now.
    root = document.rootFrame()
    block = document.begin()
    while block.isValid():
        if not block.text() and QTextCursor(block).currentFrame() == root:
            fmt = QTextBlockFormat()
            fmt.setTopMargin(0)
            fmt.setBottomMargin(0)
            fmt.setLineHeight(2.0, QTextBlockFormat.LineHeightTypes.FixedHeight.value)
            QTextCursor(block).setBlockFormat(fmt)
        block = block.next()


def _frame(document, start, end, message: dict, t, palette: QPalette, warned: bool, waiting: bool) -> None:
    header = QTextCursor(start)
    header.movePosition(QTextCursor.EndOfBlock, QTextCursor.KeepAnchor)
    role = QTextCharFormat()  # the role: small and muted, the message itself is what matters
    role.setForeground(t.muted)
    role.setFontPointSize(max(document.defaultFont().pointSizeF() - 1, 8.0))
    role.setFontWeight(QFont.DemiBold)
    header.mergeCharFormat(role)

    block = start.next()
    stop = end.next()
    while block.isValid() and block != stop:
        level = block.blockFormat().property(QTextFormat.BlockQuoteLevel)
        cursor = QTextCursor(block)
        fmt = QTextBlockFormat()
        if level:  # the documents' own sentence
            fmt.setBackground(QBrush(t.quote_block))
            fmt.setLeftMargin(SPACE * 1.5)
            fmt.setRightMargin(SPACE)
            cursor.mergeBlockFormat(fmt)
        elif block.text() == "Sources":
            small = QTextCharFormat()
            small.setForeground(t.muted)
            line = QTextCursor(block)
            line.movePosition(QTextCursor.EndOfBlock, QTextCursor.KeepAnchor)
            line.mergeCharFormat(small)
        elif message.get("refused") and not warned:  # a refusal reads as a note, not an answer
            note = QTextCharFormat()
            note.setForeground(t.muted)
            note.setFontItalic(True)
            line = QTextCursor(block)
            line.movePosition(QTextCursor.EndOfBlock, QTextCursor.KeepAnchor)
            line.mergeCharFormat(note)
        elif warned and block.text().startswith("\u26a0"):
            fmt.setBackground(QBrush(t.warning_block))
            cursor.mergeBlockFormat(fmt)
            strong = QTextCharFormat()
            strong.setForeground(t.warning_text)
            line = QTextCursor(block)
            line.movePosition(QTextCursor.EndOfBlock, QTextCursor.KeepAnchor)
            line.mergeCharFormat(strong)
        block = block.next()

    frame = QTextFrameFormat()
    frame.setPadding(SPACE * 1.25)
    frame.setTopMargin(SPACE / 2)
    frame.setBottomMargin(SPACE / 2)
    frame.setBorder(1)
    frame.setBorderStyle(QTextFrameFormat.BorderStyle_Solid)
    edge = t.card_edge
    if message["role"] == "user":
        frame.setBackground(QBrush(t.user_block))
        frame.setLeftMargin(USER_INDENT)
        edge = t.user_block
    elif warned:
        frame.setBackground(QBrush(t.warning_block))
        edge = t.warning_text
    elif message.get("refused"):
        frame.setBackground(QBrush(t.refusal_block))
        edge = t.refusal_block
    else:
        frame.setBackground(QBrush(palette.color(QPalette.Base)))
    frame.setBorderBrush(QBrush(edge))
    if waiting:
        frame.setBorderStyle(QTextFrameFormat.BorderStyle_Dashed)
        frame.setBorderBrush(QBrush(t.muted))
    cursor = QTextCursor(document)
    cursor.setPosition(start.position())
    cursor.setPosition(end.position() + end.length() - 1, QTextCursor.KeepAnchor)
    cursor.insertFrame(frame)


def _dress_tables(frame, t) -> None:
    """A comparison's table (before | after): two equal columns across the message, ruled,
    the header row tinted, so the two sides of each change read next to each other."""
    for child in frame.childFrames():
        if isinstance(child, QTextTable):
            fmt = child.format()
            fmt.setWidth(QTextLength(QTextLength.PercentageLength, 100))
            fmt.setColumnWidthConstraints([QTextLength(QTextLength.PercentageLength, 50)] * child.columns())
            fmt.setBorder(1)
            fmt.setBorderStyle(QTextFrameFormat.BorderStyle_Solid)
            fmt.setBorderBrush(QBrush(t.card_edge))
            fmt.setBorderCollapse(True)
            fmt.setCellSpacing(0)
            fmt.setCellPadding(SPACE * 0.75)
            fmt.setHeaderRowCount(1)
            child.setFormat(fmt)
            for column in range(child.columns()):
                cell = child.cellAt(0, column)
                header = cell.format()
                header.setBackground(QBrush(t.quote_block))
                cell.setFormat(header)
        else:
            _dress_tables(child, t)


class EmptyStateWidget(QWidget):
    """What the chat shows before anything is asked: what Enclave is and the three ways to
    start (drop files, add a folder, ask the Welcome guide's own question)."""

    add_files_requested = Signal()
    add_folder_requested = Signal()
    example_requested = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("chatEmptyState")
        self.setAttribute(Qt.WA_StyledBackground)  # the sheet gives it the chat's background
        title = QLabel("Ask your documents")
        title.setObjectName("emptyTitle")
        title.setAlignment(Qt.AlignCenter)
        title.setWordWrap(True)
        body = QLabel("Drop files or whole folders anywhere on this window, or add them below. "
                      "Enclave reads them on this computer and answers with the sentence and "
                      "page it found. Nothing leaves this machine.")
        body.setObjectName("emptyBody")
        body.setAlignment(Qt.AlignCenter)
        body.setWordWrap(True)
        files = QPushButton("Add files…")
        files.setObjectName("emptyAddFiles")
        files.setProperty("primary", True)
        files.clicked.connect(self.add_files_requested)
        folder = QPushButton("Add folder…")
        folder.setObjectName("emptyAddFolder")
        folder.clicked.connect(self.add_folder_requested)
        example = QPushButton(f"Try: “{EXAMPLE_QUESTION}”")
        example.setObjectName("tryQuestion")
        example.setToolTip("Asks the Welcome guide, which is already indexed")
        example.clicked.connect(lambda: self.example_requested.emit(EXAMPLE_QUESTION))

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(files)
        buttons.addWidget(folder)
        buttons.addStretch(1)
        try_row = QHBoxLayout()
        try_row.addStretch(1)
        try_row.addWidget(example)
        try_row.addStretch(1)
        # A short measure reads better than a line across a wide pane: the column is at most
        # MEASURE wide and centred by stretches. Neither margins set on resize (they enter the
        # minimum width, so the window could not shrink again) nor an alignment (a wrapped
        # label aligned in a layout gets its narrow size hint as its width and is cut): the
        # layout test caught both.
        column = QWidget()
        column.setMaximumWidth(MEASURE)
        inner = QVBoxLayout(column)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.setSpacing(SPACE * 2)
        inner.addStretch(2)
        inner.addWidget(title)
        inner.addWidget(body)
        inner.addLayout(buttons)
        inner.addLayout(try_row)
        inner.addStretch(3)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(SPACE * 4, SPACE * 4, SPACE * 4, SPACE * 4)
        layout.addStretch(1)
        layout.addWidget(column, 100)
        layout.addStretch(1)
