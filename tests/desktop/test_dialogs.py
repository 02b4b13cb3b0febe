"""Settings, conversations, the message bridge and the PySide6 emit guard."""

from __future__ import annotations

import stat
import sys

from PySide6.QtCore import QObject, Signal

from desktop.settings_dialog import BUNDLED_LLM, SettingsDialog, what_changes
from rag.config import Settings


def test_settings_dialog_validates_and_says_what_a_change_costs(qtbot, data_dir):
    dialog = SettingsDialog(Settings(), str(data_dir))
    qtbot.addWidget(dialog)
    assert dialog.model.itemText(0) == BUNDLED_LLM
    dialog.chunk.setValue(8)
    assert "chunk_tokens must be between 16 and 254" in dialog.message.text()
    dialog._on_accepted()
    assert dialog.result_settings() is None  # refused: stays open
    dialog.chunk.setValue(180)
    assert "indexed again" in dialog.message.text()
    dialog.gpu_mode.setCurrentIndex(1)
    assert "loaded again" in dialog.message.text()
    dialog._on_accepted()
    chosen = dialog.result_settings()
    assert chosen.chunk_tokens == 180 and chosen.gpu_layers == 0
    assert what_changes(Settings(), chosen) == (True, True)


def test_settings_change_is_saved_and_applied_in_the_background(qtbot, window, data_dir, monkeypatch):
    from desktop import main_window

    new = Settings(temperature=0.3, top_k=4)

    class Accepting:
        def __init__(self, *args):
            pass

        def exec(self):
            return True

        def result_settings(self):
            return new

    monkeypatch.setattr(main_window, "SettingsDialog", Accepting)
    window.open_settings()
    qtbot.waitUntil(lambda: (data_dir / "settings.toml").exists(), timeout=10_000)
    assert Settings.load(data_dir).top_k == 4


def test_conversations_persist_and_export(qtbot, window, multicolumn, tmp_path, monkeypatch):
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000):
        window.add_paths([str(multicolumn)])
    with qtbot.waitSignal(window.answer_finished, timeout=120_000):
        window.ask("What is the capital of Denmark?")
    listing = window.conversations.list
    qtbot.waitUntil(lambda: listing.count() == 1, timeout=10_000)
    assert listing.item(0).text() == "What is the capital of Denmark?"

    target = tmp_path / "export.md"
    monkeypatch.setattr("desktop.main_window.QFileDialog.getSaveFileName", lambda *a, **k: (str(target), ""))
    window._on_export_requested(window.conversations.current_id())
    qtbot.waitUntil(target.exists, timeout=10_000)
    text = target.read_text()
    assert "What is the capital of Denmark?" in text and "multicolumn.pdf" in text

    window._on_new_conversation_requested()
    qtbot.waitUntil(lambda: listing.count() == 2, timeout=10_000)
    assert "Denmark" not in window.chat.view.toPlainText()


def test_errors_from_jobs_reach_the_message_bridge(qtbot, window):
    with qtbot.waitSignal(window.bridge.error_reported, timeout=30_000) as shown:
        window._library_change(lambda engine, job: engine.rename_collection("no such", "other"))
    assert "no collection named 'no such'" in shown.args[0]


def test_emitting_from_python_keeps_its_references():
    # PySide6 6.12.0 dropped a reference to True on every emit() and aborted Python after a
    # few thousand; pyproject pins a release without that bug, and this test guards the pin.
    class Source(QObject):
        fired = Signal(int, object)

    source = Source()
    source.fired.connect(lambda *_: None)
    # True's count is the whole process's: a collection, or a thread left by an earlier test,
    # may free a few references meanwhile (5 of 55,390 once in CI). The bug took one per emit.
    emits = 5000
    before = sys.getrefcount(True)
    for i in range(emits):
        source.fired.emit(i, "piece")
    lost = before - sys.getrefcount(True)
    assert lost < emits // 10, f"{lost} references to True lost in {emits} emits"


def test_window_geometry_is_remembered_in_the_data_folder(qtbot, make_window, data_dir):
    first = make_window()
    first.resize(780, 560)  # within the offscreen screen (800 x 600)
    first.close()
    assert stat.S_IMODE((data_dir / "window.ini").stat().st_mode) & 0o077 == 0  # private, like the rest
    second = make_window()
    assert (second.width(), second.height()) == (780, 560)


def test_uncaught_exceptions_in_slots_and_threads_are_shown(qtbot, window):
    bridge = window.bridge
    # the hooks also call the ones before them (pytest's, which would fail this test on purpose)
    bridge._previous = bridge._previous_thread = None
    try:
        raise ValueError("boom")
    except ValueError as exc:
        error = exc
    bridge._excepthook(ValueError, error, error.__traceback__)

    class Args:
        exc_type, exc_value, exc_traceback, thread = ValueError, error, error.__traceback__, None

    bridge._thread_excepthook(Args)
    qtbot.waitUntil(lambda: len(bridge.messages) == 2, timeout=5000)
    assert all("ValueError" in m for m in bridge.messages)
    bridge.messages.clear()


def test_text_sources_scroll_to_and_highlight_the_passage(qtbot, tmp_path):
    from desktop.source_viewer import SourceViewerWidget, search_phrases

    viewer = SourceViewerWidget()
    qtbot.addWidget(viewer)
    viewer.resize(500, 400)
    viewer.show()
    qtbot.waitExposed(viewer)
    text = "Intro.\n\n" + "filler line\n" * 400 + "The ferry to Laeso leaves at dawn.\n" + "more\n" * 50
    chunk_start = text.index("The ferry")
    source = {"n": 1, "path": str(tmp_path / "notes.md"), "page": None, "char_start": chunk_start - 4,
              "text": text[chunk_start - 4:chunk_start + 40], "score": 0.5,
              "support": {"start": 4, "end": 4 + len("The ferry to Laeso leaves at dawn."),
                          "text": "The ferry to Laeso leaves at dawn."}}
    viewer.show_text(source, text)
    assert viewer.highlighted_text == "The ferry to Laeso leaves at dawn."
    assert viewer.current_page() is None
    qtbot.waitUntil(lambda: viewer.text_view.verticalScrollBar().value() > 0, timeout=2000)  # scrolled to it
    # PDF search phrases prefer the line that shares words with the question and answer
    assert search_phrases("Austria 8.9 Vienna\nDenmark 5.8 Copenhagen Danish", "capital of Denmark")[0] \
        == "Denmark 5.8 Copenhagen Danish"


def test_settings_dialog_points_answers_at_a_model_server(qtbot, data_dir):
    dialog = SettingsDialog(Settings(), str(data_dir))
    qtbot.addWidget(dialog)
    dialog.endpoint.setText("gpu-box:8080")  # no scheme: not a URL
    assert "llm_endpoint must be a URL" in dialog.message.text()
    dialog.endpoint.setText("http://gpu-box.internal:8080")
    dialog.key_env.setText("the actual secret key")  # a key pasted where its variable's name goes
    assert "name of an environment variable" in dialog.message.text()
    dialog.key_env.setText("ENCLAVE_MODEL_KEY")
    assert "loaded again" in dialog.message.text()
    chosen = dialog.chosen()
    assert (chosen.llm_endpoint, chosen.llm_api_key_env) == ("http://gpu-box.internal:8080", "ENCLAVE_MODEL_KEY")
    assert what_changes(Settings(), chosen) == (True, False)
