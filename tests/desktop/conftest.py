"""Fixtures for driving the real window: real engine, real models, a fresh data folder."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from tests.conftest import CORPUS, require

MULTICOLUMN = CORPUS / "pdf" / "026-latex-multicolumn" / "multicolumn.pdf"


@pytest.fixture
def make_window(qtbot, data_dir, real_embedder):
    """Builds the real main window (sharing the session's loaded embedding model) and shows it."""
    from desktop.app import create_main_window
    from rag.config import Settings
    from rag.engine import Engine

    windows = []

    def make(**kwargs):
        kwargs.setdefault("welcome", False)  # the first-run guide has its own test
        def engine(folder):
            # Three sources instead of five: a shorter prompt, so answers start sooner on 2 cores.
            return Engine(folder, settings=Settings(top_k=3), embedder=real_embedder)

        window = create_main_window(data_dir, engine_factory=engine, **kwargs)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
        assert not window.worker.is_running(), "the engine thread outlived the window"


@pytest.fixture
def window(make_window):
    return make_window()


@pytest.fixture
def multicolumn() -> Path:
    return require(MULTICOLUMN)


def drop(window, paths) -> None:
    """What the window gets when files are dropped on it: a drag enter, then a drop."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    centre = window.rect().center()
    with warnings.catch_warnings():  # PySide6 marks the only constructor deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPoint(centre), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, enter)
    assert window.drop_hint.isVisible(), "no drop hint while dragging"
    event = QDropEvent(QPointF(centre), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, event)
    assert not window.drop_hint.isVisible()


class StallProbe:
    """A 10 ms timer on the UI thread; records the largest gap between two of its ticks.

    For the largest gap it also keeps what the UI thread did meanwhile, from the kernel's
    per-thread scheduler figures: milliseconds it ran and milliseconds it sat ready to run while
    other processes had the CPUs. What is left of the gap is time it was blocked (a lock, the
    GIL, I/O), so a stall can be told from a busy machine when a test reports one.
    """

    def __init__(self, interval_ms: int = 10):
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._on_tick)
        self.last = None
        self.last_sched = (0.0, 0.0)
        self.max_gap_ms = 0.0
        self.max_gap_ran_ms = 0.0
        self.max_gap_waited_ms = 0.0
        self.ticks = 0

    @staticmethod
    def _sched() -> tuple[float, float]:
        """(ms run on a CPU, ms waited for one) by this thread so far; zeros where unknown."""
        try:
            with open("/proc/thread-self/schedstat") as f:
                ran, waited, _ = f.read().split()
            return int(ran) / 1e6, int(waited) / 1e6
        except (OSError, ValueError):
            return 0.0, 0.0

    def _on_tick(self):
        now = time.perf_counter()
        sched = self._sched()
        if self.last is not None:
            gap = (now - self.last) * 1000
            if gap > self.max_gap_ms:
                self.max_gap_ms = gap
                self.max_gap_ran_ms = sched[0] - self.last_sched[0]
                self.max_gap_waited_ms = sched[1] - self.last_sched[1]
        self.last = now
        self.last_sched = sched
        self.ticks += 1

    def describe(self) -> str:
        blocked = self.max_gap_ms - self.max_gap_ran_ms - self.max_gap_waited_ms
        return (f"{self.max_gap_ms:.0f} ms (the UI thread ran {self.max_gap_ran_ms:.0f} ms, waited "
                f"{self.max_gap_waited_ms:.0f} ms for a CPU, was blocked {blocked:.0f} ms)")

    def __enter__(self):
        self.last = None
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()
        return False
