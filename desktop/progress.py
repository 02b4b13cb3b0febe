"""Indexing progress: files done/total, the current file, chunks/s, ETA; pause, resume, cancel."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from .words import counted



def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s left"
    return f"{seconds // 60} min {seconds % 60:02d} s left"


class IndexProgressWidget(QWidget):
    pause_clicked = Signal()
    resume_clicked = Signal()
    cancel_clicked = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setObjectName("indexProgress")
        self.bar.setAccessibleName("Indexing progress")
        self.bar.setFormat("%v / %m files")
        self.bar.setMinimumWidth(180)
        self.label = QLabel()
        self.label.setObjectName("indexProgressLabel")
        self.label.setMinimumWidth(200)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setAccessibleName("Pause indexing")
        self.pause_button.clicked.connect(self._on_pause_clicked)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel indexing")
        self.cancel_button.clicked.connect(self.cancel_clicked)
        self._paused = False
        self._what = ""
        self._last: tuple | None = None  # the latest progress, shown again when paused or resumed
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(QLabel("Indexing"))
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.label, 2)
        layout.addWidget(self.pause_button)
        layout.addWidget(self.cancel_button)
        self.hide()

    def begin(self, what: str) -> None:
        self._paused = False
        self._what, self._last = what, None
        self.pause_button.setText("Pause")
        self.pause_button.setAccessibleName("Pause indexing")
        self.bar.setRange(0, 0)  # busy until the first event says how many files
        self._show_label()
        self.show()

    def update_progress(self, files_done: int, files_total: int, chunks_done: int, current: str,
                        elapsed: float, eta: float | None, detail: str = "") -> None:
        self.bar.setRange(0, max(files_total, 1))
        self.bar.setFormat(f"%v / %m {'file' if files_total == 1 else 'files'}")
        self.bar.setValue(files_done)
        self._last = (files_done, files_total, chunks_done, current, elapsed, eta, detail)
        self._show_label()

    def _show_label(self) -> None:
        parts = ["paused"] if self._paused else []
        if self._last is None:
            parts.append(f"Looking at {self._what}…")
            self.label.setText("  ·  ".join(parts))
            return
        files_done, files_total, chunks_done, current, elapsed, eta, detail = self._last
        if current:
            name = Path(current).name
        else:
            name = "finishing…" if files_done >= files_total else f"{counted(files_total, 'file')} found"
        parts.append(f"{name}: {detail}" if detail and current else name)
        if chunks_done and elapsed > 0:
            parts.append(f"{chunks_done / elapsed:.0f} chunks/s")
        # The engine's ETA comes from the bytes read per second, known once the first file
        # needing a read is done (unchanged files, which go by in a blink, do not count).
        parts.append(format_eta(eta))
        self.label.setText("  ·  ".join(parts))
        self.label.setToolTip(current)

    def end(self) -> None:
        self.hide()

    @Slot()
    def _on_pause_clicked(self) -> None:
        self._paused = not self._paused
        self.pause_button.setText("Resume" if self._paused else "Pause")
        self.pause_button.setAccessibleName("Resume indexing" if self._paused else "Pause indexing")
        self._show_label()  # a paused run sends no progress: say so now
        (self.pause_clicked if self._paused else self.resume_clicked).emit()
