"""The engine: one object that owns the catalog, the vector store and the models.

The CLI and the window both drive this API. It is not thread-safe by design: one owner
thread (the window's single engine worker, or the CLI's main thread) calls it.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from typing import TYPE_CHECKING

from .answer import evidence as ev
from .answer.pipeline import Answer, Answerer
from .answer.retrieval import Retriever, fuse_ranked
from .config import Settings, resolve_data_dir
from .conversations import ConversationStore
from .embedding import Embedder, SentenceEmbedder
from .errors import EnclaveError, IndexLocked
from .index import TEAM_PREFIX, Index, LocalIndex
from .index.catalog import Catalog, DocumentRow
from .index.store import VectorStore
from .llm import ChatModel, open_chat_model
from .llm.bundled import file_sha256
from .lock import WriterLock
from .types import SETTLED, Hit, IndexReport, Progress

if TYPE_CHECKING:  # the indexer, parsers and reader pool load on the first index run
    from .ingest.indexer import Indexer
    from .ingest.parsing import ParseLimits, ParsePool

log = logging.getLogger(__name__)

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
        self.local = LocalIndex(self.data_dir)
        self._team: Index | None = None  # opened on the first use of a team collection
        self._team_settled: dict[str, int] = {}  # what connecting to it settled (verify reports it)
        self._embedder = embedder  # built lazily from settings unless given (unit tests)
        self._chat_model: ChatModel | None = None
        self._model_sha256: str | None = None
        self._model_override: Path | None = None
        self._conversations: ConversationStore | None = None
        self._parse_pool: ParsePool | None = None
        self.lock = WriterLock(self.data_dir)  # taken on the first write, held until close()

    @property
    def catalog(self) -> Catalog:
        return self.local.catalog

    @property
    def store(self) -> VectorStore:
        return self.local.store

    @property
    def team(self) -> Index:
        """The team index from settings' [team] section, connected on first use."""
        if self._team is None:
            from .index.team import open_team_index

            self._team = open_team_index(self.settings.team)
            try:  # what a killed member left half written is settled by the next one to connect
                self._team_settled = self._team.recover()
            except EnclaveError as exc:
                log.warning("team journal not settled: %s", exc)
        return self._team

    def reset_team(self) -> None:
        """Forget the team connection (settings changed); the next team call reconnects."""
        if self._team is not None:
            self._team.close()
        self._team = None

    def _index_for(self, collection: str) -> Index:
        """Collections named team:NAME live in the team index, every other one here."""
        return self.team if collection.startswith(TEAM_PREFIX) else self.local

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
            s = self.settings
            # A GGUF given for this run (the CLI's --model) always means a local model.
            local = self._model_override is not None or not s.llm_endpoint
            path = (self._model_override or s.llm_model_path()) if local else None
            from .models.store import check_fit, enforce_policy

            # The administrator's policy, if any: may refuse, or name the default model.
            path = enforce_policy(self.data_dir, path, remote=not local,
                                  chosen=self._model_override is not None or bool(s.llm_model))
            if path is not None:
                check_fit(path, s.context_size)  # the header and /proc/meminfo: milliseconds
            self._chat_model = open_chat_model(
                path,
                n_ctx=s.context_size,
                gpu_layers=None if s.gpu_layers < 0 else s.gpu_layers,
                endpoint="" if local else s.llm_endpoint,
                api_key_env=s.llm_api_key_env,
                endpoint_model=s.llm_endpoint_model,
                timeout_s=s.llm_timeout_s,
                ca_file=s.llm_ca_file,
            )
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
        collection: str | Sequence[str] = "default",
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
            refuse_at=self.settings.model_refusal_probability,
            **({"answer_tokens": answer_tokens} if answer_tokens else {}),
        )
        return answerer.ask(question, k or self.settings.top_k, history, should_stop)

    # --- whole documents ------------------------------------------------------------------

    def find_document(self, path: str | os.PathLike, collection: str | None = None) -> tuple[Index, DocumentRow | None]:
        """The indexed document at `path` (in `collection`, else in any local collection);
        a bare file name finds the one document of that name. (index, None) when none."""
        resolved = str(Path(path).expanduser().resolve())
        names = [collection] if collection else self.collections()
        named = []
        for name in names:
            index = self._index_for(name)
            doc = index.document(name, resolved)
            if doc is not None:
                return index, doc
            named += [(index, d) for d in index.documents(name) if Path(d.path).name == Path(str(path)).name]
        if len(named) == 1 and not os.path.exists(resolved):
            return named[0]
        return self._index_for(collection or "default"), None

    def _whole_document(self, path, collection):
        from .documents.summary import check_ready

        index, doc = self.find_document(path, collection)
        if doc is None and not os.path.exists(str(Path(path).expanduser())):
            raise EnclaveError(f"No such file: {path}, and no indexed document by that name.")
        check_ready(doc, str(path))
        started = time.perf_counter()
        chunks = index.document_chunks(doc)
        check_ready(doc, str(path), chunks)
        vectors = index.vectors(doc.collection, [c.id for c in chunks])
        return doc, chunks, vectors, (time.perf_counter() - started) * 1000

    @property
    def summaries_dir(self) -> Path:
        return self.data_dir / "summaries"

    def summarize(self, path: str | os.PathLike, length: str = "short", collection: str | None = None,
                  use_model: bool = True, should_stop: Callable[[], bool] | None = None) -> Iterator:
        """Summarize one indexed document from what indexing stored. Raises at once, for the
        user, when it cannot (not indexed, still indexing, empty). Yields the extractive
        Summary, then with the model PartProgress events and the summary's text as decoded,
        then the final Summary (final=True). See rag/documents/summary.py."""
        from .documents.summary import summarize

        if length not in ("short", "long"):
            raise EnclaveError(f"The length of a summary is short or long, not {length!r}.")
        doc, chunks, vectors, fetch_ms = self._whole_document(path, collection)
        model = None
        if use_model:
            model = self.chat_model
            model.prepare()  # loads in its own process while the extract is chosen
        return summarize(doc, chunks, vectors, length, model, self.embedder.embed if use_model else None,
                         self.summaries_dir, should_stop, fetch_ms)

    def compare(self, a: str | os.PathLike, b: str | os.PathLike, collection: str | None = None,
                use_model: bool = True, should_stop: Callable[[], bool] | None = None) -> Iterator:
        """Compare two indexed documents (any formats, local or team). Yields the Comparison,
        then with the model the overview's text as decoded and the Comparison again
        (final=True). See rag/documents/compare.py."""
        from .documents.compare import Side, compare_sides

        doc_a, chunks_a, vectors_a, ms_a = self._whole_document(a, collection)
        doc_b, chunks_b, vectors_b, ms_b = self._whole_document(b, collection)
        if doc_a.id == doc_b.id and doc_a.collection == doc_b.collection:
            raise EnclaveError("Those are the same document; name two to compare.")
        model = None
        if use_model:
            model = self.chat_model
            model.prepare()
        result = compare_sides(Side(doc_a.path, chunks_a, vectors_a, doc_a.content_hash),
                               Side(doc_b.path, chunks_b, vectors_b, doc_b.content_hash))
        result.timings["read_ms"] = round(ms_a + ms_b, 1)
        return self._compared(result, model, should_stop)

    def _compared(self, result, model, should_stop):
        from .documents.overview import write_overview

        yield copy.copy(result)  # a snapshot: the final one gains the overview
        if model is not None and not result.same:
            yield from write_overview(result, model, self.embedder.embed, should_stop)
        result.final = True
        yield result

    def _indexer(self, collection: str = "default") -> "Indexer":
        from .ingest.chunking import ChunkPlan, Chunker
        from .ingest.indexer import Indexer

        embedder = self.embedder
        limit = min(self.settings.chunk_tokens, embedder.max_tokens)
        overlap = min(self.settings.chunk_overlap, limit // 2 - 1)
        chunker = Chunker(embedder, max_tokens=limit, overlap=overlap)
        plan = ChunkPlan.for_model(getattr(embedder, "model_path", None), limit, overlap)
        return Indexer(self._index_for(collection), embedder, chunker, self.parse_pool, plan)

    @property
    def parse_pool(self) -> "ParsePool":
        """Reader processes, started on the first file that needs reading, kept until close()."""
        from .ingest.parsing import ParsePool

        if self._parse_pool is None:
            self._parse_pool = ParsePool(self._parse_limits())
        return self._parse_pool

    def _parse_limits(self, **changes) -> "ParseLimits":
        from .ingest.parsing import ParseLimits

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
        indexer = self._indexer(collection)
        return indexer.run(paths, collection, passwords, should_stop)

    def index_all(self, paths, collection="default", passwords=()) -> IndexReport:
        report = None
        for event in self.index(paths, collection, passwords):
            if isinstance(event, IndexReport):
                report = event
        assert report is not None
        return report

    def search(self, query: str, collection: str | Sequence[str] = "default", k: int | None = None) -> list[Hit]:
        """Hybrid search over one collection or several (local and team together), fused
        into one ranked list by reciprocal rank fusion."""
        names = [collection] if isinstance(collection, str) else list(dict.fromkeys(collection))
        k = k or self.settings.top_k
        ranked, vector = [], None
        for name in names:
            index = self._index_for(name)
            row = index.collection(name)
            if row is None:
                continue
            if row["embed_model"] and row["embed_model"] != self.embedder.name:
                remedy = ("Set the team's embedding model in Settings to search it."
                          if name.startswith(TEAM_PREFIX) else "Index it again to rebuild it.")
                raise EnclaveError(
                    f"Collection {name!r} was indexed with the embedding model {row['embed_model']}, "
                    f"not {self.embedder.name}. {remedy}"
                )
            retriever = Retriever(index, self.embedder)
            if vector is None:
                vector = self.embedder.embed([query])[0]
            ranked.append((retriever, name, *retriever.candidates(query, name, k, vector)))
        if not ranked:
            return []
        if len(ranked) == 1:
            retriever, name, vector_hits, keyword_hits = ranked[0]
            return retriever.finish(name, vector, vector_hits, keyword_hits, k)
        return fuse_ranked(ranked, vector, k)

    def relevance(self, query: str, hits: Sequence[Hit]) -> list[str]:
        """The word a source card shows for each hit ("strong", "partial", "weak"): the
        evidence model on that hit alone, as answers label their sources."""
        if not hits:
            return []
        found = ev.gather(query, hits, self.embedder.embed)
        return [ev.relevance_label(p, self.settings.answer_min_probability) for p in found.source_probability]

    def check_collections(self, names: Sequence[str]) -> None:
        """Raise, naming it, when a local collection in `names` does not exist (a search there
        would find nothing and say so, as if the documents held no answer). Team collections
        follow their servers' rules: what a role may see is the server's to say."""
        known = set(self.collections())
        for name in names:
            if not name.startswith(TEAM_PREFIX) and name not in known:
                listed = ", ".join(sorted(known)) or "none yet"
                raise EnclaveError(f"There is no collection named {name!r} (collections: {listed}).")

    def documents(self, collection: str | None = None) -> list[DocumentRow]:
        if collection is not None:
            return self._index_for(collection).documents(collection)
        return self.local.documents(None)

    def collections(self) -> list[str]:
        return [row["name"] for row in self.local.collections()]

    def team_status(self) -> dict:
        """Reach the team database now: where it is and the collections this role sees."""
        return self.team.test_connection()

    def team_collections(self) -> list[str]:
        """The team collections this member's role may see (an error if the servers are down)."""
        return [row["name"] for row in self.team.collections()]

    # --- collections ---------------------------------------------------------------------

    def create_collection(self, name: str) -> None:
        _check_collection_name(name)
        self.lock.acquire()
        self._index_for(name).create_collection(name)

    def rename_collection(self, old: str, new: str) -> None:
        _check_collection_name(new)
        if old.startswith(TEAM_PREFIX) or new.startswith(TEAM_PREFIX):
            raise EnclaveError("Team collections are renamed by the team's administrator, on the server.")
        self.lock.acquire()
        self.local.rename_collection(old, new)

    def delete_collection(self, name: str) -> int:
        """Forget a collection: its documents, chunks, FTS rows and vectors. Returns documents."""
        if name.startswith(TEAM_PREFIX):
            raise EnclaveError("Team collections are deleted by the team's administrator, on the server.")
        if self.local.collection(name) is None:
            raise EnclaveError(f"There is no collection named {name!r}.")
        self.lock.acquire()
        docs = self.local.delete_collection(name)
        for doc in docs:
            self.conversations.forget_document(doc.path)
        return len(docs)

    @property
    def conversations(self) -> ConversationStore:
        if self._conversations is None:
            self._conversations = ConversationStore(self.data_dir)
            # A question still waiting for its answer when the history opens was cut off with
            # the engine before this one. Closing it is a write, and only the folder's writer
            # may: where another process holds the lock, its own answer may be under way.
            if self._conversations.unanswered():
                try:
                    self.lock.acquire()
                except IndexLocked:
                    pass
                else:
                    self._conversations.close_unanswered()
        return self._conversations

    def document_text(self, path: str | os.PathLike) -> str:
        """The document's text as indexed: chunk offsets point into it. Read in a reader
        process of its own, under the same limits as indexing; scanned pages are shown as
        images (see page_words), so OCR is not run again here."""
        from .ingest.chunking import document_text
        from .ingest.parsing import ParsePool, ReaderNote

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
        found = self.local.page_words(chunk_id)
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
        self.lock.acquire()
        forgotten, hashes = [], []
        names = [collection] if collection else self.collections()
        for raw in paths:
            path = str(Path(raw).expanduser().resolve())
            for name in names:
                index = self._index_for(name)
                docs = index.documents_under(name, path)
                exact = index.document(name, path)
                for doc in docs + ([exact] if exact else []):
                    index.forget_document(doc)
                    forgotten.append(doc.path)
                    hashes.append(doc.content_hash)
        for target in forgotten:
            self.conversations.forget_document(target)
        from .documents.summary import forget_cached

        for doc in hashes:
            forget_cached(self.summaries_dir, doc)
        return forgotten

    def verify(self, repair: bool = False, team: bool | None = None) -> dict:
        """Check each catalog against its vectors (and FTS); with repair, make them agree.

        Every catalog chunk must have exactly one vector, no vector may lack a chunk, and the
        FTS index must match the chunks. Missing vectors are re-embedded from the catalog's
        own chunk text (no file is read), orphans are deleted, FTS is rebuilt. Team
        collections are checked too when settings name team servers (team=None) or when
        asked (team=True).
        """
        self.lock.acquire()  # recovery and repair write
        report = self.local.verify(self.embedder.embed, repair)
        if team or (team is None and self.settings.team.configured):
            try:
                shared = self.team.verify(self.embedder.embed, repair)
            except EnclaveError as exc:  # the local index was still checked
                report["team_error"] = str(exc)
            else:
                report["collections"] += shared["collections"]
                settled, self._team_settled = self._team_settled, {}
                report["team_recovered"] = {key: n + settled.get(key, 0) for key, n in shared["recovered"].items()}
        report["consistent"] = report["fts_consistent"] and all(c["consistent"] for c in report["collections"])
        return report

    def rebuild_store(self) -> IndexReport:
        """After the user agreed: move the damaged vector store aside (nothing is deleted) and
        index every document the catalog lists again, collection by collection."""
        self.lock.acquire()
        path = self.local.reset_store()
        if path.exists():
            path.rename(path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"))
        self.local.reopen_store()
        return self.reindex_catalog()

    def reindex_catalog(self) -> IndexReport:
        """Index every document the catalog lists again, into the store as it is now (after
        a damaged store was replaced by an empty one)."""
        self.lock.acquire()
        total = IndexReport()
        for name in self.collections():
            paths = [d.path for d in self.local.documents(name) if os.path.exists(d.path)]
            self.local.forget_hashes(name)
            if paths:
                report = self.index_all(paths, name)
                total.indexed += report.indexed
                total.chunks_added += report.chunks_added
                total.failed += report.failed
                total.skipped += report.skipped
        return total

    def stats(self) -> dict:
        docs = self.local.documents()
        return {
            "documents": sum(d.state == "indexed" for d in docs),
            "chunks": self.local.count_chunks(),
            "collections": len(self.local.collections()),
        }

    def close(self) -> None:
        if self._chat_model is not None:
            self._chat_model.close()
        if self._conversations is not None:
            self._conversations.close()
        if self._parse_pool is not None:
            self._parse_pool.close()
        if self._team is not None:
            self._team.close()
        self.local.close()
        self.lock.release()


def _check_collection_name(name: str) -> None:
    if not name or len(name) > 200 or name != name.strip():
        raise EnclaveError(f"Invalid collection name {name!r}: use 1 to 200 characters without leading or trailing spaces.")
