"""The library's right-click Summarize, in the real window: the document's own sentences come
back as a message in the chat, each cited to the page it stands on, and a citation opens
the viewer there. The model is scripted, so nothing here depends on what a model writes;
the assertions are on the extractive part, which is the document's own text."""

from __future__ import annotations

import re
import shutil

from PySide6.QtCore import QUrl
from PySide6.QtPdfWidgets import QPdfView
from PySide6.QtWidgets import QWidget

from rag.documents.sentences import join_hyphenated
from tests.desktop.test_answer_trust import ScriptedModel as AnswerTrustModel, model_window
from tests.desktop.test_window_e2e import cite_anchors

QUOTED = re.compile(r"^- \u201c(.+)\u201d \[(\d+)\]$", re.M)  # a line of the extract, as chat.py writes it


class ScriptedModel(AnswerTrustModel):
    """The map-reduce's model: one bullet per prompt, whatever it is shown."""

    def stream(self, messages, max_tokens, temperature=0.0, should_stop=None, refuse_at=None):
        yield "- The document is a two-column sample. [1]\n"


def test_library_summarize_puts_the_cited_extract_in_the_chat(qtbot, data_dir, real_embedder, multicolumn,
                                                              tmp_path):
    pdf = tmp_path / "docs" / "multicolumn.pdf"
    pdf.parent.mkdir()
    shutil.copy(multicolumn, pdf)
    window = model_window(qtbot, data_dir, real_embedder, ScriptedModel())
    try:
        with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as indexed:
            window.add_paths([str(pdf)])
        assert indexed.args[0]["indexed"] == 1
        library = window.library
        qtbot.waitUntil(lambda: str(pdf) in library.model.paths(), timeout=10_000)
        library.table.selectRow(library.model.paths().index(str(pdf)))
        # The table's context menu is its actions (Qt.ActionsContextMenu): a right-click shows
        # these, and choosing one triggers it.
        summarize = next(a for a in library.table.actions() if a.text() == "Summarize")
        with qtbot.waitSignal(window.answer_finished, timeout=300_000) as answered:  # a busy CI machine
            summarize.trigger()
        answer = answered.args[0]

        quoted = QUOTED.findall(answer["answer"])
        assert len(quoted) >= 3, answer["answer"]
        sources = {s["n"]: s for s in answer["sources"]}
        for text, n in quoted:
            source = sources[int(n)]
            assert source["path"] == str(pdf)
            # Verbatim: the quoted line is the sentence the source marks in its chunk.
            assert " ".join(join_hyphenated(source["support"]["text"]).split()) == text
            assert source["text"][source["support"]["start"]:source["support"]["end"]] == source["support"]["text"]
        # The whole document, not the top few chunks: the quotes come from more than one page.
        assert len({sources[int(n)]["page"] for _, n in quoted}) >= 2

        shown = window.chat.view.toPlainText()
        assert "multicolumn.pdf" in shown and quoted[0][0] in " ".join(shown.split())

        text, n = quoted[-1]
        page = sources[int(n)]["page"]
        href = next(h for h in cite_anchors(window.chat.view) if h.endswith(f"/{n}"))
        window.chat.view.anchorClicked.emit(QUrl(href))  # what QTextBrowser emits on a click
        viewer = window.findChild(QWidget, "sourceViewer")
        pdf_view = viewer.findChild(QPdfView)
        assert pdf_view.isVisibleTo(window)
        assert pdf_view.pageNavigator().currentPage() == page - 1
        assert viewer.highlighted_text, "the quoted sentence was not found on its page"
        assert window.bridge.messages == []
    finally:
        window.close()
