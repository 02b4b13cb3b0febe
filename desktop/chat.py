"""The chat pane: streamed, rendered answers with clickable [n] citations and source cards."""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QKeyEvent, QPalette, QTextCharFormat, QTextCursor, QTextDocument, QTextFormat
from PySide6.QtWidgets import (
    QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QStackedWidget, QTextBrowser, QToolTip, QVBoxLayout, QWidget,
)

from rag.answer import verdict

from .cards import SourceCardsWidget
from .chat_look import EmptyStateWidget, style_blocks


RENDER_INTERVAL_MS = 40  # streamed tokens are drawn at most this often
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
CITE_SCHEME = "cite"  # cite:<message>/<n> a source, cite:<message>/q<j> a quote
CLAIM_SCHEME = "claim"  # claim:<message>/<j>: the passage that supports claim j
WARNING = "\u26a0"
UNSUPPORTED_TIP = "No source supports this sentence: check it before you rely on it."
BANNER = f"{WARNING} **No source supports this answer.** What your documents say:"


def link_citations(text: str, message: int, claims: list[dict] | None = None) -> str:
    """Turn [1] and [1, 2] into Markdown links cite:<message>/<n>; a marker inside a checked
    claim links to claim:<message>/<j>, so the viewer shows the passage behind that claim."""

    def owner(at: int) -> int | None:
        for j, claim in enumerate(claims or []):
            if claim.get("start", -1) <= at < claim.get("end", -1) and claim.get("support"):
                return j
        return None

    def replace(match: re.Match) -> str:
        numbers = [n.strip() for n in match.group(1).split(",")]
        j = owner(match.start())
        links = []
        for n in numbers:
            if j is not None and str((claims[j].get("support") or {}).get("n")) == n:
                links.append(f"[\\[{n}\\]]({CLAIM_SCHEME}:{message}/{j})")
            else:
                links.append(f"[\\[{n}\\]]({CITE_SCHEME}:{message}/{n})")
        return "".join(links)

    return _MARKER.sub(replace, text)


def place(source: dict) -> str:
    """File and where in it: page, or sheet or slide for the formats that have them."""
    where = f", page {source['page']}" if source.get("page") else ""
    where += f", {source['unit']}" if source.get("unit") else ""  # slide, sheet and rows, chapter, mail
    return f"{Path(source['path']).name}{where}"


def source_label(source: dict) -> str:
    # A plain word from the calibrated evidence; raw fusion scores mean nothing to a reader.
    relevance = source.get("relevance")
    return f"[{source['n']}] {place(source)}" + (f" · {relevance} match" if relevance else "")


def unsupported_everywhere(message: dict) -> bool:
    """A finished answer none of whose claims a source supports (or that says nothing but
    citations): the window shows the documents' own sentences instead. The verdict is the
    engine's, the one the CLI prints."""
    if message.get("streaming"):
        return False
    return bool(message.get("quotes")) and verdict.supported(message) is False


class ChatViewWidget(QTextBrowser):
    """The conversation; shows the tooltip of the text under the mouse (an unsupported
    claim says why it is dimmed)."""

    def event(self, event) -> bool:  # noqa: D102 (Qt API)
        if event.type() == QEvent.ToolTip:
            cursor = self.cursorForPosition(self.viewport().mapFrom(self, event.pos()))
            tip = cursor.charFormat().toolTip()
            if tip:
                QToolTip.showText(event.globalPos(), tip, self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)


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


class ChatWidget(QWidget):
    question_submitted = Signal(str)
    stop_requested = Signal()
    citation_clicked = Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        # {"role", "text", "sources"} and for answers "quote", "quotes", "claims", "refused"
        self._messages: list[dict] = []
        self._waiting: list[str] = []  # questions asked during an answer, answered in this order
        self.view = ChatViewWidget()
        self.view.setObjectName("chatView")
        self.view.setAccessibleName("Conversation")
        self.view.setOpenLinks(False)
        self.view.setAcceptDrops(False)
        self.view.anchorClicked.connect(self._on_anchor_clicked)
        self.view.setPlaceholderText("Ask a question about your documents. Answers cite their sources.")
        # The view follows the newest text to the bottom, as chat apps do, until the person
        # scrolls up to read; a new question follows again. The document is laid out after
        # setMarkdown returns (and in steps, when long), so the bottom is re-applied each time
        # the scroll range grows, not once per render.
        self._follow = True
        self._held = 0  # where the person left the view when not following
        bar = self.view.verticalScrollBar()
        bar.rangeChanged.connect(self._on_scroll_range_changed)
        bar.actionTriggered.connect(self._on_scrolled)  # the wheel, the keys, the bar: the person

        self.empty = EmptyStateWidget()  # until the conversation has a message
        self.pages = QStackedWidget()
        self.pages.addWidget(self.empty)
        self.pages.addWidget(self.view)

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
        self.send_button.setToolTip("Send (Enter). Asked during an answer, a question waits and is answered next.")
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
        layout.setSpacing(8)
        layout.addWidget(self.pages, 1)
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
            message = {"role": m["role"], "text": m["text"],
                       "sources": [dict(s, hint=hint) for s in answer.get("sources", [])]}
            if m["role"] == "assistant":
                message.update(_checked(answer))
            self._messages.append(message)
        last = next((m for m in reversed(self._messages) if m["role"] == "assistant"), None)
        self.cards.set_sources(last["sources"] if last else [])
        self._follow = True  # an opened conversation shows its latest answer
        self._render()

    def add_waiting(self, question: str) -> None:
        """A question asked during an answer: shown below it until its own answer begins."""
        self._waiting.append(question)
        self._follow = True
        self._render()

    def waiting(self) -> list[str]:
        return list(self._waiting)

    def begin_answer(self, question: str) -> None:
        if question in self._waiting:
            self._waiting.remove(question)  # the first of equal ones: they are answered in order
        self._messages.append({"role": "user", "text": question, "sources": []})
        self._messages.append({"role": "assistant", "text": "", "sources": [], "streaming": True})
        self.cards.set_sources([])
        self.set_busy(True)
        self.status.setText("Searching your documents…")
        self._follow = True  # a new question is followed to its answer
        self._render()

    def append_piece(self, piece) -> None:
        """A piece of the streamed answer, or the quote that comes before the first piece."""
        if isinstance(piece, dict):  # a whole-document task: its preview, or the model's progress
            if piece.get("kind") == "preview":
                self.show_preview(piece["answer"])
            elif piece.get("kind") == "progress":
                self.show_progress(piece)
            return
        if not isinstance(piece, str):
            self.show_quote(piece.to_json())
            return
        if not piece:
            return
        if self._messages and self._messages[-1]["role"] == "assistant":
            self._messages[-1]["text"] += piece
            self.status.setText("Answering…")
            if not self._render_timer.isActive():
                self._render_timer.start()

    def show_quote(self, quote: dict) -> None:
        """The documents' best sentence, shown as soon as retrieval is done."""
        if self._messages and self._messages[-1]["role"] == "assistant":
            self._messages[-1]["quote"] = quote
            self.status.setText("Reading the sources…")
            self._render()

    def show_preview(self, answer: dict) -> None:
        """A summary's extract (or a comparison's differences) while the model still reads:
        shown and cited at once, below the model's progress."""
        if self._messages and self._messages[-1]["role"] == "assistant":
            last = self._messages[-1]
            last["preview"] = answer
            last["sources"] = [dict(s, hint=answer.get("answer", "")) for s in answer.get("sources", [])]
            self.cards.set_sources(last["sources"])
            self.status.setText("The model is reading the whole document…")
            self._render()

    def show_progress(self, progress: dict) -> None:
        """Where the model's summary is ("reading part 3 of 12") and the time it expects."""
        if self._messages and self._messages[-1]["role"] == "assistant":
            self._messages[-1]["progress"] = progress
            self.status.setText(progress_text(progress))
            self._render()

    def finish_answer(self, answer: dict, stopped: bool = False) -> None:
        if self._messages and self._messages[-1]["role"] == "assistant":
            self._messages[-1].pop("preview", None)
            self._messages[-1].pop("progress", None)
            self._messages[-1]["text"] = answer.get("answer", self._messages[-1]["text"])
            hint = f"{answer.get('question', '')} {answer.get('answer', '')}"
            self._messages[-1]["sources"] = [dict(s, hint=hint) for s in answer.get("sources", [])]
            self._messages[-1].update(_checked(answer), streaming=False)
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
            last.pop("progress", None)
            preview = last.pop("preview", None)
            if preview is not None:  # the extract stands: the model's part failed, not the summary
                last["text"] = preview.get("answer", "")
            # What was said before the failure stays, followed by why it stopped.
            last["text"] = f"{last['text']}\n\n*{message}*" if last["text"] else f"*{message}*"
        self.status.setText("")
        self.set_busy(False)
        self._render()

    def set_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)  # Send stays enabled: a question asked now waits its turn

    def is_busy(self) -> bool:
        return self.stop_button.isEnabled()

    def source(self, message: int, n: int) -> dict | None:
        if 0 <= message < len(self._messages):
            for source in self._messages[message]["sources"]:
                if source["n"] == n:
                    return source
        return None

    def quote_source(self, message: int, j: int) -> dict | None:
        """The source of quote j of a message (0: the quote shown first), its sentence as the
        passage to highlight."""
        if not 0 <= message < len(self._messages):
            return None
        m = self._messages[message]
        quotes = ([m["quote"]] if m.get("quote") and not unsupported_everywhere(m) else []) or m.get("quotes") or []
        if not 0 <= j < len(quotes):
            return None
        quote = quotes[j]
        return dict(quote["source"], hint=quote["text"], n=quote["source"].get("n", "?"))

    def claim_source(self, message: int, j: int) -> dict | None:
        """The source behind claim j, its supporting passage as the one to highlight."""
        if not 0 <= message < len(self._messages):
            return None
        claims = self._messages[message].get("claims") or []
        if not 0 <= j < len(claims) or not claims[j].get("support"):
            return None
        support = claims[j]["support"]
        source = self.source(message, support["n"])
        if source is None:
            return None
        return dict(source, support={k: support[k] for k in ("start", "end", "text")}, hint=claims[j]["text"])

    # --- rendering -----------------------------------------------------------------------

    def markdown(self) -> str:
        parts = []
        for i, message in enumerate(self._messages):
            if message["role"] == "user":
                parts.append(f"**You**\n\n{_quote(message['text'])}")
            else:
                text = message["text"] or "…"
                body = link_citations(text, i, message.get("claims")) if message["sources"] else text
                block = "**Enclave**\n\n"
                if message.get("streaming") and (message.get("preview") or message.get("progress")):
                    body = _task_in_progress(message, i)
                elif unsupported_everywhere(message):
                    # The model's prose stays in the conversation's record, not on screen.
                    body = BANNER + "\n\n" + "\n\n".join(
                        _quote_block(q, i, j) for j, q in enumerate(message["quotes"]))
                elif message.get("quote"):
                    block += _quote_block(message["quote"], i, 0) + "\n\n"
                block += _no_rules(body)
                if message["sources"]:
                    lines = [f"- [{_md(source_label(s))}]({CITE_SCHEME}:{i}/{s['n']})" for s in message["sources"]]
                    block += "\n\n*Sources*\n\n" + "\n".join(lines)
                parts.append(block)
        for question in self._waiting:
            parts.append(f"**You** · *waiting for the answer above*\n\n{_quote(question)}")
        return "\n\n---\n\n".join(parts)

    @Slot()
    def _render(self) -> None:
        self.pages.setCurrentWidget(self.view if self._messages or self._waiting else self.empty)
        self.view.setMarkdown(self.markdown())
        self._mark_claims()
        style_blocks(self.view.document(), self._messages, len(self._waiting), self.palette(), unsupported_everywhere)
        self._keep_scroll()

    def _keep_scroll(self) -> None:
        bar = self.view.verticalScrollBar()
        bar.setValue(bar.maximum() if self._follow else self._held)

    @Slot(int, int)
    def _on_scroll_range_changed(self, _minimum: int, _maximum: int) -> None:
        self._keep_scroll()

    @Slot(int)
    def _on_scrolled(self, _action: int) -> None:
        bar = self.view.verticalScrollBar()
        position = bar.sliderPosition()  # where the action is taking the view
        self._follow = position >= bar.maximum() - 4
        self._held = position

    def _mark_claims(self) -> None:
        """Make each checked claim clickable, and dim the unsupported ones behind a warning
        mark with a tooltip. The Markdown renderer knows nothing of claims, so each is
        found in the rendered text, in order, after its message's quote, and only inside its
        own message: a claim not found there (a list number, a word the renderer changed) is
        left unmarked rather than matched in a later message's quote, number or file name."""
        document = self.view.document()
        dim = self.palette().color(QPalette.PlaceholderText)
        bounds = _message_bounds(document)
        # Last message first: a mark inserted shifts only the text after it.
        for i in reversed(range(len(self._messages))):
            message = self._messages[i]
            if message["role"] != "assistant" or not message.get("claims") or unsupported_everywhere(message):
                continue
            if i + 1 >= len(bounds):
                break  # the rendering does not have this message's block (never, unless it changed)
            position, end = bounds[i], bounds[i + 1]

            def find(text: str, start: int) -> QTextCursor | None:
                found = document.find(_needle(text), start, QTextDocument.FindCaseSensitively)
                return None if found.isNull() or found.selectionEnd() > end else found

            if message.get("quote"):
                found = find(message["quote"]["text"], position)
                position = found.position() if found is not None else position
            for j, claim in enumerate(message["claims"]):
                found = find(claim["text"], position)
                if found is None:
                    continue
                position = found.position()
                fmt = QTextCharFormat()
                fmt.setAnchor(True)
                fmt.setAnchorHref(f"{CLAIM_SCHEME}:{i}/{j}")
                if not claim.get("supported"):
                    fmt.setForeground(dim)
                    fmt.setToolTip(UNSUPPORTED_TIP)
                found.mergeCharFormat(fmt)
                if not claim.get("supported"):
                    mark = QTextCursor(document)
                    mark.setPosition(found.selectionStart())
                    mark.insertText(f"{WARNING} ", fmt)
                    position += 2
                    end += 2

    def claim_formats(self, text: str) -> QTextCharFormat | None:
        """The format the chat view gives the first occurrence of `text` (for tests)."""
        found = self.view.document().find(_needle(text), 0, QTextDocument.FindCaseSensitively)
        return None if found.isNull() else found.charFormat()

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().changeEvent(event)
        if event.type() == QEvent.PaletteChange:
            self._render()  # rendered links keep the link colour of the palette they were drawn with

    # --- slots -------------------------------------------------------------------------

    @Slot()
    def _on_send_clicked(self) -> None:
        question = self.input.toPlainText().strip()
        if question:
            self.input.clear()
            self.question_submitted.emit(question)

    @Slot(QUrl)
    def _on_anchor_clicked(self, url: QUrl) -> None:
        if url.scheme() not in (CITE_SCHEME, CLAIM_SCHEME):
            return
        try:
            message, target = url.path().split("/")
            message = int(message)
            if url.scheme() == CLAIM_SCHEME:
                source = self.claim_source(message, int(target))
            elif target.startswith("q"):
                source = self.quote_source(message, int(target[1:]))
            else:
                source = self.source(message, int(target))
        except ValueError:
            return
        if source is not None:
            self.citation_clicked.emit(source)


def progress_text(progress: dict) -> str:
    """ "Reading part 3 of 12 · about 2 min left" """
    text = progress["message"][:1].upper() + progress["message"][1:]
    left = progress.get("estimate_s")
    if left is not None:
        text += f" · about {_duration(left)} left"
    return text


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _task_in_progress(message: dict, i: int) -> str:
    """A summary or comparison under way: the model's progress, what it has written so far
    (its markers are the step's own, so not links yet), then the extract or the differences,
    cited as the final message will be."""
    parts = []
    if message.get("progress"):
        parts.append(f"*{_md(progress_text(message['progress']))}. Stop keeps what is shown below.*")
    if message["text"]:
        parts.append(message["text"])
    preview = message.get("preview")
    if preview:
        parts.append(link_citations(preview.get("answer", ""), i))
    return "\n\n".join(parts) or "…"


def _checked(answer: dict) -> dict:
    """What an Answer.to_json() adds to a chat message: the quote, claims and refusal."""
    return {"quote": answer.get("quote"), "quotes": answer.get("quotes") or [],
            "claims": answer.get("claims") or [], "refused": bool(answer.get("refused")),
            "checked": answer.get("claims_checked", "claims" in answer)}


def _quote_block(quote: dict, message: int, j: int) -> str:
    text = " ".join(quote["text"].split())
    return f"> \u201c{_md(text)}\u201d \u2014 [{_md(place(quote['source']))}]({CITE_SCHEME}:{message}/q{j})"


def _message_bounds(document: QTextDocument) -> list[int]:
    """Where each rendered message begins, and the document's end: messages are separated by
    the horizontal rules `markdown()` puts between them (a rule inside a message is escaped)."""
    bounds = [0]
    block = document.begin()
    while block.isValid():
        if block.blockFormat().hasProperty(QTextFormat.BlockTrailingHorizontalRulerWidth):
            bounds.append(block.position())
        block = block.next()
    bounds.append(document.characterCount())
    return bounds


def _needle(text: str) -> str:
    """What of a sentence survives Markdown rendering next to a citation link: its words up
    to the closing punctuation (the link sits before the full stop)."""
    text = " ".join(text.split()).rstrip(".!?;:")
    return text[:120]


def _md(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>#])", r"\\\1", text)


def _quote(text: str) -> str:
    return _no_rules(_md(text)).replace("\n", "  \n")


_RULE = re.compile(r"^( {0,3})([-*_])(?=(?:[ \t]*\2){2,}[ \t]*$)", re.MULTILINE)


def _no_rules(text: str) -> str:
    """Escape a line that Markdown would draw as a horizontal rule: the rules between
    messages are how the claim marks find each message's own text (`_message_bounds`)."""
    return _RULE.sub(r"\1\\\2", text)
