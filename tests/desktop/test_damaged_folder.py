"""A damaged data folder is found at start-up and repaired in the window only if the user agrees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from PySide6.QtWidgets import QMessageBox

from desktop.messages import MessageBridge
from rag import health
from rag.engine import Engine


@pytest.fixture(scope="module")
def indexed_template(tmp_path_factory):
    """A data folder with two documents, indexed once by another process, as in life: the
    store is damaged on disk before this process ever opens it (Chroma keeps connections to
    a path for the life of the process)."""
    root = tmp_path_factory.mktemp("damaged")
    docs = root / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The ferry to Skye leaves at nine every morning.\n")
    (docs / "b.md").write_text("# Lighthouse\n\nThe lighthouse keeper logs the weather hourly.\n")
    data = root / "data"
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "--data-dir", str(data), "index", str(docs),
                           "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and json.loads(proc.stdout)["indexed"] == 2, proc.stderr
    return data


def _indexed_folder(template, data_dir):
    shutil.copytree(template, data_dir)
    sqlite = data_dir / "vectors" / "chroma.sqlite3"
    raw = bytearray(sqlite.read_bytes())
    raw[100:4096] = os.urandom(3996)  # the header survives, the first page is garbage
    sqlite.write_bytes(bytes(raw))


def _answer(monkeypatch, button):
    asked = []

    def question(parent, title, text, *args, **kwargs):
        asked.append(text)
        return button

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return asked


def test_damaged_store_is_rebuilt_after_the_user_agrees(qtbot, indexed_template, data_dir, real_embedder,
                                                         make_window, monkeypatch):
    _indexed_folder(indexed_template, data_dir)
    asked = _answer(monkeypatch, QMessageBox.Yes)
    window = make_window()
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as finished:
        pass
    assert len(asked) == 1 and "vector store" in asked[0] and "damaged" in asked[0]
    assert finished.args[0]["indexed"] == 2
    assert len(list(data_dir.glob("vectors.damaged-*"))) == 1  # kept, not deleted
    qtbot.waitUntil(lambda: window.library.model.rowCount() == 2, timeout=30_000)
    window.close()

    engine = Engine(data_dir, embedder=real_embedder)
    try:
        assert engine.search("ferry to Skye", "default", 1)[0].path.endswith("a.txt")
        assert engine.verify()["consistent"]
    finally:
        engine.close()
    assert health.problems(data_dir) == {}


def test_declining_changes_nothing_and_says_so(qtbot, indexed_template, data_dir, real_embedder, make_window,
                                              monkeypatch):
    _indexed_folder(indexed_template, data_dir)
    (data_dir / "settings.toml").write_text("top_k = [unclosed\n")
    asked = _answer(monkeypatch, QMessageBox.No)
    reports = []
    monkeypatch.setattr(MessageBridge, "report", lambda self, message: reports.append(message))
    make_window()
    qtbot.waitUntil(lambda: bool(asked), timeout=60_000)
    assert "settings" in asked[0] and "vector store" in asked[0]
    qtbot.waitUntil(lambda: bool(reports), timeout=5_000)
    assert "Nothing was changed" in reports[0]
    assert not list(data_dir.glob("*.damaged-*"))
    assert set(health.problems(data_dir)) == {"settings", "store"}
