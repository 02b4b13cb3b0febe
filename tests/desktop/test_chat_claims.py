"""The chat pane alone (no engine): what it shows when no claim of an answer is supported,
and which passage a click on a claim or a quote hands to the source viewer."""

from __future__ import annotations

from PySide6.QtCore import QUrl

from desktop.chat import WARNING, ChatWidget, link_citations, source_label

SOURCE = {"n": 1, "path": "/docs/zen.pdf", "page": 1, "char_start": 0, "chunk_id": "c",
          "text": "Example document\nBeautiful is better than ugly.\nExplicit is better than implicit.",
          "score": 0.033, "relevance": "partial", "support": {"start": 0, "end": 16, "text": "Example document"}}
QUOTE = {"text": "Beautiful is better than ugly.",
         "source": dict(SOURCE, support={"start": 17, "end": 47, "text": "Beautiful is better than ugly."})}
SECOND = {"text": "Explicit is better than implicit.",
          "source": dict(SOURCE, support={"start": 48, "end": 81, "text": "Explicit is better than implicit."})}


def answer(text, claims):
    return {"question": "What is better than ugly?", "answer": text, "refused": False, "sources": [SOURCE],
            "timings": {}, "model": {}, "quote": QUOTE, "quotes": [QUOTE, SECOND], "claims": claims}


def test_an_answer_with_no_supported_claim_shows_a_banner_and_the_documents_sentences(qtbot):
    chat = ChatWidget()
    qtbot.addWidget(chat)
    chat.begin_answer("What is better than ugly?")
    claim = {"text": "Ugly is the best.", "sources": [1], "supported": False, "score": 0.2,
             "start": 0, "end": 21, "support": None}
    chat.finish_answer(answer("Ugly is the best [1].", [claim]))
    shown = chat.view.toPlainText()
    assert "No source supports this answer" in shown
    assert "Ugly is the best" not in shown  # the invented prose is replaced, not shown
    assert "Beautiful is better than ugly." in shown and "Explicit is better than implicit." in shown

    clicked = []
    chat.citation_clicked.connect(clicked.append)
    chat.view.anchorClicked.emit(QUrl("cite:1/q1"))  # the second quote under the banner
    assert clicked[-1]["support"]["text"] == "Explicit is better than implicit."
    assert clicked[-1]["page"] == 1


def test_a_claim_click_hands_over_the_passage_behind_that_claim(qtbot):
    chat = ChatWidget()
    qtbot.addWidget(chat)
    chat.begin_answer("What is better than ugly?")
    text = "Beautiful is better than ugly [1]."
    claim = {"text": "Beautiful is better than ugly.", "sources": [1], "supported": True, "score": 1.0,
             "start": 0, "end": len(text), "support": {"n": 1, "start": 17, "end": 47,
                                                       "text": "Beautiful is better than ugly."}}
    chat.finish_answer(answer(text, [claim]))
    assert "No source supports" not in chat.view.toPlainText()
    # the [1] inside the claim links to the claim, so its own passage is highlighted
    assert "claim:1/0" in link_citations(text, 1, [claim])
    clicked = []
    chat.citation_clicked.connect(clicked.append)
    chat.view.anchorClicked.emit(QUrl("claim:1/0"))
    assert clicked[-1]["support"]["text"] == "Beautiful is better than ugly."
    assert clicked[-1]["hint"] == claim["text"]
    assert source_label(SOURCE) == "[1] zen.pdf, page 1 · partial match"
    assert source_label(dict(SOURCE, page=None, unit="sheet Budget")) == "[1] zen.pdf, sheet Budget · partial match"


def test_claim_marks_stay_inside_their_own_answer(qtbot):
    """#21: an unsupported claim the renderer changed ("1." became a list number) was matched
    in a later message instead, and a ⚠ landed inside its quote, number or file name."""
    chat = ChatWidget()
    qtbot.addWidget(chat)
    chat.begin_answer("How many ducks?")
    first = "1. Ducks [1].\n2. 80 [1]."
    claims = [{"text": "1.", "sources": [1], "supported": False, "score": 0.1, "start": 0, "end": 2, "support": None},
              {"text": "2019", "sources": [1], "supported": False, "score": 0.1, "start": 3, "end": 7,
               "support": None},
              {"text": "Ducks [1].", "sources": [1], "supported": True, "score": 1.0, "start": 3, "end": 13,
               "support": {"n": 1, "start": 17, "end": 47, "text": "Beautiful is better than ugly."}}]
    chat.finish_answer(answer(first, claims))
    later_quote = {"text": "In 2019: 80 ducks were counted in MEDRPT-2024-PAT.",
                   "source": dict(SOURCE, support={"start": 0, "end": 16, "text": "Example document"})}
    chat.begin_answer("And later?")
    later_text = "There were 1 or 2 more in 2019 [1]."
    chat.finish_answer(dict(answer(later_text, [dict(claims[2], text=later_text, start=0, end=len(later_text))]),
                            quote=later_quote))
    shown = chat.view.toPlainText()
    later = shown[shown.index("And later?"):]
    assert WARNING not in later, later
    assert "In 2019: 80 ducks were counted in MEDRPT-2024-PAT." in later
    assert "There were 1 or 2 more in 2019" in later
    assert "[1] zen.pdf" in later
    # an answer whose text holds a Markdown rule does not shift later answers' marks
    chat.begin_answer("Once more?")
    chat.finish_answer(answer("Ducks [1].\n\n---\n\nUgly is the best [1].",
                              [{"text": "Ugly is the best [1].", "sources": [1], "supported": False,
                                "score": 0.1, "start": 12, "end": 33, "support": None},
                               dict(claims[2], start=0, end=10)]))
    shown = chat.view.toPlainText()
    assert f"{WARNING} Ugly is the best" in shown
    assert WARNING not in shown[shown.index("And later?"):shown.index("Once more?")]


def long_answer(text):
    claim = {"text": text.splitlines()[0], "sources": [1], "supported": True, "score": 1.0, "start": 0,
             "end": len(text.splitlines()[0]), "support": {"n": 1, "start": 17, "end": 47, "text": "Beautiful"}}
    return answer(text, [claim])


def test_the_chat_follows_a_new_answer_unless_the_person_scrolled_up(qtbot):
    """#21: after a long answer, five more answers finished while the view still showed the
    top of the long one."""
    chat = ChatWidget()
    qtbot.addWidget(chat)
    chat.resize(600, 400)
    chat.show()
    qtbot.waitExposed(chat)
    bar = chat.view.verticalScrollBar()
    long = "\n".join(f"{n}. You can choose to add documents to the list of documents [1]." for n in range(1, 120))
    for k in range(3):
        chat.begin_answer(f"Question {k}?")
        for line in long.splitlines(keepends=True):
            chat.append_piece(line)
        qtbot.wait(60)  # a few streamed renders
        chat.finish_answer(long_answer(long + f"\nThe end of answer {k} [1]."))
        # the newest answer's last line is on screen: the view sits at the bottom
        qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum(), timeout=5_000)
        assert f"The end of answer {k}" in _visible_text(chat.view)

    # scrolled up on purpose (the wheel, the scroll bar): streaming does not pull the view down
    bar.triggerAction(bar.SliderAction.SliderToMinimum)
    chat.begin_answer("Question 3?")
    bar.triggerAction(bar.SliderAction.SliderToMinimum)  # up again while the answer starts
    for line in long.splitlines(keepends=True)[:40]:
        chat.append_piece(line)
    qtbot.wait(200)
    assert bar.value() == 0
    chat.finish_answer(long_answer(long))
    qtbot.wait(100)
    assert bar.value() == 0, "the view jumped while the person read an earlier answer"
    # back at the bottom, it follows again
    bar.triggerAction(bar.SliderAction.SliderToMaximum)
    chat.begin_answer("Question 4?")
    for line in long.splitlines(keepends=True)[:40]:
        chat.append_piece(line)
    qtbot.waitUntil(lambda: bar.value() == bar.maximum() and "Question 3?" not in _visible_text(chat.view),
                    timeout=5_000)


def _visible_text(view) -> str:
    """The text of the chat view's blocks that lie inside its viewport."""
    top = view.verticalScrollBar().value()
    bottom = top + view.viewport().height()
    layout = view.document().documentLayout()
    lines = []
    block = view.document().begin()
    while block.isValid():
        rect = layout.blockBoundingRect(block)
        if rect.bottom() > top and rect.top() < bottom:
            lines.append(block.text())
        block = block.next()
    return "\n".join(lines)
