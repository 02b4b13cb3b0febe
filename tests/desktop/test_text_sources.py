"""Citations of Markdown and Word documents open their text in the source viewer, scrolled to
the supporting passage and highlighted."""

from __future__ import annotations

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget

from desktop.source_viewer import HIGHLIGHT
from tests.desktop.test_window_e2e import cite_anchors

FERRY = "The ferry to Laeso leaves from Frederikshavn at dawn, every day except Sunday."
INVOICES = "Invoices above 5000 kroner need the approval of the finance director, Mette Lund."


def stored_answer(question: str, answer: str, marker: str):
    """A job for the engine thread: what asking leaves in the conversation store, without the
    model's time. The one source is the retrieved chunk holding `marker`, with the sentence
    that supports `answer`, and its unit (slide, sheet...), as the answer pipeline cites it."""

    def run(engine, job) -> int:
        from rag.answer.citations import best_support

        hit = next(h for h in engine.search(question, "default", 5) if marker in h.text)
        start, end, passage = best_support(answer, hit.text)
        source = {"n": 1, "path": hit.path, "page": hit.page, "unit": hit.unit, "page_end": hit.page_end,
                  "char_start": hit.char_start, "chunk_id": hit.chunk_id, "text": hit.text,
                  "score": round(hit.score, 6), "support": {"start": start, "end": end, "text": passage},
                  "cited": True}
        data = {"answer": f"{answer} [1]", "refused": False, "uncited": False, "sources": [source],
                "timings": {}, "model": {}, "question": question}
        store = engine.conversations
        conversation = store.create(title=question)
        store.add_message(conversation, "user", question)
        store.add_message(conversation, "assistant", data["answer"], data)
        return conversation
    return run


def open_stored_answer(qtbot, window, path, question, answer, marker) -> dict:
    """Index `path`, store an answer citing it, and open that conversation in the window."""
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as indexed:
        window.add_paths([str(path)])
    assert indexed.args[0]["indexed"] == 1, indexed.args[0]
    made = []
    window.client.run(stored_answer(question, answer, marker), on_result=made.append)
    qtbot.waitUntil(lambda: bool(made), timeout=30_000)
    window._refresh_conversations()
    listing = window.conversations.list
    qtbot.waitUntil(lambda: listing.count() == 1, timeout=10_000)
    listing.setCurrentRow(0)  # what a click on the conversation does
    chat_view = window.findChild(QTextBrowser, "chatView")
    qtbot.waitUntil(lambda: bool(cite_anchors(chat_view)), timeout=10_000)
    return window.chat.source(1, 1)


def assert_passage_shown(qtbot, window, name: str, passage: str, document_text: str) -> None:
    viewer = window.findChild(QWidget, "sourceViewer")
    text_view = viewer.text_view
    qtbot.waitUntil(lambda: viewer.highlighted_text == passage, timeout=30_000)
    assert text_view.isVisibleTo(window) and viewer.current_page() is None
    assert text_view.toPlainText() == document_text
    assert viewer.title.text() == f"[1] {name}"

    selections = text_view.extraSelections()
    assert len(selections) == 1
    marked = selections[0]
    assert marked.cursor.selectedText().replace("\u2029", "\n") == passage, "the highlight is off the passage"
    assert marked.format.background().color() == HIGHLIGHT

    # scrolled so the passage is on screen (the document is taller than the view)
    bar = text_view.verticalScrollBar()
    assert bar.maximum() > 0
    start = QTextCursor(text_view.document())
    start.setPosition(marked.cursor.selectionStart())
    end = QTextCursor(text_view.document())
    end.setPosition(marked.cursor.selectionEnd())

    def on_screen():
        area = text_view.viewport().rect()
        return area.contains(text_view.cursorRect(start).center()) and area.contains(text_view.cursorRect(end).center())

    qtbot.waitUntil(on_screen, timeout=5_000)
    assert bar.value() > 0


def test_markdown_citation_shows_the_passage_highlighted(qtbot, window, tmp_path):
    lines = ["# Travel notes 🧭", ""]
    lines += [f"- Day {i}: walked the dunes 🏖️ and logged the weather." for i in range(1, 61)]
    lines += ["", "## Ferries 🚢", "", FERRY, "", "Tickets are sold on board."]
    notes = tmp_path / "notes.md"
    notes.write_text("\n".join(lines) + "\n", encoding="utf-8")

    source = open_stored_answer(qtbot, window, notes, "When does the ferry to Laeso leave?",
                                "The ferry leaves at dawn, every day except Sunday.", "Laeso")
    assert source["support"]["text"] == FERRY
    href = next(h for h in cite_anchors(window.chat.view) if h.endswith("/1"))
    window.chat.view.anchorClicked.emit(QUrl(href))  # what QTextBrowser emits when the link is clicked
    assert_passage_shown(qtbot, window, "notes.md", FERRY, notes.read_text(encoding="utf-8"))


def test_docx_source_card_shows_the_passage_highlighted(qtbot, window, tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Finance handbook", level=1)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Limit", "Approver"
    table.cell(1, 0).text, table.cell(1, 1).text = "1000", "Team lead"
    for i in range(1, 61):
        document.add_paragraph(f"Section {i}: expense reports are filed monthly with receipts attached.")
    document.add_paragraph(INVOICES)
    document.add_paragraph("Travel is booked through the office manager.")
    handbook = tmp_path / "handbook.docx"
    document.save(handbook)

    source = open_stored_answer(qtbot, window, handbook, "Who approves invoices above 5000 kroner?",
                                "The finance director, Mette Lund, approves invoices above 5000 kroner.",
                                "Mette Lund")
    assert source["support"]["text"] == INVOICES
    cards = window.chat.cards
    assert cards.isVisibleTo(window) and cards.count() == 1
    item = cards.item(0)
    assert "handbook.docx" in item.text()
    qtbot.mouseClick(cards.viewport(), Qt.LeftButton, pos=cards.visualItemRect(item).center())

    from rag.ingest.loaders import load

    text = "\n\n".join(page.text for page in load(handbook).pages)
    assert INVOICES in text
    assert_passage_shown(qtbot, window, "handbook.docx", INVOICES, text)
