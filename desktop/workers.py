"""The one worker shape: a single owner thread for the engine, talking back only by signals.

`EngineWorker` lives on its own `QThread`, builds the `Engine` there, and is the only code
that touches it (llama.cpp contexts and the SQLite catalog have one owner). Widgets submit
jobs: a callable taking the engine, returning a value or a generator. Generators are
advanced one step per turn of the worker's event loop, so

- an interactive job (an answer, a document listing) is stepped before a background job
  (indexing): a question about documents already indexed is answered between two files;
- a paused background job is simply not stepped until it is resumed;
- cancellation sets a thread-safe flag that the job's `should_stop` reads between steps.

Signals carry a job id: `started(job)`, `progress(job, obj)` for each value a generator
yields but the last, `result(job, obj)` for the return value or a generator's last value,
`failed(job, message)` and `finished(job)` (always, after result or failed).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot, Qt


log = logging.getLogger(__name__)

GENERIC_FAILURE = "Something went wrong inside Enclave. The details are in the log."

_ids = itertools.count(1)


@dataclass
class Job:
    """What a submitter gets back; the flags are safe to set from any thread."""

    fn: Callable[[Any, "Job"], Any]
    background: bool = False
    name: str = ""
    id: int = field(default_factory=lambda: next(_ids))
    stop_flag: threading.Event = field(default_factory=threading.Event)
    pause_flag: threading.Event = field(default_factory=threading.Event)
    gen: Iterator | None = None
    started: bool = False
    last: Any = None
    has_last: bool = False
    rebuild_engine: Callable[[], Any] | None = None  # set by the worker: a fresh engine (settings changed)

    def should_stop(self) -> bool:
        return self.stop_flag.is_set()


def _message_for(error: BaseException) -> str:
    from rag.errors import EnclaveError  # no Qt in rag; this import is light

    if isinstance(error, EnclaveError):
        return str(error)
    return GENERIC_FAILURE


class EngineWorker(QObject):
    started = Signal(int)
    progress = Signal(int, object)
    result = Signal(int, object)
    failed = Signal(int, str)
    finished = Signal(int)
    engine_failed = Signal(str)  # the engine could not be built (damaged or locked index)
    data_damaged = Signal(dict)  # start-up checks found damaged parts: {part: what is wrong}

    _queued = Signal()
    _restart_requested = Signal(object)
    _shutdown_requested = Signal()

    def __init__(self, engine_factory: Callable[[], Any]):
        super().__init__()
        self._factory = engine_factory
        self._engine: Any = None
        self._lock = threading.Lock()
        self._incoming: deque[Job] = deque()
        self._interactive: deque[Job] = deque()
        self._background: deque[Job] = deque()
        self._timer: QTimer | None = None
        self._thread = QThread()
        self._thread.setObjectName("EngineWorker")
        self.moveToThread(self._thread)
        self._thread.started.connect(self._on_thread_started)
        self._queued.connect(self._on_queued)
        self._restart_requested.connect(self._on_restart_requested)
        self._shutdown_requested.connect(self._on_shutdown_requested, Qt.BlockingQueuedConnection)
        self._closed = False

    # --- called from the UI thread ------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: Callable[[Any, Job], Any], *, background: bool = False, name: str = "") -> Job:
        """Queue `fn(engine, job)`; returns the job (its id keys every signal)."""
        job = Job(fn, background, name)
        with self._lock:
            self._incoming.append(job)
        self._queued.emit()
        return job

    def restart(self, before: Callable[[], Any]) -> None:
        """On the worker thread: run `before()` (a repair the user agreed to), then build
        the engine again; queued jobs run once it is built."""
        self._restart_requested.emit(before)

    def cancel(self, job: Job) -> None:
        job.stop_flag.set()
        job.pause_flag.clear()
        self._queued.emit()  # wake a paused job so it can see the flag

    def pause(self, job: Job) -> None:
        job.pause_flag.set()

    def resume(self, job: Job) -> None:
        job.pause_flag.clear()
        self._queued.emit()

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Stop every job, close the engine on its thread, end the thread and wait for it."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            jobs = list(self._incoming) + list(self._interactive) + list(self._background)
        for job in jobs:
            job.stop_flag.set()
        if self._thread.isRunning():
            self._shutdown_requested.emit()  # blocks until the worker has closed everything
            self._thread.quit()
            self._thread.wait(timeout_ms)

    def is_running(self) -> bool:
        return self._thread.isRunning()

    # --- on the worker thread -----------------------------------------------------------

    @Slot()
    def _on_thread_started(self) -> None:
        self._timer = QTimer()
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._on_tick)
        self._build()

    @Slot(object)
    def _on_restart_requested(self, before: Callable[[], Any]) -> None:
        try:
            before()
        except BaseException as exc:  # noqa: BLE001 - reported, never swallowed
            self._engine_failed(exc, "the repair failed")
            return
        self._build()

    def _build(self) -> None:
        from rag.health import DataFolderDamaged

        try:
            self._engine = self._factory()
        except DataFolderDamaged as exc:
            self.data_damaged.emit(dict(exc.problems))
            return
        except BaseException as exc:  # noqa: BLE001 - reported, never swallowed
            self._engine_failed(exc, "the engine could not be built")
            return
        self._on_queued()

    def _engine_failed(self, exc: BaseException, what: str) -> None:
        if not _is_expected(exc):
            log.exception(what)
        self.engine_failed.emit(_message_for(exc))

    @Slot()
    def _on_queued(self) -> None:
        with self._lock:
            while self._incoming:
                job = self._incoming.popleft()
                (self._background if job.background else self._interactive).append(job)
        if self._engine is not None and self._timer is not None and self._runnable() is not None:
            self._timer.start()

    def _runnable(self) -> Job | None:
        if self._interactive:
            return self._interactive[0]
        for job in self._background:
            if not job.pause_flag.is_set():
                return job
        return None

    @Slot()
    def _on_tick(self) -> None:
        job = self._runnable()
        if job is None:
            self._timer.stop()
            return
        self._step(job)

    def _step(self, job: Job) -> None:
        try:
            if not job.started:
                job.started = True
                self.started.emit(job.id)
                job.rebuild_engine = self._rebuild_engine
                value = job.fn(self._engine, job)
                if inspect.isgenerator(value) or isinstance(value, Iterator):
                    job.gen = value
                    return
                self.result.emit(job.id, value)
                self._done(job)
                return
            try:
                value = next(job.gen)
            except StopIteration:
                if job.has_last:
                    self.result.emit(job.id, job.last)
                self._done(job)
                return
            if job.has_last:
                self.progress.emit(job.id, job.last)
            job.last, job.has_last = value, True
        except BaseException as exc:  # noqa: BLE001 - every failure reaches the user
            if not _is_expected(exc):
                log.exception("job %s (%s) failed", job.id, job.name)
            self.failed.emit(job.id, _message_for(exc))
            self._done(job)

    def _rebuild_engine(self) -> Any:
        if self._engine is not None:
            self._engine.close()
        self._engine = None
        self._engine = self._factory()
        return self._engine

    def _done(self, job: Job) -> None:
        for queue in (self._interactive, self._background):
            if job in queue:
                queue.remove(job)
        if job.gen is not None:
            try:
                job.gen.close()
            except Exception:  # noqa: BLE001
                log.exception("closing job %s", job.id)
        self.finished.emit(job.id)

    @Slot()
    def _on_shutdown_requested(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        with self._lock:
            self._incoming.clear()
        for job in list(self._interactive) + list(self._background):
            if job.gen is not None:
                try:
                    job.gen.close()  # generators see GeneratorExit and clean up (stream.close())
                except Exception:  # noqa: BLE001
                    log.exception("closing job %s", job.id)
        self._interactive.clear()
        self._background.clear()
        if self._engine is not None:
            try:
                self._engine.close()
            except Exception:  # noqa: BLE001
                log.exception("closing the engine")
            self._engine = None
        self._timer = None
        self.moveToThread(self._main_thread())  # so the UI thread can delete it later

    def _main_thread(self) -> QThread:
        from PySide6.QtCore import QCoreApplication

        app = QCoreApplication.instance()
        return app.thread() if app is not None else QThread.currentThread()


def _is_expected(exc: BaseException) -> bool:
    from rag.errors import EnclaveError

    return isinstance(exc, EnclaveError)
