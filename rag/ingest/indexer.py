"""Incremental, batched indexing: files in, chunks and vectors out, one report.

`Indexer.run()` is a generator: it yields `Progress` events while it works and an
`IndexReport` last, so the CLI draws a progress bar and the window a progress widget from the
same stream. Cancellation (`should_stop`) is checked between files and batches.

Per file the cost is a stat when nothing changed, a hash when the stat changed, and a parse,
chunk and embed only when the content changed. Chunks from many small files are embedded
together so the model always sees full batches. Vectors are written before the catalog
commits (upserts with ids derived from content, so a rerun rewrites the same ids); ids that
are no longer used are journaled in the same catalog transaction and deleted after it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import loaders
from ..index.catalog import DocumentRow
from .chunking import ChunkPlan, Chunker, document_text
from ..embedding import Embedder
from ..errors import EnclaveError, FileSkipped
from ..index import DocumentWrite, Index
from .parsing import ParsePool, ReaderNote
from ..types import SETTLED, Chunk, IndexReport, LoadedDocument, Progress  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

FLUSH_CHUNKS = 256  # embed once this many chunks wait: full batches, bounded memory
# ... or once the oldest waited this long: the documents read so far become searchable and
# counted while a long run goes on, instead of all at its end.
FLUSH_SECONDS = 2.0
HASH_BLOCK = 1 << 20


@dataclass
class _Job:
    path: str
    stat: os.stat_result
    digest: str


@dataclass
class _Pending:
    path: str
    stat: os.stat_result
    content_hash: str
    document: LoadedDocument
    chunks: list[Chunk]


def file_hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def discover(paths: Sequence[str | os.PathLike]) -> tuple[list[str], list[str]]:
    """Files to consider (sorted, hidden entries skipped in folders) and the folders walked."""
    files: dict[str, None] = {}
    folders: list[str] = []
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            folders.append(str(path))
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith("."):
                        full = os.path.join(root, name)
                        if os.path.isfile(full):
                            files[full] = None
        elif path.is_file():
            files[str(path)] = None
        else:
            raise EnclaveError(f"No such file or folder: {raw}")
    return list(files), folders


class Indexer:
    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        chunker: Chunker,
        pool: ParsePool | None = None,
        plan: ChunkPlan | None = None,
    ):
        self.index = index
        self.embedder = embedder
        self.chunker = chunker
        self._pool = pool
        # With a plan the reader processes chunk (the same tokenizer and limits as
        # `chunker`), so this process only embeds and stores.
        self.plan = plan

    @property
    def pool(self) -> ParsePool:
        if self._pool is None:
            self._pool = ParsePool()
        return self._pool

    def run(
        self,
        paths: Sequence[str | os.PathLike],
        collection: str = "default",
        passwords: Sequence[str] = (),
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[Progress | IndexReport]:
        started = time.perf_counter()
        report = IndexReport()
        files, folders = discover(paths)
        self.index.prepare_collection(collection, self.embedder.name, self.embedder.dim)
        listed = set(files)
        files += [  # documents waiting for a rebuild come along with any run on their collection
            d.path for d in self.index.documents(collection)
            if d.state == "stale" and d.path not in listed and os.path.isfile(d.path)
        ]
        self.index.recover()
        pending: list[_Pending] = []
        done = chunks_done = 0
        reading = {"bytes_done": 0, "bytes_total": 0, "started": None}

        def progress(current: str, detail: str = "", outcome: dict | None = None) -> Progress:
            now = time.perf_counter()
            return Progress(done, len(files), chunks_done, current, now - started, detail,
                            outcome=outcome, bytes_done=reading["bytes_done"],
                            bytes_total=reading["bytes_total"],
                            read_elapsed=now - reading["started"] if reading["started"] else 0.0)

        def outcome_of(path: str, problems_before: int, state: str) -> dict:
            """What became of `path`: a failure or skip it added to the report, else `state`."""
            if len(report.failed) + len(report.skipped) > problems_before:
                for state_, items in (("failed", report.failed), ("skipped", report.skipped)):
                    if items and items[-1]["path"] == path:
                        return {"state": state_, "reason": items[-1]["reason"]}
            return {"state": state, "reason": None}

        if files:
            yield Progress(0, len(files), 0, "", time.perf_counter() - started, files=tuple(files))

        # Pass 1, cheap: a stat, and a hash where the stat changed, decide what must be read.
        jobs: dict[str, _Job] = {}
        for path in files:
            if should_stop and should_stop():
                report.cancelled = True
                break
            problems = len(report.failed) + len(report.skipped)
            job = self._triage(path, collection, passwords, report)
            if job is None:
                done += 1
                yield progress(path, outcome=outcome_of(path, problems, "unchanged"))
            else:
                jobs[path] = job
        # Pass 2: isolated workers read files while this process chunks and embeds.
        if jobs and not report.cancelled:
            reading.update(bytes_total=sum(job.stat.st_size for job in jobs.values()), started=time.perf_counter())
            last_flush = time.perf_counter()
            plan = self.plan
            results = self.pool.map(
                (p, p, passwords, plan, self._prefix(job, collection)) if plan else (p, p, passwords)
                for p, job in jobs.items()
            )
            try:
                waited = time.perf_counter()
                for path, result, chunked in results:
                    if isinstance(result, ReaderNote):  # a long read: say where it is
                        yield progress(path, result.text)
                        continue
                    report.stages["parse"] += time.perf_counter() - waited
                    problems = len(report.failed) + len(report.skipped)
                    self._accept(jobs[path], result, collection, report, pending, chunked)
                    if pending and (sum(len(p.chunks) for p in pending) >= FLUSH_CHUNKS
                                    or time.perf_counter() - last_flush >= FLUSH_SECONDS):
                        chunks_done += self._flush(pending, collection, report)
                        last_flush = time.perf_counter()
                    done += 1
                    reading["bytes_done"] += jobs[path].stat.st_size
                    yield progress(path, outcome=outcome_of(path, problems, "indexed"))
                    if should_stop and should_stop():
                        report.cancelled = True
                        break
                    waited = time.perf_counter()
            finally:
                results.close()
        if pending:
            chunks_done += self._flush(pending, collection, report)
        if not report.cancelled:
            seen = set(files)
            for folder in folders:
                for doc in self.index.documents_under(collection, folder):
                    if doc.path not in seen:  # deleted from disk: forget it
                        report.chunks_removed += self._forget(doc)
                        report.removed_documents += 1
        report.seconds = time.perf_counter() - started
        yield progress("")
        yield report

    # --- per file ----------------------------------------------------------------------

    def _triage(self, path, collection, passwords, report) -> _Job | None:
        """Settle a file that needs no reading; otherwise return what reading it needs."""
        t0 = time.perf_counter()
        try:
            try:
                stat = os.stat(path)
            except OSError as exc:
                report.failed.append({"path": path, "reason": f"cannot read the file: {exc.strerror}"})
                return None
            row = self.index.document(collection, path)
            retry = row is not None and row.state == "failed" and bool(passwords) and _is_password(row)
            if row and not retry and row.size == stat.st_size and row.mtime_ns == stat.st_mtime_ns:
                self._repeat(row, report)
                return None
            try:
                digest = file_hash(path)
            except OSError as exc:
                report.failed.append({"path": path, "reason": f"cannot read the file: {exc.strerror}"})
                return None
            if row and not retry and row.content_hash == digest and row.state in SETTLED:
                self.index.touch_document(row.id, stat.st_size, stat.st_mtime_ns)
                self._repeat(row, report)
                return None
            unsupported = loaders.unsupported_reason(path)
            if unsupported:  # no need to start a reader for it
                self._record_outcome(collection, path, stat, digest, "skipped",
                                     unsupported, None, report)
                return None
            return _Job(path, stat, digest)
        finally:
            report.stages["scan"] += time.perf_counter() - t0

    @staticmethod
    def _prefix(job: _Job, collection: str) -> str:
        """Chunk ids: the content hash (unchanged text, same ids) and where the file is."""
        return job.digest[:16] + "-" + hashlib.sha1(f"{collection}\0{job.path}".encode()).hexdigest()[:8]

    def _accept(self, job: _Job, result, collection, report, pending, chunked=None) -> None:
        if isinstance(result, EnclaveError):
            state = "skipped" if isinstance(result, FileSkipped) else "failed"
            self._record_outcome(collection, job.path, job.stat, job.digest, state, str(result),
                                 getattr(result, "page_count", None), report)
            return
        if chunked is not None:  # chunked by the reader; the time is the reader's
            chunks, seconds = chunked
            report.stages["chunk"] += seconds
        else:
            t0 = time.perf_counter()
            chunks = self.chunker.chunk(result.pages, self._prefix(job, collection))
            report.stages["chunk"] += time.perf_counter() - t0
        if not chunks:
            self._record_outcome(collection, job.path, job.stat, job.digest, "skipped",
                                 "no text found", result.page_count, report)
            return
        pending.append(_Pending(job.path, job.stat, job.digest, result, chunks))

    def _repeat(self, row: DocumentRow, report: IndexReport) -> None:
        """A file whose content is unchanged keeps its earlier outcome."""
        if row.state == "indexed":
            report.unchanged += 1
        elif row.state == "skipped":
            report.skipped.append({"path": row.path, "reason": row.reason})
        else:
            report.failed.append({"path": row.path, "reason": row.reason})

    def _record_outcome(self, collection, path, stat, digest, state, reason, pages, report):
        report.chunks_removed += self.index.record_outcome(
            collection, path, state=state, reason=reason, content_hash=digest,
            size=stat.st_size, mtime_ns=stat.st_mtime_ns, pages=pages,
        )
        (report.skipped if state == "skipped" else report.failed).append({"path": path, "reason": reason})

    # --- batches -----------------------------------------------------------------------

    def _flush(self, pending: list[_Pending], collection: str, report: IndexReport) -> int:
        chunks = [c for p in pending for c in p.chunks]
        t0 = time.perf_counter()
        vectors = self.embedder.embed([c.text for c in chunks])
        t1 = time.perf_counter()
        report.stages["embed"] += t1 - t0
        docs = [
            DocumentWrite(p.path, p.content_hash, p.stat.st_size, p.stat.st_mtime_ns, p.document.kind,
                          p.document.page_count, p.chunks, _page_words(p.document))
            for p in pending
        ]
        stale = self.index.write_documents(collection, docs, vectors)
        report.stages["store"] += time.perf_counter() - t1
        report.indexed += len(pending)
        report.pages += sum(p.document.page_count or 1 for p in pending)
        report.chunks_added += len(chunks)
        report.chunks_removed += stale
        pending.clear()
        return len(chunks)

    # --- removal -----------------------------------------------------------------------

    def _forget(self, doc: DocumentRow) -> int:
        return self.index.forget_document(doc)


def _page_words(document: LoadedDocument) -> dict[int, list]:
    """Word boxes of the pages read by OCR, their offsets moved into the document's text."""
    if not any(page.words for page in document.pages):
        return {}
    _, starts = document_text(document.pages)
    return {
        page.number: [[start + a, start + b, *box] for a, b, *box in page.words]
        for page, start in zip(document.pages, starts)
        if page.words and page.number is not None
    }


def _is_password(row: DocumentRow) -> bool:
    return bool(row.reason and row.reason.startswith("password required"))
