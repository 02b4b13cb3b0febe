"""The UI thread's side of the engine worker: submit a job, get callbacks by signal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot


from .workers import EngineWorker, Job


@dataclass
class _Callbacks:
    on_progress: Callable[[Any], None] | None
    on_result: Callable[[Any], None] | None
    on_failed: Callable[[str], None] | None
    on_finished: Callable[[], None] | None


class EngineClient(QObject):
    """Lives on the UI thread; every callback runs there (the worker's signals are queued)."""

    failed = Signal(str)  # failures no caller handled: the window's message bridge shows them
    busy_changed = Signal(bool)

    def __init__(self, worker: EngineWorker, parent=None):
        super().__init__(parent)
        self.worker = worker
        self._callbacks: dict[int, _Callbacks] = {}
        self.jobs: dict[int, Job] = {}
        worker.progress.connect(self._on_progress)
        worker.result.connect(self._on_result)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_finished)
        worker.engine_failed.connect(self.failed)

    def run(self, fn, *, background=False, name="", on_progress=None, on_result=None, on_failed=None,
            on_finished=None) -> Job:
        job = self.worker.submit(fn, background=background, name=name)
        self._callbacks[job.id] = _Callbacks(on_progress, on_result, on_failed, on_finished)
        self.jobs[job.id] = job
        if len(self.jobs) == 1:
            self.busy_changed.emit(True)
        return job

    def pending(self, name: str) -> list[Job]:
        return [job for job in self.jobs.values() if job.name == name]

    @Slot(int, object)
    def _on_progress(self, job_id: int, value: object) -> None:
        callbacks = self._callbacks.get(job_id)
        if callbacks and callbacks.on_progress:
            callbacks.on_progress(value)

    @Slot(int, object)
    def _on_result(self, job_id: int, value: object) -> None:
        callbacks = self._callbacks.get(job_id)
        if callbacks and callbacks.on_result:
            callbacks.on_result(value)

    @Slot(int, str)
    def _on_failed(self, job_id: int, message: str) -> None:
        callbacks = self._callbacks.get(job_id)
        if callbacks and callbacks.on_failed:
            callbacks.on_failed(message)
        else:
            self.failed.emit(message)

    @Slot(int)
    def _on_finished(self, job_id: int) -> None:
        callbacks = self._callbacks.pop(job_id, None)
        self.jobs.pop(job_id, None)
        if callbacks and callbacks.on_finished:
            callbacks.on_finished()
        if not self.jobs:
            self.busy_changed.emit(False)
