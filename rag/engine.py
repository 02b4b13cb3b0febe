"""The engine: one object that owns the catalog, the vector store and the models.

The CLI and the window both drive this API. It is not thread-safe by design: one owner
thread (the window's single engine worker, or the CLI's main thread) calls it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .answer import Answer, Answerer
from .catalog import Catalog, DocumentRow
from .chunking import Chunker
from .config import Settings, resolve_data_dir
from .embedding import Embedder, SentenceEmbedder
from .errors import EnclaveError
from .generation import Generator
from .indexer import Indexer, IndexReport, Progress
from .retrieval import Retriever
from .store import VectorStore
from .types import Hit


class Engine:
    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
    ):
        self.data_dir = resolve_data_dir(data_dir)
        self.settings = settings or Settings.load(self.data_dir)
        self.catalog = Catalog(self.data_dir)
        self.store = VectorStore(self.data_dir)
        self._embedder = embedder  # built lazily from settings unless given (unit tests)
        self._generator: Generator | None = None
        self._model_override: Path | None = None

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
    def generator(self) -> Generator:
        if self._generator is None:
            s = self.settings
            path = self._model_override or s.llm_model_path()
            self._generator = Generator(
                path, n_ctx=s.context_size, gpu_layers=None if s.gpu_layers < 0 else s.gpu_layers
            )
        return self._generator

    def use_model(self, path: str | os.PathLike | None) -> None:
        """Answer with another GGUF from now on (None: the one in settings). Loads lazily."""
        if self._generator is not None:
            self._generator.close()
        self._generator = None
        self._model_override = Path(path).expanduser() if path else None

    def load_model(self) -> dict:
        """Load the answering model now; a bad file raises and leaves no half-loaded model."""
        generator = self.generator
        try:
            generator.warm_up()
        except Exception:
            self._generator = None
            raise
        return generator.info

    def ask(
        self,
        question: str,
        collection: str = "default",
        k: int | None = None,
        history: Sequence[tuple[str, str]] = (),
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[str | Answer]:
        """Yields the answer's text pieces, then the Answer."""
        self.load_model()
        answerer = Answerer(
            lambda query, n: self.search(query, collection, n),
            self.generator,
            threshold=self.settings.refusal_threshold,
            temperature=self.settings.temperature,
        )
        return answerer.ask(question, k or self.settings.top_k, history, should_stop)

    def _indexer(self) -> Indexer:
        embedder = self.embedder
        limit = min(self.settings.chunk_tokens, embedder.max_tokens)
        chunker = Chunker(embedder, max_tokens=limit, overlap=min(self.settings.chunk_overlap, limit // 2 - 1))
        return Indexer(self.catalog, self.store, embedder, chunker)

    def index(
        self,
        paths: Sequence[str | os.PathLike],
        collection: str = "default",
        passwords: Sequence[str] = (),
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[Progress | IndexReport]:
        """Yields Progress events, then the IndexReport."""
        _check_collection_name(collection)
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

    def remove(self, paths: Sequence[str | os.PathLike], collection: str | None = None) -> list[str]:
        """Forget documents (a folder forgets everything under it); returns paths forgotten."""
        embedder_free = Indexer(self.catalog, self.store, embedder=None, chunker=None)  # type: ignore[arg-type]
        forgotten = []
        names = [collection] if collection else self.collections()
        for raw in paths:
            path = str(Path(raw).expanduser().resolve())
            for name in names:
                targets = [d.path for d in self.catalog.documents_under(name, path)]
                if self.catalog.document(name, path):
                    targets.append(path)
                for target in targets:
                    if embedder_free.forget(name, target) is not None:
                        forgotten.append(target)
        return forgotten

    def stats(self) -> dict:
        docs = self.catalog.documents()
        return {
            "documents": sum(d.state == "indexed" for d in docs),
            "chunks": self.catalog.count_chunks(),
            "collections": len(self.catalog.collections()),
        }

    def close(self) -> None:
        if self._generator is not None:
            self._generator.close()
        self.catalog.close()


def _check_collection_name(name: str) -> None:
    if not name or len(name) > 200 or name != name.strip():
        raise EnclaveError(f"Invalid collection name {name!r}: use 1 to 200 characters without leading or trailing spaces.")
