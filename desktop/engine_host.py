"""The engine's own process: the window's jobs run here, never in the window's process.

Importing torch, transformers and Chroma, loading the embedding model, and Chroma's writes
hold Python's lock for up to hundreds of milliseconds at a time; in the window's process
they froze the event loop, whichever thread did them. Here they cannot: the window's
process keeps only Qt. And a native crash in the engine (Chroma on a damaged segment, a
parser outside the readers) costs a restart of this process, not the window.

This module imports no Qt. `ProcessEngine` (workers.py) starts it as
`python -m desktop.engine_host FD DATA_DIR` and drives it over the socket FD with pickled
tuples, one request at a time, each answered once:

    ("build", before)     -> ("built",) | ("damaged", {part: problem}) | ("failed", message, expected)
    ("start", id, fn)     -> ("value", v) | ("generator",) | ("error", message, expected)
    ("next", id)          -> ("yield", v) | ("return",) | ("error", message, expected)
    ("close", id)         -> ("closed",)
    ("shutdown",)         -> ("bye",), then the process exits
    ("cancel", id)        no answer: read at once by a second thread, so a job in the middle
                          of a step sees `job.should_stop()` turn true
    ("interrupt", id)     no answer: as "cancel", and if the job is running, its model host
                          is ended at once (the step may be stuck waiting on a frozen host)

`fn` is a picklable `fn(engine, job)` from desktop/jobs.py; a generator is advanced one step
per "next", so the window's worker keeps deciding what runs when (answers before indexing,
paused jobs not stepped at all).
"""

from __future__ import annotations

import inspect
import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

log = logging.getLogger("desktop.engine_host")


class HostedJob:
    """The job as seen by its function: a stop flag the window sets, and a way to rebuild."""

    def __init__(self, job_id: int, stop: threading.Event, rebuild: Callable[[], Any]):
        self.id = job_id
        self._stop = stop
        self.rebuild_engine = rebuild

    def should_stop(self) -> bool:
        return self._stop.is_set()


def build_engine(folder: Path):
    """Start-up checks first (Chroma is probed in a child of its own), then the engine."""
    from rag import health

    problems = health.problems(folder)
    if problems:
        raise health.DataFolderDamaged(problems)
    from rag.engine import Engine

    return Engine(folder)


def _failure(exc: BaseException) -> tuple[str, bool]:
    from rag.errors import EnclaveError

    if isinstance(exc, EnclaveError):
        return str(exc), True
    log.error("a job failed", exc_info=exc)
    return "", False


class Host:
    def __init__(self, conn: Connection, folder: Path):
        self.conn = conn
        self.folder = folder
        self.engine: Any = None
        self.generators: dict[int, Iterator] = {}
        self._stops: dict[int, threading.Event] = {}
        self._stops_lock = threading.Lock()
        self.inbox: queue.Queue = queue.Queue()

    def stop_flag(self, job_id: int) -> threading.Event:
        with self._stops_lock:
            return self._stops.setdefault(job_id, threading.Event())

    def read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError, TypeError):  # TypeError: closed under us at exit
                self.inbox.put(("shutdown",))
                return
            if message[0] == "cancel":
                self.stop_flag(message[1]).set()
            elif message[0] == "interrupt":
                self.stop_flag(message[1]).set()
                if message[1] in self.generators:  # still running: it may wait on the model
                    from desktop.jobs import interrupt_model

                    interrupt_model(self.engine)
            else:
                self.inbox.put(message)

    def rebuild(self) -> Any:
        if self.engine is not None:
            self.engine.close()
        self.engine = None
        self.engine = build_engine(self.folder)
        return self.engine

    def serve(self) -> None:
        threading.Thread(target=self.read, name="engine-host-reader", daemon=True).start()
        while True:
            message = self.inbox.get()
            kind = message[0]
            if kind in ("shutdown", "quit"):  # "quit" is what rag.children.Child.end() sends
                self.close()
                try:
                    self.conn.send(("bye",))
                except OSError:
                    pass
                return
            try:
                reply = getattr(self, f"on_{kind}")(*message[1:])
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the window
                text, expected = _failure(exc)
                reply = ("error", text, expected)
            self.conn.send(reply)

    def on_build(self, before: Callable[[], Any] | None) -> tuple:
        from rag.health import DataFolderDamaged

        try:
            if before is not None:
                before()
            self.rebuild()
        except DataFolderDamaged as exc:
            return ("damaged", dict(exc.problems))
        except BaseException as exc:  # noqa: BLE001
            text, expected = _failure(exc)
            return ("failed", text, expected)
        return ("built",)

    def on_start(self, job_id: int, fn: Callable) -> tuple:
        job = HostedJob(job_id, self.stop_flag(job_id), self.rebuild)
        try:
            value = fn(self.engine, job)
        except BaseException:
            self._forget(job_id)
            raise
        if inspect.isgenerator(value) or isinstance(value, Iterator):
            self.generators[job_id] = value
            return ("generator",)
        self._forget(job_id)
        return ("value", value)

    def on_next(self, job_id: int) -> tuple:
        generator = self.generators[job_id]
        try:
            value = next(generator)
        except StopIteration:
            self._forget(job_id)
            return ("return",)
        except BaseException:
            self._forget(job_id)
            raise
        return ("yield", value)

    def on_close(self, job_id: int) -> tuple:
        generator = self.generators.get(job_id)
        self._forget(job_id)
        if generator is not None:
            generator.close()  # generators see GeneratorExit and clean up (a stream stops)
        return ("closed",)

    def _forget(self, job_id: int) -> None:
        self.generators.pop(job_id, None)
        with self._stops_lock:
            self._stops.pop(job_id, None)

    def close(self) -> None:
        for job_id in list(self.generators):
            try:
                self.on_close(job_id)
            except Exception:  # noqa: BLE001
                log.exception("closing job %s", job_id)
        if self.engine is not None:
            try:
                self.engine.close()
            except Exception:  # noqa: BLE001
                log.exception("closing the engine")
            self.engine = None


def main(argv: list[str]) -> int:
    from rag.children import die_with_parent

    die_with_parent()
    # Ctrl-C in a terminal reaches every process of its group; the window shuts this one down
    # (and waits for it), so here it would only print a KeyboardInterrupt traceback mid-job
    # and leave the window waiting. The model host and reader processes inherit the ignore.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.dup2(2, 1)  # nothing may print into the protocol
    conn = Connection(int(argv[1]))
    try:
        Host(conn, Path(argv[2])).serve()
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
