"""The chat pane: streamed, rendered answers with clickable [n] citations and source cards."""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPlainTextEdit, QPushButton, QTextBrowser,
    QVBoxLayout, QWidget,
)


RENDER_INTERVAL_MS = 40  # streamed tokens are drawn at most this often
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
CITE_SCHEME = "cite"


def link_citations(text: str, message: int) -> str:
    """Turn [1] and [1, 2] into Markdown links cite:<message>/<n>."""

    def replace(match: re.Match) -> str:
        numbers = [n.strip() for n in match.group(1).split(",")]
        return "".join(f"[\\[{n}\\]]({CITE_SCHEME}:{message}/{n})" for n in numbers)

    return _MARKER.sub(replace, text)


def source_label(source: dict) -> str:
    page = f", page {source['page']}" if source.get("page") else ""
    page += f", {source['unit']}" if source.get("unit") else ""  # slide, sheet and rows, chapter, mail
    return f"[{source['n']}] {Path(source['path']).name}{page} · score {source.get('score', 0):.3f}"


class ChatInputWidget(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line, Esc stops the answer."""

    submitted = Signal()
    stop_requested = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        if event.key() in (Qt.Key_Return, Qt.Key_Enter) and not event.modifiers() & Qt.ShiftModifier:
            self.submitted.emit()
            return
        if event.key() == Qt.Key_Escape:
            self.stop_requested.emit()
            return
        super().keyPressEvent(event)


class SourceCardsWidget(QListWidget):
    """One card per source of the selected answer: file, page, score, the supporting words."""

    source_activated = Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("sourceCards")
        self.setAccessibleName("Sources of the answer")
        self.setWordWrap(True)
        self.setMaximumHeight(130)
        self.itemClicked.connect(self._on_item_clicked)
        self.itemActivated.connect(self._on_item_clicked)

    def set_sources(self, sources: list[dict]) -> None:
        self.clear()
        self.setVisible(bool(sources))
        for source in sources:
            support = (source.get("support") or {}).get("text") or source.get("text", "")
            snippet = " ".join(support.split())[:140]
            item = QListWidgetItem(f"{source_label(source)}\n“{snippet}”")
            item.setData(Qt.UserRole, source)
            item.setToolTip(source["path"])
            self.addItem(item)

    @Slot(QListWidgetItem)
    def _on_item_clicked(self, item: QListWidgetItem) -> None:
        self.source_activated.emit(item.data(Qt.UserRole))


class ChatWidget(QWidget):
    question_submitted = Signal(str)
    stop_requested = Signal()
    citation_clicked = Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._messages: list[dict] = []  # {"role", "text", "sources"}
        self.view = QTextBrowser()
        self.view.setObjectName("chatView")
        self.view.setAccessibleName("Conversation")
        self.view.setOpenLinks(False)
        self.view.setAcceptDrops(False)
        self.view.anchorClicked.connect(self._on_anchor_clicked)
        self.view.setPlaceholderText("Ask a question about your documents. Answers cite their sources.")

        self.cards = SourceCardsWidget()
        self.cards.source_activated.connect(self.citation_clicked)
        self.cards.hide()

        self.input = ChatInputWidget()
        self.input.setObjectName("chatInput")
        self.input.setAccessibleName("Question")
        self.input.setPlaceholderText("Ask about your documents… (Enter sends, Shift+Enter for a new line)")
        self.input.setAcceptDrops(False)
        self.input.setMaximumHeight(80)
        self.input.submitted.connect(self._on_send_clicked)
        self.input.stop_requested.connect(self.stop_requested)

        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("sendButton")
        self.send_button.setAccessibleName("Send the question")
        self.send_button.setToolTip("Send (Enter)")
        self.send_button.clicked.connect(self._on_send_clicked)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setAccessibleName("Stop the answer")
        self.stop_button.setToolTip("Stop the answer (Esc)")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop_requested)

        self.status = QLabel()
        self.status.setObjectName("chatStatus")

        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(RENDER_INTERVAL_MS)
        self._render_timer.timeout.connect(self._render)

        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        row = QHBoxLayout()
        row.addWidget(self.input, 1)
        row.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.cards)
        layout.addWidget(self.status)
        layout.addLayout(row)

    # --- from the window -----------------------------------------------------------------

    def set_messages(self, messages: list[dict]) -> None:
        """Show a stored conversation: [{"role", "text", "answer": dict | None}]."""
        self._messages = []
        for m in messages:
            answer = m.get("answer") or {}
            hint = f"{answer.get('question', '')} {m['text']}"
            self._messages.append({"role": m["role"], "text": m["text"],
                                   "sources": [dict(s, hint=hint) for s in answer.get("sources", [])]})
        last = next((m for m in reversed(self._messages) if m["role"] == "assistant"), None)
        self.cards.set_sources(last["sources"] if last else [])
        self._render()

    def begin_answer(self, question: str) -> None:
        self._messages.append({"role": "user", "text": question, "sources": []})
        self._messages.append({"role": "assistant", "text": "", "sources": []})
        self.cards.set_sources([])
        self.set_busy(True)
        self.status.setText("Searching your documents…")
        self._render()

    def append_piece(self, piece: str) -> None:
        if self._messages and self._messages[-1]["role"] == "assistant":
            self._messages[-1]["text"] += piece
            self.status.setText("Answering…")
            if not self._render_timer.isActive():
                self._render_timer.start()

    def finish_answer(self, answer: dict, stopped: bool = False) -> None:
        if self._messages and self._messages[-1]["role"] == "assistant":
            self._messages[-1]["text"] = answer.get("answer", self._messages[-1]["text"])
            hint = f"{answer.get('question', '')} {answer.get('answer', '')}"
            self._messages[-1]["sources"] = [dict(s, hint=hint) for s in answer.get("sources", [])]
        self.cards.set_sources(self._messages[-1]["sources"] if self._messages else [])
        timings = answer.get("timings") or {}
        note = "Stopped. " if stopped else ""
        if timings.get("total_ms") is not None:
            note += f"Answered in {timings['total_ms'] / 1000:.1f} s"
            if timings.get("tokens_per_s"):
                note += f" · {timings['tokens_per_s']:.0f} tokens/s"
        self.status.setText(note)
        self.set_busy(False)
        self._render_timer.stop()
        self._render()

    def fail_answer(self, message: str) -> None:
        if self._messages and self._messages[-1]["role"] == "assistant":
            last = self._messages[-1]
            # What was said before the failure stays, followed by why it stopped.
            last["text"] = f"{last['text']}\n\n*{message}*" if last["text"] else f"*{message}*"
        self.status.setText("")
        self.set_busy(False)
        self._render()

    def set_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        self.send_button.setEnabled(not busy)

    def is_busy(self) -> bool:
        return self.stop_button.isEnabled()

    def source(self, message: int, n: int) -> dict | None:
        if 0 <= message < len(self._messages):
            for source in self._messages[message]["sources"]:
                if source["n"] == n:
                    return source
        return None

    # --- rendering -----------------------------------------------------------------------

    def markdown(self) -> str:
        parts = []
        for i, message in enumerate(self._messages):
            if message["role"] == "user":
                parts.append(f"**You**\n\n{_quote(message['text'])}")
            else:
                text = message["text"] or "…"
                body = link_citations(text, i) if message["sources"] else text
                block = f"**Enclave**\n\n{body}"
                if message["sources"]:
                    lines = [f"- [{_md(source_label(s))}]({CITE_SCHEME}:{i}/{s['n']})" for s in message["sources"]]
                    block += "\n\n*Sources*\n\n" + "\n".join(lines)
                parts.append(block)
        return "\n\n---\n\n".join(parts)

    @Slot()
    def _render(self) -> None:
        bar = self.view.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        self.view.setMarkdown(self.markdown())
        if at_bottom or self.is_busy():
            bar.setValue(bar.maximum())

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().changeEvent(event)
        if event.type() == QEvent.PaletteChange:
            self._render()  # rendered links keep the link colour of the palette they were drawn with

    # --- slots -------------------------------------------------------------------------

    @Slot()
    def _on_send_clicked(self) -> None:
        question = self.input.toPlainText().strip()
        if question and not self.is_busy():
            self.input.clear()
            self.question_submitted.emit(question)

    @Slot(QUrl)
    def _on_anchor_clicked(self, url: QUrl) -> None:
        if url.scheme() != CITE_SCHEME:
            return
        try:
            message, n = (int(x) for x in url.path().split("/"))
        except ValueError:
            return
        source = self.source(message, n)
        if source is not None:
            self.citation_clicked.emit(source)


def _md(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>#])", r"\\\1", text)


def _quote(text: str) -> str:
    return _md(text).replace("\n", "  \n")
