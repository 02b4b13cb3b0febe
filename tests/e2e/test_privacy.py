"""The privacy promise, tested: the whole flow offline, private files, quiet logs, real forgetting.

The autouse guards in tests/conftest.py fail this test on any connection to a non-loopback
address or any DNS lookup, in this process or a subprocess; this test adds the assertions
that only make sense for the whole flow.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import stat
import sys

import rag
from rag.answer.pipeline import Answer
from rag.config import Settings
from rag.engine import Engine
from tests.conftest import CORPUS, require

SECRET = "The Heliotrope merger closes on 3 March at a price of 41 crowns per share."
QUESTION = "When does the Heliotrope merger close?"


def _answer(engine, question, **kw) -> Answer:
    return [e for e in engine.ask(question, **kw) if isinstance(e, Answer)][0]


def test_the_whole_flow_stays_on_the_machine_and_leaves_only_private_files(tmp_path, real_embedder, caplog, qtbot):
    caplog.set_level(logging.DEBUG)
    # Every module imports without reaching out (what an install-time import would do).
    import desktop

    for package in (rag, desktop):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)

    # First launch of the window, on its own data folder.
    from desktop.app import create_main_window

    window = create_main_window(str(tmp_path / "window-data"))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.close()

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "board-minutes.txt").write_text(f"Board minutes, 2026.\n\n{SECRET}\n")
    (docs / "crazyones.pdf").write_bytes(require(CORPUS / "pdf/021-pdfa/crazyones-pdfa.pdf").read_bytes())
    data = tmp_path / "data"
    engine = Engine(data, embedder=real_embedder)
    Settings(top_k=3).save(engine.data_dir)
    report = engine.index_all([docs])
    assert report.indexed == 2

    answer = _answer(engine, QUESTION)
    assert not answer.refused and answer.sources[0]["path"].endswith("board-minutes.txt")
    conversation = engine.conversations.create("Merger")
    engine.conversations.add_message(conversation, "user", QUESTION)
    engine.conversations.add_message(conversation, "assistant", answer.text, answer.to_json())
    export = engine.conversations.export_markdown(conversation)
    assert "board-minutes.txt" in export
    (tmp_path / "export.md").write_text(export)

    # Chroma's telemetry is off and no exporter was built.
    import chromadb.telemetry.opentelemetry as otel

    assert engine.store.client.get_settings().anonymized_telemetry is False
    assert otel.tracer is None and "posthog" not in sys.modules

    # Logs carry neither document text nor questions.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Heliotrope" not in logged and "41 crowns" not in logged

    # Files and folders Enclave wrote are private to this user.
    for path in [data, *data.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is readable by others ({oct(mode)})"

    # Forgetting: the phrase can be neither retrieved nor cited, and stored answers lose it.
    engine.remove([docs / "board-minutes.txt"])
    assert all("Heliotrope" not in h.text for h in engine.search("Heliotrope merger price", k=10))
    after = _answer(engine, QUESTION)
    assert all(not s["path"].endswith("board-minutes.txt") for s in after.sources)
    stored = engine.conversations.messages(conversation)[1].answer
    assert all(s.get("removed") and not s["text"] for s in stored["sources"] if s["path"].endswith("board-minutes.txt"))
    assert "41 crowns per share" not in engine.conversations.export_markdown(conversation).split("Sources:")[-1]
    assert engine.verify()["consistent"]
    engine.close()
