"""The window answering from a real OpenAI-compatible server on 127.0.0.1, and saying so."""

from __future__ import annotations

import pytest

from rag.config import Settings
from rag.engine import Engine
from rag.llm.bundled import default_model_path
from tests.e2e.test_remote_model import KEY_ENV, POLICY, QUESTION
from tests.servers import model_server


@pytest.fixture
def server(tmp_path):
    with model_server(default_model_path(), tmp_path / "server.log") as running:
        yield running


def test_the_window_streams_a_cited_answer_from_the_team_server(qtbot, server, data_dir, tmp_path, real_embedder,
                                                                monkeypatch):
    from desktop.app import create_main_window

    monkeypatch.setenv(KEY_ENV, server.api_key)
    settings = Settings(top_k=3, llm_endpoint=server.url, llm_api_key_env=KEY_ENV)
    window = create_main_window(
        data_dir, engine_factory=lambda folder: Engine(folder, settings=settings, embedder=real_embedder),
        welcome=False)
    loaded = []
    window.model_loaded.connect(loaded.append)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: bool(loaded), timeout=60_000)
    assert loaded[0]["where"] == f"127.0.0.1:{server.port}"
    assert window.status.privacy.text() == (
        f"Answers generated on 127.0.0.1:{server.port}, the only address Enclave contacts")

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave-policy.txt").write_text(POLICY)
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000):
        window.add_paths([str(docs)])
    pieces = []
    window.worker.progress.connect(lambda job, value: pieces.append(value))
    with qtbot.waitSignal(window.answer_finished, timeout=180_000) as answered:
        window.ask(QUESTION)
    answer = answered.args[0]
    assert not answer["refused"] and answer["answer"].strip()
    assert answer["sources"][0]["path"].endswith("leave-policy.txt")
    assert answer["model"]["endpoint"] == server.url
    assert sum(isinstance(p, str) for p in pieces) > 1  # streamed into the window
    window.close()
