"""The window with its engine in a process of its own (the default): it answers, it says so
plainly when the model host or the engine process dies mid-answer, and the next question works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rag.config import Settings
from tests.desktop.conftest import StallProbe
from tests.e2e.test_model_process import LEAVE_POLICY, LONG_QUESTION, QUESTION, STORY, children_named


@pytest.fixture
def process_window(qtbot, data_dir, tmp_path):
    from desktop.app import create_main_window

    data_dir.mkdir(parents=True, exist_ok=True)
    Settings(top_k=3).save(data_dir)
    window = create_main_window(data_dir, welcome=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave-policy.txt").write_text(LEAVE_POLICY)
    (docs / "lighthouse.txt").write_text(STORY)
    with qtbot.waitSignal(window.indexing_finished, timeout=180_000) as indexed:
        window.add_paths([str(docs)])
    assert indexed.args[0]["indexed"] == 2
    yield window
    engine = window.worker.backend.child
    window.close()
    assert not window.worker.is_running()
    assert engine is None or engine.process.poll() is not None, "the engine process outlived the window"


def ask_and_kill(qtbot, window, target: str, sig: int) -> str:
    """Ask; once the answer streams, freeze `target` ("model" or "engine"), queue `sig`, resume it.
    Returns the message the window showed."""
    qtbot.waitUntil(lambda: not window.is_answering(), timeout=60_000)  # the last answer has closed
    pieces = []
    window.worker.progress.connect(lambda job, value: pieces.append(value))
    with qtbot.waitSignal(window.bridge.error_reported, timeout=180_000) as shown:
        window.ask(LONG_QUESTION)
        qtbot.waitUntil(lambda: any(isinstance(p, str) and p for p in pieces), timeout=120_000)
        engine_pid = window.worker.backend.pid
        pid = engine_pid if target == "engine" else children_named(engine_pid, "rag.llm.host")[0]
        os.kill(pid, signal.SIGSTOP)
        os.kill(pid, sig)
        os.kill(pid, signal.SIGCONT)
    qtbot.waitUntil(lambda: not window.is_answering(), timeout=60_000)
    return shown.args[0]


def answer(qtbot, window) -> dict:
    qtbot.waitUntil(lambda: not window.is_answering(), timeout=60_000)
    with qtbot.waitSignal(window.answer_finished, timeout=300_000) as done:
        window.ask(QUESTION)
    return done.args[0]


def test_model_host_crashes_cost_one_answer_and_the_window_carries_on(qtbot, process_window):
    window = process_window
    first = answer(qtbot, window)
    assert not first["refused"] and first["sources"][0]["path"].endswith("leave-policy.txt")
    with StallProbe() as probe:
        for sig in (signal.SIGSEGV, signal.SIGKILL):
            message = ask_and_kill(qtbot, window, "model", sig)
            assert message == (f"The model stopped unexpectedly while answering (signal {int(sig)}). "
                               "Enclave restarted it; ask again.")
            assert f"*{message}*" in window.chat.markdown()  # in the conversation, after what was said
            assert window.chat.send_button.isEnabled()  # ready for the next question
            again = answer(qtbot, window)
            assert not again["refused"] and again["answer"].strip()
    assert probe.ticks > 100  # the event loop kept turning through both crashes


def test_an_engine_process_crash_is_reported_and_the_engine_comes_back(qtbot, process_window):
    window = process_window
    before = window.worker.backend.pid
    message = ask_and_kill(qtbot, window, "engine", signal.SIGKILL)
    assert message == ("Enclave's engine stopped unexpectedly (signal 9). Enclave restarted it; what was "
                       "running has stopped, try it again.")
    again = answer(qtbot, window)
    assert not again["refused"]
    assert window.worker.backend.pid not in (None, before)


def test_the_window_process_loads_no_model_and_no_store(tmp_path):
    # In a fresh interpreter: this test process has torch and Chroma loaded by other tests.
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        from desktop.app import create_main_window

        data = Path({str(tmp_path / 'data')!r})
        window = create_main_window(data, welcome=False)
        window.show()
        app = QApplication.instance()
        window.model_loaded.connect(lambda info: app.quit())
        window.bridge.error_reported.connect(lambda message: (print("ERROR", message), app.quit()))
        QTimer.singleShot(180_000, app.quit)
        app.exec()
        heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers", "chromadb", "llama_cpp")
                       if m in sys.modules)
        print("heavy:", ",".join(heavy) or "none")
        window.close()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ERROR" not in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "heavy: none"
