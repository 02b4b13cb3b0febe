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
from .catalog import Catalog, DocumentRow
from .chunking import ChunkPlan, Chunker, document_text
from .embedding import Embedder
from .errors import EnclaveError, FileSkipped
from .parsing import ParsePool, ReaderNote
from .store import VectorStore
from .types import SETTLED, Chunk, IndexReport, LoadedDocument, Progress  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

FLUSH_CHUNKS = 256  # embed once this many chunks wait: full batches, bounded memory
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
        catalog: Catalog,
        store: VectorStore,
        embedder: Embedder,
        chunker: Chunker,
        pool: ParsePool | None = None,
        plan: ChunkPlan | None = None,
    ):
        self.catalog = catalog
        self.store = store
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
        store_name = self._prepare_collection(collection)
        listed = set(files)
        files += [  # documents waiting for a rebuild come along with any run on their collection
            d.path for d in self.catalog.documents(collection)
            if d.state == "stale" and d.path not in listed and os.path.isfile(d.path)
        ]
        self._finish_pending_deletes()
        pending: list[_Pending] = []
        done = chunks_done = 0

        def progress(current: str, detail: str = "") -> Progress:
            return Progress(done, len(files), chunks_done, current, time.perf_counter() - started, detail)

        # Pass 1, cheap: a stat, and a hash where the stat changed, decide what must be read.
        jobs: dict[str, _Job] = {}
        for path in files:
            if should_stop and should_stop():
                report.cancelled = True
                break
            job = self._triage(path, collection, store_name, passwords, report)
            if job is None:
                done += 1
                yield progress(path)
            else:
                jobs[path] = job
        # Pass 2: isolated workers read files while this process chunks and embeds.
        if jobs and not report.cancelled:
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
                    self._accept(jobs[path], result, collection, store_name, report, pending, chunked)
                    if sum(len(p.chunks) for p in pending) >= FLUSH_CHUNKS:
                        chunks_done += self._flush(pending, collection, store_name, report)
                    done += 1
                    yield progress(path)
                    if should_stop and should_stop():
                        report.cancelled = True
                        break
                    waited = time.perf_counter()
            finally:
                results.close()
        if pending:
            chunks_done += self._flush(pending, collection, store_name, report)
        if not report.cancelled:
            seen = set(files)
            for folder in folders:
                for doc in self.catalog.documents_under(collection, folder):
                    if doc.path not in seen:  # deleted from disk: forget it
                        report.chunks_removed += self._forget(doc, store_name)
                        report.removed_documents += 1
        report.seconds = time.perf_counter() - started
        yield progress("")
        yield report

    # --- per file ----------------------------------------------------------------------

    def _triage(self, path, collection, store_name, passwords, report) -> _Job | None:
        """Settle a file that needs no reading; otherwise return what reading it needs."""
        t0 = time.perf_counter()
        try:
            try:
                stat = os.stat(path)
            except OSError as exc:
                report.failed.append({"path": path, "reason": f"cannot read the file: {exc.strerror}"})
                return None
            row = self.catalog.document(collection, path)
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
                self.catalog.touch_document(row.id, stat.st_size, stat.st_mtime_ns)
                self._repeat(row, report)
                return None
            unsupported = loaders.unsupported_reason(path)
            if unsupported:  # no need to start a reader for it
                self._record_outcome(collection, store_name, path, stat, digest, "skipped",
                                     unsupported, None, report)
                return None
            return _Job(path, stat, digest)
        finally:
            report.stages["scan"] += time.perf_counter() - t0

    @staticmethod
    def _prefix(job: _Job, collection: str) -> str:
        """Chunk ids: the content hash (unchanged text, same ids) and where the file is."""
        return job.digest[:16] + "-" + hashlib.sha1(f"{collection}\0{job.path}".encode()).hexdigest()[:8]

    def _accept(self, job: _Job, result, collection, store_name, report, pending, chunked=None) -> None:
        if isinstance(result, EnclaveError):
            state = "skipped" if isinstance(result, FileSkipped) else "failed"
            self._record_outcome(collection, store_name, job.path, job.stat, job.digest, state, str(result),
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
            self._record_outcome(collection, store_name, job.path, job.stat, job.digest, "skipped",
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

    def _record_outcome(self, collection, store_name, path, stat, digest, state, reason, pages, report):
        with self.catalog.transaction():
            doc_id = self.catalog.upsert_document(
                collection, path, state=state, reason=reason, content_hash=digest,
                size=stat.st_size, mtime_ns=stat.st_mtime_ns, pages=pages,
            )
            stale = self.catalog.replace_chunks(doc_id, store_name, [])
            self.catalog.replace_page_words(doc_id, {})
        self._delete_vectors(store_name, stale)
        report.chunks_removed += len(stale)
        (report.skipped if state == "skipped" else report.failed).append({"path": path, "reason": reason})

    # --- batches -----------------------------------------------------------------------

    def _flush(self, pending: list[_Pending], collection: str, store_name: str, report: IndexReport) -> int:
        chunks = [c for p in pending for c in p.chunks]
        t0 = time.perf_counter()
        vectors = self.embedder.embed([c.text for c in chunks])
        t1 = time.perf_counter()
        report.stages["embed"] += t1 - t0
        metadatas = []
        for p in pending:
            for c in p.chunks:
                meta = {"path": p.path}
                if c.page_start is not None:
                    meta["page"] = c.page_start
                metadatas.append(meta)
        ids = [c.id for c in chunks]
        with self.catalog.transaction():
            self.catalog.journal_adds(store_name, ids)
        self.store.add(store_name, ids, vectors, metadatas)
        stale: list[str] = []
        with self.catalog.transaction():
            self.catalog.settle_adds(store_name, ids)
            for p in pending:
                doc_id = self.catalog.upsert_document(
                    collection, p.path, state="indexed", content_hash=p.content_hash,
                    size=p.stat.st_size, mtime_ns=p.stat.st_mtime_ns, kind=p.document.kind,
                    pages=p.document.page_count,
                )
                stale += self.catalog.replace_chunks(doc_id, store_name, p.chunks)
                self.catalog.replace_page_words(doc_id, _page_words(p.document))
        self._delete_vectors(store_name, stale)
        report.stages["store"] += time.perf_counter() - t1
        report.indexed += len(pending)
        report.pages += sum(p.document.page_count or 1 for p in pending)
        report.chunks_added += len(chunks)
        report.chunks_removed += len(stale)
        pending.clear()
        return len(chunks)

    # --- removal -----------------------------------------------------------------------

    def _forget(self, doc: DocumentRow, store_name: str) -> int:
        return forget_document(self.catalog, self.store, doc, store_name)

    def _delete_vectors(self, store_name: str, ids: Sequence[str]) -> None:
        delete_vectors(self.catalog, self.store, store_name, ids)

    def _finish_pending_deletes(self) -> None:
        recover(self.catalog, self.store)

    # --- collections -------------------------------------------------------------------

    def _prepare_collection(self, collection: str) -> str:
        """Create the collection, or rebuild it when the embedding model changed."""
        row = self.catalog.ensure_collection(collection)
        model, dim = self.embedder.name, self.embedder.dim
        if row["embed_model"] and (row["embed_model"], row["embed_dim"]) != (model, dim):
            log.warning("collection %s was built with %s; rebuilding for %s", collection, row["embed_model"], model)
            self.store.drop(row["store_name"])
            with self.catalog.transaction():
                for doc in self.catalog.documents(collection):
                    self.catalog.replace_chunks(doc.id, row["store_name"], [])
                    # Forget the hash so every file is parsed and embedded again.
                    self.catalog.upsert_document(collection, doc.path, state="stale",
                                                 reason="embedding model changed; index it again")
                self.catalog.forget_store(row["store_name"])
        self.catalog.set_embedding(collection, model, dim)
        return row["store_name"]


def delete_vectors(catalog: Catalog, store: VectorStore, store_name: str, ids: Sequence[str]) -> None:
    """Delete vectors whose deletion the catalog journaled, then settle the journal."""
    if ids:
        store.delete(store_name, ids)
        catalog.clear_pending(store_name, ids)


def forget_document(catalog: Catalog, store: VectorStore, doc: DocumentRow, store_name: str) -> int:
    """Remove a document from the catalog and FTS (journaled), then its vectors."""
    with catalog.transaction():
        ids = catalog.delete_document(doc.id, store_name)
    delete_vectors(catalog, store, store_name, ids)
    return len(ids)


def recover(catalog: Catalog, store: VectorStore) -> dict[str, int]:
    """Finish what an interrupted run journaled: take out vectors whose chunks never
    committed, and make the deletions it had promised. Idempotent."""
    added = deleted = 0
    for store_name, ids in catalog.unsettled_adds().items():
        store.delete(store_name, ids)
        with catalog.transaction():
            catalog.settle_adds(store_name, ids)
        added += len(ids)
    with catalog.transaction():  # adds whose chunks did commit need no undoing
        catalog.db.execute("DELETE FROM pending_adds WHERE chunk_id IN (SELECT id FROM chunks)")
    for store_name, ids in catalog.pending_deletes().items():
        delete_vectors(catalog, store, store_name, ids)
        deleted += len(ids)
    return {"vectors_taken_back": added, "deletions_finished": deleted}


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
