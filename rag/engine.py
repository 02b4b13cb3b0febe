"""The engine: one object that owns the catalog, the vector store and the models.

The CLI and the window both drive this API. It is not thread-safe by design: one owner
thread (the window's single engine worker, or the CLI's main thread) calls it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from typing import TYPE_CHECKING

from .answer import Answer, Answerer
from .catalog import Catalog, DocumentRow
from .conversations import ConversationStore
from .config import Settings, resolve_data_dir
from .embedding import Embedder, SentenceEmbedder
from .errors import EnclaveError
from .llm import ChatModel, open_chat_model
from .llm.bundled import file_sha256
from .lock import WriterLock
from .retrieval import Retriever
from .store import VectorStore
from .types import SETTLED, Hit, IndexReport, Progress

if TYPE_CHECKING:  # the indexer, parsers and reader pool load on the first index run
    from .indexer import Indexer
    from .parsing import ParseLimits, ParsePool

WELCOME_DIR = Path(__file__).resolve().parents[1] / "assets" / "welcome"
WELCOME_COLLECTION = "Welcome"
WELCOME_MARKER = ".welcome-indexed"


class Engine:
    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
    ):
        # Everything Enclave writes (catalog, vectors, settings, conversations, exports) is
        # readable by this user alone: new files 0600, folders 0700.
        os.umask(0o077)
        self.data_dir = resolve_data_dir(data_dir)
        os.chmod(self.data_dir, 0o700)
        self.settings = settings or Settings.load(self.data_dir)
        self.catalog = Catalog(self.data_dir)
        self.store = VectorStore(self.data_dir)
        self._embedder = embedder  # built lazily from settings unless given (unit tests)
        self._chat_model: ChatModel | None = None
        self._model_sha256: str | None = None
        self._model_override: Path | None = None
        self._conversations: ConversationStore | None = None
        self._parse_pool: ParsePool | None = None
        self.lock = WriterLock(self.data_dir)  # taken on the first write, held until close()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = SentenceEmbedder(
                self.settings.embedding_model_path(), batch_size=self.settings.embed_batch_size
            )
        return self._embedder

    def warm_up(self) -> None:
        self.embedder.warm_up()

    @property
    def chat_model(self) -> ChatModel:
        """The model that answers: a local GGUF in its own process, or the server in settings."""
        if self._chat_model is None:
            self._chat_model = open_chat_model(self.settings, self._model_override)
        return self._chat_model

    def use_model(self, path: str | os.PathLike | None) -> None:
        """Answer with another GGUF from now on (None: the one in settings). Loads lazily."""
        if self._chat_model is not None:
            self._chat_model.close()
        self._chat_model = None
        self._model_sha256 = None
        self._model_override = Path(path).expanduser() if path else None

    def load_model(self) -> dict:
        """Load the answering model now; a bad file raises and leaves no half-loaded model.
        The bundled model's SHA-256 is checked before it loads (in the model host)."""
        model = self.chat_model
        try:
            model.warm_up()
        except Exception:
            model.close()
            self._chat_model = None
            raise
        self._model_sha256 = getattr(model, "sha256", None) or self._model_sha256
        return model.info

    def model_sha256(self) -> str | None:
        """SHA-256 of the local model file in use (shown in settings; None for a server);
        hashing a big GGUF takes seconds."""
        path = getattr(self.chat_model, "model_path", None)
        if path is None:
            return None
        if self._model_sha256 is None:
            self._model_sha256 = file_sha256(path)
        return self._model_sha256

    def ask(
        self,
        question: str,
        collection: str = "default",
        k: int | None = None,
        history: Sequence[tuple[str, str]] = (),
        should_stop: Callable[[], bool] | None = None,
        answer_tokens: int | None = None,
    ) -> Iterator[str | Answer]:
        """Yields the answer's text pieces, then the Answer."""
        # The model loads in its own process while the question is searched; a file that is
        # no model at all fails here, before any search.
        self.chat_model.prepare()
        answerer = Answerer(
            lambda query, n: self.search(query, collection, n),
            self.chat_model,
            self.embedder.embed,
            min_probability=self.settings.answer_min_probability,
            temperature=self.settings.temperature,
            excerpts=self.settings.prompt_excerpts,
            **({"answer_tokens": answer_tokens} if answer_tokens else {}),
        )
        return answerer.ask(question, k or self.settings.top_k, history, should_stop)

    def _indexer(self) -> "Indexer":
        from .chunking import ChunkPlan, Chunker
        from .indexer import Indexer

        embedder = self.embedder
        limit = min(self.settings.chunk_tokens, embedder.max_tokens)
        overlap = min(self.settings.chunk_overlap, limit // 2 - 1)
        chunker = Chunker(embedder, max_tokens=limit, overlap=overlap)
        plan = ChunkPlan.for_model(getattr(embedder, "model_path", None), limit, overlap)
        return Indexer(self.catalog, self.store, embedder, chunker, self.parse_pool, plan)

    @property
    def parse_pool(self) -> "ParsePool":
        """Reader processes, started on the first file that needs reading, kept until close()."""
        from .parsing import ParsePool

        if self._parse_pool is None:
            self._parse_pool = ParsePool(self._parse_limits())
        return self._parse_pool

    def _parse_limits(self, **changes) -> "ParseLimits":
        from .parsing import ParseLimits

        s = self.settings
        limits = dict(seconds=s.parse_timeout_s, memory_mb=s.parse_memory_mb, workers=s.parse_workers,
                      ocr=s.ocr, ocr_page_seconds=s.ocr_page_timeout_s)
        return ParseLimits(**{**limits, **changes})

    def index(
        self,
        paths: Sequence[str | os.PathLike],
        collection: str = "default",
        passwords: Sequence[str] = (),
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[Progress | IndexReport]:
        """Yields Progress events, then the IndexReport."""
        _check_collection_name(collection)
        self.lock.acquire()
        return self._indexer().run(paths, collection, passwords, should_stop)

    def index_all(self, paths, collection="default", passwords=()) -> IndexReport:
        report = None
        for event in self.index(paths, collection, passwords):
            if isinstance(event, IndexReport):
                report = event
        assert report is not None
        return report

    def search(self, query: str, collection: str = "default", k: int | None = None) -> list[Hit]:
        row = self.catalog.collection(collection)
        if row is None:
            return []
        if row["embed_model"] and row["embed_model"] != self.embedder.name:
            raise EnclaveError(
                f"Collection {collection!r} was indexed with the embedding model {row['embed_model']}, "
                f"not {self.embedder.name}. Index it again to rebuild it."
            )
        retriever = Retriever(self.catalog, self.store, self.embedder)
        return retriever.search(query, collection, k or self.settings.top_k)

    def documents(self, collection: str | None = None) -> list[DocumentRow]:
        return self.catalog.documents(collection)

    def collections(self) -> list[str]:
        return [row["name"] for row in self.catalog.collections()]

    # --- collections ---------------------------------------------------------------------

    def create_collection(self, name: str) -> None:
        _check_collection_name(name)
        self.lock.acquire()
        if self.catalog.collection(name) is not None:
            raise EnclaveError(f"A collection named {name!r} already exists.")
        self.catalog.ensure_collection(name)

    def rename_collection(self, old: str, new: str) -> None:
        _check_collection_name(new)
        self.lock.acquire()
        if self.catalog.collection(old) is None:
            raise EnclaveError(f"There is no collection named {old!r}.")
        if self.catalog.collection(new) is not None:
            raise EnclaveError(f"A collection named {new!r} already exists.")
        # Vectors live under a store name that does not change: a rename is one UPDATE.
        self.catalog.db.execute("UPDATE collections SET name = ? WHERE name = ?", (new, old))

    def delete_collection(self, name: str) -> int:
        """Forget a collection: its documents, chunks, FTS rows and vectors. Returns documents."""
        row = self.catalog.collection(name)
        if row is None:
            raise EnclaveError(f"There is no collection named {name!r}.")
        docs = self.catalog.documents(name)
        self.lock.acquire()
        with self.catalog.transaction():
            self.catalog.db.execute("DELETE FROM collections WHERE name = ?", (name,))  # cascades
            self.catalog.forget_store(row["store_name"])
        self.store.drop(row["store_name"])
        for doc in docs:
            self.conversations.forget_document(doc.path)
        return len(docs)

    @property
    def conversations(self) -> ConversationStore:
        if self._conversations is None:
            self._conversations = ConversationStore(self.data_dir)
        return self._conversations

    def document_text(self, path: str | os.PathLike) -> str:
        """The document's text as indexed: chunk offsets point into it. Read in a reader
        process of its own, under the same limits as indexing; scanned pages are shown as
        images (see page_words), so OCR is not run again here."""
        from .chunking import document_text
        from .parsing import ParsePool, ReaderNote

        with ParsePool(self._parse_limits(workers=1, ocr=False)) as pool:
            for _, result, _ in pool.map([(str(path), str(path), ())]):
                if isinstance(result, EnclaveError):
                    raise result
                if not isinstance(result, ReaderNote):
                    return document_text(result.pages)[0]
        raise EnclaveError(f"{path} could not be read.")

    def page_words(self, chunk_id: str) -> dict | None:
        """For a chunk OCR read: its page and the page's words with their boxes
        ({"page", "words": [[start, end, x0, y0, x1, y1], ...]}); None otherwise."""
        found = self.catalog.page_words(chunk_id)
        return {"page": found[0], "words": found[1]} if found else None

    def ensure_welcome(self) -> IndexReport | None:
        """On a new data folder, index the bundled guide so the first question has an answer."""
        marker = self.data_dir / WELCOME_MARKER
        if marker.exists() or not WELCOME_DIR.is_dir():
            return None
        report = self.index_all([WELCOME_DIR], collection=WELCOME_COLLECTION)
        marker.write_text("indexed\n")
        return report

    def remove(self, paths: Sequence[str | os.PathLike], collection: str | None = None) -> list[str]:
        """Forget documents (a folder forgets everything under it); returns paths forgotten."""
        from .indexer import forget_document

        self.lock.acquire()
        forgotten = []
        names = [collection] if collection else self.collections()
        for raw in paths:
            path = str(Path(raw).expanduser().resolve())
            for name in names:
                store_name = self.catalog.collection(name)["store_name"]
                docs = self.catalog.documents_under(name, path)
                exact = self.catalog.document(name, path)
                for doc in docs + ([exact] if exact else []):
                    forget_document(self.catalog, self.store, doc, store_name)
                    forgotten.append(doc.path)
        for target in forgotten:
            self.conversations.forget_document(target)
        return forgotten

    def verify(self, repair: bool = False) -> dict:
        """Check the catalog against Chroma and FTS; with repair, make them agree again.

        Every catalog chunk must have exactly one vector, no vector may lack a chunk, and the
        FTS index must match the chunks. Missing vectors are re-embedded from the catalog's
        own chunk text (no file is read), orphans are deleted, FTS is rebuilt.
        """
        from .indexer import recover

        self.lock.acquire()  # recovery and repair write
        report: dict = {"recovered": recover(self.catalog, self.store), "collections": []}
        fts_ok = _fts_ok(self.catalog)
        if not fts_ok and repair:
            self.catalog.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")
            fts_ok = _fts_ok(self.catalog)
        consistent = fts_ok
        for row in self.catalog.collections():
            store_name = row["store_name"]
            wanted = self.catalog.store_chunk_ids(store_name)
            present = set(self.store.all_ids(store_name))
            missing, orphans = sorted(wanted - present), sorted(present - wanted)
            unsettled = [d.path for d in self.catalog.documents(row["name"]) if d.state not in SETTLED]
            entry = {"collection": row["name"], "chunks": len(wanted), "vectors": len(present),
                     "missing_vectors": len(missing), "orphan_vectors": len(orphans),
                     "documents_to_reindex": unsettled}
            if repair and (missing or orphans):
                self.store.delete(store_name, orphans)
                if missing:
                    rows = self.catalog.chunks_by_id(missing)
                    texts = [rows[i].text for i in missing if i in rows]
                    ids = [i for i in missing if i in rows]
                    metas = [{"path": rows[i].path, **({"page": rows[i].page_start} if rows[i].page_start else {})}
                             for i in ids]
                    self.store.add(store_name, ids, self.embedder.embed(texts), metas)
                present = set(self.store.all_ids(store_name))
                entry["repaired"] = True
                entry["vectors"] = len(present)
            entry["consistent"] = present == wanted
            consistent = consistent and entry["consistent"]
            report["collections"].append(entry)
        report["fts_consistent"] = fts_ok
        report["consistent"] = consistent
        return report

    def rebuild_store(self) -> IndexReport:
        """After the user agreed: move the damaged vector store aside (nothing is deleted) and
        index every document the catalog lists again, collection by collection."""
        self.lock.acquire()
        path = self.store.path
        self.store.close()
        if path.exists():
            path.rename(path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"))
        self.store = VectorStore(self.data_dir)
        return self.reindex_catalog()

    def reindex_catalog(self) -> IndexReport:
        """Index every document the catalog lists again, into the store as it is now (after
        a damaged store was replaced by an empty one)."""
        self.lock.acquire()
        total = IndexReport()
        for name in self.collections():
            paths = [d.path for d in self.catalog.documents(name) if os.path.exists(d.path)]
            with self.catalog.transaction():
                self.catalog.forget_store(self.catalog.collection(name)["store_name"])
                for doc in self.catalog.documents(name):
                    # Forget hashes so each file is read and embedded again.
                    self.catalog.db.execute("UPDATE documents SET content_hash = NULL, size = NULL WHERE id = ?", (doc.id,))
            if paths:
                report = self.index_all(paths, name)
                total.indexed += report.indexed
                total.chunks_added += report.chunks_added
                total.failed += report.failed
                total.skipped += report.skipped
        return total

    def stats(self) -> dict:
        docs = self.catalog.documents()
        return {
            "documents": sum(d.state == "indexed" for d in docs),
            "chunks": self.catalog.count_chunks(),
            "collections": len(self.catalog.collections()),
        }

    def close(self) -> None:
        if self._chat_model is not None:
            self._chat_model.close()
        if self._conversations is not None:
            self._conversations.close()
        if self._parse_pool is not None:
            self._parse_pool.close()
        self.catalog.close()
        self.lock.release()


def _fts_ok(catalog: Catalog) -> bool:
    try:
        catalog.db.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
        return True
    except sqlite3.DatabaseError:
        return False


def _check_collection_name(name: str) -> None:
    if not name or len(name) > 200 or name != name.strip():
        raise EnclaveError(f"Invalid collection name {name!r}: use 1 to 200 characters without leading or trailing spaces.")
