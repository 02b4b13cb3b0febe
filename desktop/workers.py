"""The one worker shape: a single owner thread for the engine, talking back only by signals.

`EngineWorker` lives on its own `QThread` and is the only code that drives the engine. Where
the engine itself lives is the backend's business:

- `ProcessEngine` (the default): in a process of its own (engine_host.py), so importing and
  running torch, transformers and Chroma never holds the window's Python lock, and a native
  crash there costs a restart, not the window;
- `ThreadEngine`: on the worker thread itself (tests with fake engines, embedding Enclave).

Widgets submit jobs: a callable taking (engine, job), returning a value or a generator; for
`ProcessEngine` it must pickle (desktop/jobs.py makes them so). Generators are advanced one
step per turn of the worker's event loop, so

- an interactive job (an answer, a document listing) is stepped before a background job
  (indexing): a question about documents already indexed is answered between two files;
- a paused background job is simply not stepped until it is resumed;
- cancellation sets a thread-safe flag that the job's `should_stop` reads between steps (and,
  for a process, inside a step: the flag crosses over at once);
- a job stuck inside a step, waiting on a model host that no longer answers, is interrupted:
  the host is ended, and the engine's read returns as after a crash.

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
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot, Qt

log = logging.getLogger(__name__)

GENERIC_FAILURE = "Something went wrong inside Enclave. The details are in the log."

_ids = itertools.count(1)


# How long closing the window waits for the running job to stop before it ends the engine.
SHUTDOWN_GRACE_S = 10.0


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
    finished: bool = False  # set on the worker thread once `finished` is emitted
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


class EngineCrashed(Exception):
    """The engine's process died; its message is written for the user."""


class ThreadEngine:
    """The engine on the worker thread, built by `factory()`."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self.engine: Any = None

    def build(self, before: Callable[[], Any] | None = None) -> None:
        if before is not None:
            before()
        self.engine = self._factory()

    def _rebuild(self) -> Any:
        if self.engine is not None:
            self.engine.close()
        self.engine = None
        self.engine = self._factory()
        return self.engine

    def start(self, job: "Job") -> tuple[str, Any]:
        job.rebuild_engine = self._rebuild
        value = job.fn(self.engine, job)
        if inspect.isgenerator(value) or isinstance(value, Iterator):
            job.gen = value
            return "generator", None
        return "value", value

    def step(self, job: "Job") -> tuple[str, Any]:
        try:
            return "yield", next(job.gen)
        except StopIteration:
            return "return", None

    def close_job(self, job: "Job") -> None:
        job.gen.close()

    def cancel(self, job: "Job") -> None:
        pass  # the job reads its own flag, in this process

    def interrupt(self, job: "Job") -> None:
        from .jobs import interrupt_model

        interrupt_model(self.engine)

    def end_stuck(self) -> None:
        log.error("the engine on the worker thread is stuck and cannot be ended from outside")

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = None


_REMOTE = object()  # job.gen for a generator that lives in the engine's process


class ProcessEngine:
    """The engine in a process of its own (desktop/engine_host.py), one request at a time.

    Only the worker thread sends requests and reads replies; `cancel` may come from the UI
    thread, so every send holds a lock.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.child: Any = None
        self._send_lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    def build(self, before: Callable[[], Any] | None = None) -> None:
        from rag.children import Child
        from rag.errors import EnclaveError
        from rag.health import DataFolderDamaged

        if self.child is None:
            self.child = Child("desktop.engine_host", str(self.folder), echo=True)
        reply = self._request(("build", before))
        if reply[0] == "damaged":
            raise DataFolderDamaged(reply[1])
        if reply[0] == "failed":
            raise EnclaveError(reply[1]) if reply[2] else RuntimeError("the engine could not be built")

    def start(self, job: "Job") -> tuple[str, Any]:
        if job.should_stop():  # cancelled while it waited: the engine's flag must start set
            self._send(("cancel", job.id))
        reply = self._request(("start", job.id, job.fn))
        if reply[0] == "generator":
            job.gen = _REMOTE
            if job.should_stop():  # cancelled while it started, before `cancel` could send it
                self.cancel(job)
            return "generator", None
        return "value", reply[1]

    def step(self, job: "Job") -> tuple[str, Any]:
        reply = self._request(("next", job.id))
        return ("yield", reply[1]) if reply[0] == "yield" else ("return", None)

    def close_job(self, job: "Job") -> None:
        if self.child is not None:
            self._request(("close", job.id))

    def cancel(self, job: "Job") -> None:
        try:
            self._send(("cancel", job.id))
        except (OSError, EngineCrashed):
            pass  # a dead engine runs nothing to cancel

    def interrupt(self, job: "Job") -> None:
        try:
            self._send(("interrupt", job.id))
        except (OSError, EngineCrashed):
            pass

    def end_stuck(self) -> None:
        """From any thread: kill the engine's process. The worker's pending read ends, and it
        handles that as a crash: what was running fails with the message, the engine is rebuilt."""
        child = self.child
        if child is not None:
            child.process.kill()

    def close(self) -> None:
        child, self.child = self.child, None
        if child is None:
            return
        try:
            with self._send_lock:
                child.conn.send(("shutdown",))
            if child.conn.poll(30):
                child.conn.recv()
        except (OSError, EOFError):
            pass
        child.end()

    def _send(self, message: tuple) -> None:
        if self.child is None:
            raise EngineCrashed("The engine is not running.")
        with self._send_lock:
            self.child.conn.send(message)

    def _request(self, message: tuple) -> tuple:
        from rag.errors import EnclaveError

        child = self.child
        try:
            self._send(message)
            reply = child.conn.recv()
        except (EOFError, OSError):
            raise self._crashed(child) from None
        if reply[0] == "error":
            raise EnclaveError(reply[1]) if reply[2] else RuntimeError("a job failed in the engine's process")
        return reply

    def _crashed(self, child: Any) -> EngineCrashed:
        from rag.children import describe_exit, signal_name

        code = child.exit_status()
        name = signal_name(code)
        log.error("the engine process (pid %s) stopped: %s%s; its last output:\n%s", child.pid,
                  describe_exit(code), f" ({name})" if name else "", child.stderr_tail() or "(nothing)")
        child.end()
        self.child = None
        return EngineCrashed(f"Enclave's engine stopped unexpectedly ({describe_exit(code)}). Enclave "
                             "restarted it; what was running has stopped, try it again.")


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

    def __init__(self, backend: "ThreadEngine | ProcessEngine | Callable[[], Any]"):
        """`backend`: where the engine lives; a plain callable builds it on this worker's thread."""
        super().__init__()
        self.backend = backend if hasattr(backend, "build") else ThreadEngine(backend)
        self._built = False
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
        if job.started and job.gen is not None:
            self.backend.cancel(job)  # seen inside the step in progress, too
        self._queued.emit()  # wake a paused job so it can see the flag

    def interrupt(self, job: Job) -> None:
        """Cancel `job` and, if it is inside a step, end the model host it may be waiting on: a
        frozen host never reads the stop, and the step would never return."""
        self.cancel(job)
        if job.started and not job.finished:
            self.backend.interrupt(job)

    def restart_stuck(self, job: Job) -> None:
        """The engine never came back from `job`, even interrupted: end the engine's process (the
        worker rebuilds it as after a crash). An engine on the worker's own thread cannot be."""
        if not job.finished:
            self.backend.end_stuck()

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
            # A job waiting on a frozen engine or model host never reads its stop flag and
            # would hold the blocking call below for ever: past the grace, end the engine's
            # process, whose pending read then returns as after a crash.
            guard = threading.Timer(SHUTDOWN_GRACE_S, self.backend.end_stuck)
            guard.daemon = True
            guard.start()
            try:
                self._shutdown_requested.emit()  # blocks until the worker has closed everything
            finally:
                guard.cancel()
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
        self._build(before)

    def _build(self, before: Callable[[], Any] | None = None) -> None:
        from rag.health import DataFolderDamaged

        self._built = False
        try:
            self.backend.build(before)
        except DataFolderDamaged as exc:
            self.data_damaged.emit(dict(exc.problems))
            return
        except BaseException as exc:  # noqa: BLE001 - reported, never swallowed
            self._engine_failed(exc, "the repair failed" if before is not None else "the engine could not be built")
            return
        self._built = True
        self._on_queued()

    def _engine_failed(self, exc: BaseException, what: str) -> None:
        if not _is_expected(exc):
            log.exception(what)
        self.engine_failed.emit(str(exc) if isinstance(exc, EngineCrashed) else _message_for(exc))

    @Slot()
    def _on_queued(self) -> None:
        with self._lock:
            while self._incoming:
                job = self._incoming.popleft()
                (self._background if job.background else self._interactive).append(job)
        if self._built and self._timer is not None and self._runnable() is not None:
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
                kind, value = self.backend.start(job)
                if kind == "generator":
                    return
                self.result.emit(job.id, value)
                self._done(job)
                return
            kind, value = self.backend.step(job)
            if kind == "return":
                if job.has_last:
                    self.result.emit(job.id, job.last)
                job.gen = None  # finished: nothing to close
                self._done(job)
                return
            if job.has_last:
                self.progress.emit(job.id, job.last)
            job.last, job.has_last = value, True
        except EngineCrashed as exc:
            self._on_engine_crashed(job, str(exc))
        except BaseException as exc:  # noqa: BLE001 - every failure reaches the user
            if not _is_expected(exc):
                log.exception("job %s (%s) failed", job.id, job.name)
            job.gen = None  # a generator that raised is finished
            self.failed.emit(job.id, _message_for(exc))
            self._done(job)

    def _on_engine_crashed(self, job: Job, message: str) -> None:
        """The engine's process died: this job and every job it had begun end with the
        message; jobs not begun yet run on the new engine."""
        for other in [job] + [j for j in list(self._interactive) + list(self._background)
                              if j is not job and j.started]:
            other.gen = None
            self.failed.emit(other.id, message)
            self._done(other)
        if not self._closed:  # closing: the shutdown that follows needs no new engine
            self._build()

    def _done(self, job: Job) -> None:
        for queue in (self._interactive, self._background):
            if job in queue:
                queue.remove(job)
        if job.gen is not None:
            try:
                self.backend.close_job(job)
            except EngineCrashed:
                pass
            except Exception:  # noqa: BLE001
                log.exception("closing job %s", job.id)
            job.gen = None
        job.finished = True
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
                    self.backend.close_job(job)  # generators see GeneratorExit and clean up
                except Exception:  # noqa: BLE001
                    log.exception("closing job %s", job.id)
                job.gen = None
        self._interactive.clear()
        self._background.clear()
        try:
            self.backend.close()
        except Exception:  # noqa: BLE001
            log.exception("closing the engine")
        self._built = False
        self._timer = None
        self.moveToThread(self._main_thread())  # so the UI thread can delete it later

    def _main_thread(self) -> QThread:
        from PySide6.QtCore import QCoreApplication

        app = QCoreApplication.instance()
        return app.thread() if app is not None else QThread.currentThread()


def _is_expected(exc: BaseException) -> bool:
    from rag.errors import EnclaveError

    return isinstance(exc, EnclaveError)
