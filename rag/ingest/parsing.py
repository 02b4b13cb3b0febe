"""Reading files in isolated worker processes, each file under a time and a memory limit.

A parser that loops forever, a decompression bomb, or a crash inside a C extension costs
that one file ("took longer than 60 s", "needed more than 1024 MiB") and never the batch or
the application. Workers are long-lived (spawned once, reused) and replaced when one has to
be killed. They run while the parent embeds, so parsing and embedding overlap.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from ..errors import EnclaveError, FileSkipped, FileUnreadable, PasswordRequired
from ..types import LoadedDocument

_ERRORS = {"skipped": FileSkipped, "unreadable": FileUnreadable}
# Chunking is our own linear-time code (about 6 s for the 3 MB of War and Peace here), not a
# parser facing hostile input: a big document must not fail on the reading limit because
# the machine is busy. It still has a bound, in case a tokenizer ever hangs.
CHUNK_TIME_FACTOR = 10
# The OCR models and onnxruntime's buffers take about 900 MiB of address space, more on a
# big page: a reader that reads a scanned page gets this much more room from then on.
OCR_MEMORY_MB = 1536


@dataclass(frozen=True)
class ParseLimits:
    seconds: float = 60.0
    memory_mb: int = 1024
    workers: int = 0  # 0: one per CPU core
    ocr: bool = True  # read scanned pages and images by OCR
    ocr_page_seconds: float = 120.0  # each page read by OCR has this long, on top of `seconds`

    @property
    def worker_count(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ReaderNote:
    """What a reader is doing inside a long file ("reading scanned page 3 of 40")."""

    text: str


def _worker_main(inbox: Connection, conn: Connection, memory_mb: int, ocr: bool = True) -> None:
    """Child process: read paths from the pipe, send documents (and their chunks, when
    asked) or errors back."""
    import resource

    # One reader per core already: the tokenizer's own thread pool would only compete.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    # The limit covers the address space, so a bomb fails with MemoryError inside the parser.
    limit = memory_mb * 1024 * 1024 + _baseline_bytes()
    ocr_limit = limit + (OCR_MEMORY_MB * 1024 * 1024 if ocr else 0)
    resource.setrlimit(resource.RLIMIT_AS, (limit, ocr_limit))
    from . import loaders

    reading_by_ocr = False

    def on_ocr_page(page: int, total: int) -> None:
        nonlocal reading_by_ocr
        if not reading_by_ocr:  # the OCR models stay loaded in this reader: so does their room
            resource.setrlimit(resource.RLIMIT_AS, (ocr_limit, ocr_limit))
            reading_by_ocr = True
        conn.send(("ocr", page, total))

    chunkers: dict = {}  # ChunkPlan -> Chunker, loaded once per plan
    while True:
        try:
            job = inbox.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if job is None:
            return
        path, passwords, plan, prefix = job
        try:
            document = loaders.load(path, passwords, loaders.LoadContext(ocr=ocr, on_ocr_page=on_ocr_page))
            chunked = None
            if plan is not None:
                conn.send(("parsed",))  # the time limit was for reading; chunking gets its own
                # Chunking here keeps tokenizing long pages (which holds the GIL) out of
                # the process that embeds and runs the window.
                started = time.perf_counter()
                if plan not in chunkers:
                    from .chunking import ChunkPlan

                    chunkers[plan] = ChunkPlan.chunker(plan)
                chunks = chunkers[plan].chunk(document.pages, prefix)
                chunked = (chunks, time.perf_counter() - started)
            conn.send(("ok", document, chunked))
        except PasswordRequired as exc:
            conn.send(("password", str(exc), getattr(exc, "page_count", None), len(passwords)))
        except FileSkipped as exc:
            conn.send(("skipped", str(exc), getattr(exc, "page_count", None)))
        except EnclaveError as exc:
            conn.send(("unreadable", str(exc), None))
        except MemoryError:
            needed = f"{memory_mb + OCR_MEMORY_MB} MiB of memory to read by OCR" if reading_by_ocr else \
                f"{memory_mb} MiB of memory to read"
            conn.send(("unreadable", f"needed more than {needed}", None))
        except Exception as exc:  # a parser bug: this file fails, the worker lives on
            conn.send(("unreadable", f"could not be read ({type(exc).__name__}: {exc})"[:300], None))


def _baseline_bytes() -> int:
    """Address space the worker already uses (interpreter, libraries) before any file."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 256 * 1024 * 1024


class _Worker:
    """A reader process of its own (`python -m rag.ingest.parsing`), talking over two pipes.

    A plain subprocess rather than multiprocessing: nothing of the parent (torch, Qt, its
    __main__ module) is forked or re-imported, whatever program Enclave runs in.
    """

    def __init__(self, limits: ParseLimits):
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        # OCR's threads share the cores with the other readers.
        env.setdefault("ENCLAVE_OCR_THREADS", str(max(1, (os.cpu_count() or 1) // limits.worker_count)))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rag.ingest.parsing", str(down_r), str(up_w), str(limits.memory_mb),
             "1" if limits.ocr else "0"],
            pass_fds=(down_r, up_w), stdin=subprocess.DEVNULL, env=env, close_fds=True,
        )
        os.close(down_r)
        os.close(up_w)
        self.outbox = Connection(down_w, readable=False)
        self.conn = Connection(up_r, writable=False)
        self.job: tuple | None = None
        self.deadline = 0.0
        self.chunking = False  # the file was read; the reader is chunking it
        self.ocr_page: int | None = None  # the page it is reading by OCR

    def send(self, message) -> None:
        self.outbox.send(message)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)
        self.close_pipes()

    def close_pipes(self) -> None:
        self.outbox.close()
        self.conn.close()


class ParsePool:
    """Submit (key, path, passwords[, plan, prefix]); results come back in completion order
    as (key, document or error, chunked). With a ChunkPlan the reader also chunks the
    document (chunk ids start with `prefix`) and `chunked` is (chunks, seconds spent
    chunking); without one, `chunked` is None. While a reader reads a scanned page, the
    map also yields (key, ReaderNote, None): progress, not a result."""

    def __init__(self, limits: ParseLimits = ParseLimits()):
        self.limits = limits
        self._workers: list[_Worker] = []

    def map(self, jobs: Iterable[tuple]) -> Iterator[tuple[object, LoadedDocument | EnclaveError | ReaderNote, tuple | None]]:
        """Reusable: a map abandoned half-way leaves busy workers, which are replaced here."""
        queue = deque(jobs)
        if not queue:
            return
        for worker in list(self._workers):
            if worker.job is not None:
                self._replace(worker)
        while len(self._workers) < min(self.limits.worker_count, len(queue)):
            self._workers.append(_Worker(self.limits))
        busy: dict[Connection, _Worker] = {}
        while queue or busy:
            for worker in self._workers:
                if worker.job is None and queue:
                    worker.job = queue.popleft()
                    worker.deadline = time.monotonic() + self.limits.seconds
                    worker.chunking = False
                    worker.ocr_page = None
                    path, passwords, *chunking = worker.job[1:]
                    plan, prefix = chunking if chunking else (None, "")
                    worker.send((path, list(passwords), plan, prefix))
                    busy[worker.conn] = worker
            timeout = max(0.0, min(w.deadline for w in busy.values()) - time.monotonic())
            for conn in wait(list(busy), timeout=timeout):
                worker = busy.pop(conn)
                key = worker.job[0]
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    yield key, FileUnreadable(self._death(worker)), None
                    self._replace(worker)
                    continue
                if message[0] == "ocr":  # a scanned page: its own allowance, and progress to show
                    _, page, total = message
                    worker.ocr_page = page
                    worker.deadline = max(worker.deadline, time.monotonic() + self.limits.ocr_page_seconds)
                    busy[conn] = worker
                    yield key, ReaderNote(f"reading scanned page {page} of {total}"), None
                    continue
                if message[0] == "parsed":  # read in time; chunking has its own allowance
                    worker.chunking = True
                    worker.deadline = time.monotonic() + self.limits.seconds * CHUNK_TIME_FACTOR
                    busy[conn] = worker
                    continue
                worker.job = None
                yield key, _result(message), message[2] if message[0] == "ok" else None
            now = time.monotonic()
            for conn, worker in list(busy.items()):
                # A reader whose answer is waiting in the pipe finished in time: while this
                # generator's consumer was busy embedding, the clock ran on without it.
                if now >= worker.deadline and not conn.poll(0):
                    busy.pop(conn)
                    key = worker.job[0]
                    self._replace(worker)
                    if worker.chunking:
                        limit = self.limits.seconds * CHUNK_TIME_FACTOR
                        reason = f"took longer than {limit:g} s to cut into chunks; it was stopped"
                    elif worker.ocr_page is not None:
                        reason = (f"reading scanned page {worker.ocr_page} by OCR took longer than "
                                  f"{self.limits.ocr_page_seconds:g} s; it was stopped")
                    else:
                        reason = f"took longer than {self.limits.seconds:g} s to read; it was stopped"
                    yield key, FileUnreadable(reason), None

    def _death(self, worker: _Worker) -> str:
        try:
            code = worker.process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and code < 0 and -code == 9:
            return f"needed more than {self.limits.memory_mb} MiB of memory to read (the system stopped the reader)"
        return f"the reader crashed on this file (exit code {code})"

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker(self.limits)

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.send(None)
            except OSError:
                pass
        for worker in self._workers:
            try:
                worker.process.wait(2)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(2)
            worker.close_pipes()
        self._workers = []

    def __enter__(self) -> "ParsePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _result(message: tuple) -> LoadedDocument | EnclaveError:
    kind = message[0]
    if kind == "ok":
        return message[1]
    if kind == "password":
        error = PasswordRequired("", tried=message[3])
        error.page_count = message[2]
        return error
    error = _ERRORS[kind](message[1])
    error.page_count = message[2]
    return error


if __name__ == "__main__":
    _worker_main(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False),
                 int(sys.argv[3]), sys.argv[4] == "1")
