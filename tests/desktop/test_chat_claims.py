"""The chat pane alone (no engine): what it shows when no claim of an answer is supported,
and which passage a click on a claim or a quote hands to the source viewer."""

from __future__ import annotations

from PySide6.QtCore import QUrl

from desktop.chat import ChatWidget, link_citations, source_label

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
