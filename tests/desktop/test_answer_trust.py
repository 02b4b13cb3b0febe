"""Answers worth trusting, in the window: the quote first, each claim checked (an invented
one dimmed with a warning and a tooltip), a click on a claim shows the passage behind it,
and source cards speak in plain relevance words."""

from __future__ import annotations

import shutil

from PySide6.QtCore import QUrl
from PySide6.QtPdfWidgets import QPdfView
from PySide6.QtWidgets import QWidget

from desktop.app import create_main_window
from desktop.chat import UNSUPPORTED_TIP, WARNING
from rag.llm import StreamStats
from tests.conftest import CORPUS, require

ZEN = CORPUS / "pdf" / "011-google-doc-document" / "google-doc-document.pdf"
SUPPORTED = "Beautiful is better than ugly"
INVENTED = "Guido carved it into the Moon in 1850"


class ScriptedModel:
    """A chat model that writes one sentence its source supports and one it invents."""

    last_stats = StreamStats()
    loaded = True
    context_size = 4096
    info = {"where": "local", "path": "scripted.gguf", "gpu_layers": 0}

    def prepare(self):
        pass

    def warm_up(self):
        pass

    def prompt_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)

    def stream(self, messages, max_tokens, temperature=0.0, should_stop=None, refuse_at=None):
        for n, piece in enumerate([f"{SUPPORTED} [1]. ", f"{INVENTED} [1]."], 1):
            self.last_stats.generated_tokens = n
            yield piece

    def close(self):
        pass


def ask(qtbot, window, question):
    with qtbot.waitSignal(window.answer_finished, timeout=300_000) as answered:  # a busy CI machine
        window.ask(question)
    return answered.args[0]


def index_zen(qtbot, window, tmp_path):
    pdf = tmp_path / "docs" / "zen.pdf"
    pdf.parent.mkdir()
    shutil.copy(require(ZEN), pdf)
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as indexed:
        window.add_paths([str(pdf)])
    assert indexed.args[0]["indexed"] == 1
    return pdf


def model_window(qtbot, data_dir, real_embedder, model):
    """The window, shown, on an in-process engine (top 3) whose chat model is `model`."""
    from rag.config import Settings
    from rag.engine import Engine

    def factory(folder):
        engine = Engine(folder, settings=Settings(top_k=3), embedder=real_embedder)
        engine._chat_model = model
        return engine

    window = create_main_window(data_dir, engine_factory=factory, welcome=False)
    qtbot.addWidget(window)
    window.show()
    return window


def test_an_invented_claim_is_dimmed_and_a_claim_click_shows_its_passage(qtbot, data_dir, real_embedder, tmp_path):
    window = model_window(qtbot, data_dir, real_embedder, ScriptedModel())
    try:
        index_zen(qtbot, window, tmp_path)
        answer = ask(qtbot, window, "What is better than ugly?")
        assert not answer["refused"]
        assert SUPPORTED in answer["quote"]["text"] and answer["quote"]["source"]["page"] == 1
        claims = answer["claims"]
        assert [c["supported"] for c in claims] == [True, False]
        assert claims[1]["text"].startswith(INVENTED)

        chat = window.chat
        text = chat.view.toPlainText()
        # the quote sits above the prose, and the invented sentence carries the warning mark
        assert text.index(SUPPORTED) < text.index(f"{WARNING} {INVENTED}")
        dimmed, plain = chat.claim_formats(INVENTED), chat.claim_formats(f"{SUPPORTED} [")
        assert dimmed.toolTip() == UNSUPPORTED_TIP
        assert dimmed.foreground().color() == chat.palette().color(chat.palette().ColorRole.PlaceholderText)
        assert plain is None or plain.toolTip() == ""
        # cards: a relevance word, never the fusion score
        card = chat.cards.item(0).text()
        assert "match" in card and "score" not in card

        chat.view.anchorClicked.emit(QUrl("claim:1/0"))  # a click on the supported claim
        viewer = window.findChild(QWidget, "sourceViewer")
        assert viewer.findChild(QPdfView).isVisibleTo(window)
        assert viewer.current_page() == 0
        assert SUPPORTED.lower() in viewer.highlighted_text.lower()
    finally:
        window.close()


def test_both_zen_questions_are_answered_in_the_window_citing_page_1(qtbot, window, tmp_path):
    pdf = index_zen(qtbot, window, tmp_path)
    for question in ("What is better than ugly?", "Is beautiful better than ugly?"):
        answer = ask(qtbot, window, question)
        assert not answer["refused"], (question, answer["answer"])
        assert answer["quote"]["text"] == "Beautiful is better than ugly."
        assert {(s["path"], s["page"]) for s in answer["sources"]} == {(str(pdf), 1)}
        assert "Beautiful is better than ugly." in window.chat.view.toPlainText()
