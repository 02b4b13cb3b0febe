"""The local index: the SQLite catalog (with FTS5) and an embedded Chroma store in the data
folder. Nothing in it leaves this machine."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .catalog import Catalog, ChunkRow, DocumentRow
from ..errors import EnclaveError
from .store import VectorStore
from ..types import SETTLED
from .base import DocumentWrite, vector_metadata
from .query import fts_query

log = logging.getLogger(__name__)


class LocalIndex:
    kind = "local"

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.catalog = Catalog(data_dir)
        self.store = VectorStore(data_dir)

    def owns(self, collection: str) -> bool:
        return True

    # --- collections -------------------------------------------------------------------

    def collection(self, name: str) -> Mapping | None:
        return self.catalog.collection(name)

    def collections(self) -> list[Mapping]:
        return self.catalog.collections()

    def create_collection(self, name: str) -> None:
        if self.catalog.collection(name) is not None:
            raise EnclaveError(f"A collection named {name!r} already exists.")
        self.catalog.ensure_collection(name)

    def rename_collection(self, old: str, new: str) -> None:
        if self.catalog.collection(old) is None:
            raise EnclaveError(f"There is no collection named {old!r}.")
        if self.catalog.collection(new) is not None:
            raise EnclaveError(f"A collection named {new!r} already exists.")
        # Vectors live under a store name that does not change: a rename is one UPDATE.
        self.catalog.db.execute("UPDATE collections SET name = ? WHERE name = ?", (new, old))

    def delete_collection(self, name: str) -> list[DocumentRow]:
        """Forget a collection: its documents, chunks, FTS rows and vectors."""
        row = self.catalog.collection(name)
        if row is None:
            raise EnclaveError(f"There is no collection named {name!r}.")
        docs = self.catalog.documents(name)
        with self.catalog.transaction():
            self.catalog.db.execute("DELETE FROM collections WHERE name = ?", (name,))  # cascades
            self.catalog.forget_store(row["store_name"])
        self.store.drop(row["store_name"])
        return docs

    def prepare_collection(self, name: str, model: str, dim: int) -> None:
        """Create the collection, or rebuild it when the embedding model changed."""
        row = self.catalog.ensure_collection(name)
        if row["embed_model"] and (row["embed_model"], row["embed_dim"]) != (model, dim):
            log.warning("collection %s was built with %s; rebuilding for %s", name, row["embed_model"], model)
            self.store.drop(row["store_name"])
            with self.catalog.transaction():
                for doc in self.catalog.documents(name):
                    self.catalog.replace_chunks(doc.id, row["store_name"], [])
                    # Forget the hash so every file is parsed and embedded again.
                    self.catalog.upsert_document(name, doc.path, state="stale",
                                                 reason="embedding model changed; index it again")
                self.catalog.forget_store(row["store_name"])
        self.catalog.set_embedding(name, model, dim)

    def _store_name(self, collection: str) -> str:
        return self.catalog.collection(collection)["store_name"]

    # --- documents ---------------------------------------------------------------------

    def document(self, collection: str, path: str) -> DocumentRow | None:
        return self.catalog.document(collection, path)

    def documents(self, collection: str | None = None) -> list[DocumentRow]:
        return self.catalog.documents(collection)

    def documents_under(self, collection: str, folder: str) -> list[DocumentRow]:
        return self.catalog.documents_under(collection, folder)

    def touch_document(self, doc_id: int, size: int, mtime_ns: int) -> None:
        self.catalog.touch_document(doc_id, size, mtime_ns)

    def record_outcome(self, collection, path, *, state, reason, content_hash, size, mtime_ns, pages) -> int:
        """A file that yields no chunks (skipped, failed): record why, drop any old chunks."""
        store_name = self._store_name(collection)
        with self.catalog.transaction():
            doc_id = self.catalog.upsert_document(
                collection, path, state=state, reason=reason, content_hash=content_hash,
                size=size, mtime_ns=mtime_ns, pages=pages,
            )
            stale = self.catalog.replace_chunks(doc_id, store_name, [])
            self.catalog.replace_page_words(doc_id, {})
        self._delete_vectors(store_name, stale)
        return len(stale)

    def write_documents(self, collection: str, docs: Sequence[DocumentWrite], vectors: np.ndarray) -> int:
        """Journal the vectors, write them, then commit the chunks and settle the journal in
        one transaction; returns the number of old chunks dropped."""
        store_name = self._store_name(collection)
        ids = [c.id for d in docs for c in d.chunks]
        metadatas = [vector_metadata(d.path, c) for d in docs for c in d.chunks]
        with self.catalog.transaction():
            self.catalog.journal_adds(store_name, ids)
        self.store.add(store_name, ids, vectors, metadatas)
        stale: list[str] = []
        with self.catalog.transaction():
            self.catalog.settle_adds(store_name, ids)
            for d in docs:
                doc_id = self.catalog.upsert_document(
                    collection, d.path, state="indexed", content_hash=d.content_hash,
                    size=d.size, mtime_ns=d.mtime_ns, kind=d.kind, pages=d.pages,
                )
                stale += self.catalog.replace_chunks(doc_id, store_name, d.chunks)
                self.catalog.replace_page_words(doc_id, d.page_words)
        self._delete_vectors(store_name, stale)
        return len(stale)

    def forget_document(self, doc: DocumentRow) -> int:
        """Remove a document from the catalog and FTS (journaled), then its vectors."""
        store_name = self._store_name(doc.collection)
        with self.catalog.transaction():
            ids = self.catalog.delete_document(doc.id, store_name)
        self._delete_vectors(store_name, ids)
        return len(ids)

    def _delete_vectors(self, store_name: str, ids: Sequence[str]) -> None:
        """Delete vectors whose deletion the catalog journaled, then settle the journal."""
        if ids:
            self.store.delete(store_name, ids)
            self.catalog.clear_pending(store_name, ids)

    def recover(self) -> dict[str, int]:
        """Finish what an interrupted run journaled: take out vectors whose chunks never
        committed, and make the deletions it had promised. Idempotent."""
        added = deleted = 0
        for store_name, ids in self.catalog.unsettled_adds().items():
            self.store.delete(store_name, ids)
            with self.catalog.transaction():
                self.catalog.settle_adds(store_name, ids)
            added += len(ids)
        with self.catalog.transaction():  # adds whose chunks did commit need no undoing
            self.catalog.db.execute("DELETE FROM pending_adds WHERE chunk_id IN (SELECT id FROM chunks)")
        for store_name, ids in self.catalog.pending_deletes().items():
            self._delete_vectors(store_name, ids)
            deleted += len(ids)
        return {"vectors_taken_back": added, "deletions_finished": deleted}

    def forget_hashes(self, collection: str) -> None:
        """Make every document of a collection be read and embedded again (a store rebuild)."""
        with self.catalog.transaction():
            self.catalog.forget_store(self._store_name(collection))
            for doc in self.catalog.documents(collection):
                self.catalog.db.execute("UPDATE documents SET content_hash = NULL, size = NULL WHERE id = ?",
                                        (doc.id,))

    def reset_store(self) -> Path:
        """Close the vector store and open an empty one at the same place; returns its path."""
        path = self.store.path
        self.store.close()
        return path

    def reopen_store(self) -> None:
        self.store = VectorStore(self.data_dir)

    # --- reading -----------------------------------------------------------------------

    def vector_search(self, collection: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        return self.store.query(self._store_name(collection), vector, k)

    def keyword_search(self, collection: str, query: str, k: int) -> list[tuple[str, float]]:
        match = fts_query(query)
        if match is None:
            return []
        return self.catalog.keyword_search(collection, match, k)

    def candidates(self, collection: str, query: str, vector: np.ndarray, n: int):
        return self.vector_search(collection, vector, n), self.keyword_search(collection, query, n)

    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, ChunkRow]:
        return self.catalog.chunks_by_id(list(ids))

    def document_chunks(self, doc: DocumentRow) -> list[ChunkRow]:
        return self.catalog.document_chunks(doc.id)

    def vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return self.store.vectors(self._store_name(collection), ids)

    def page_words(self, chunk_id: str) -> tuple[int, list] | None:
        return self.catalog.page_words(chunk_id)

    def count_chunks(self, collection: str | None = None) -> int:
        return self.catalog.count_chunks(collection)

    # --- maintenance -------------------------------------------------------------------

    def verify(self, embed, repair: bool = False) -> dict:
        """Every catalog chunk must have exactly one vector, no vector may lack a chunk, and
        the FTS index must match the chunks. Missing vectors are re-embedded (with `embed`)
        from the catalog's own chunk text, orphans are deleted, FTS is rebuilt."""
        report: dict = {"recovered": self.recover(), "collections": []}
        fts_ok = _fts_ok(self.catalog)
        if not fts_ok and repair:
            self.catalog.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")
            fts_ok = _fts_ok(self.catalog)
        for row in self.catalog.collections():
            report["collections"].append(
                verify_store(self, self.store, row["name"], row["store_name"],
                             self.catalog.store_chunk_ids(row["store_name"]), embed, repair)
            )
        report["fts_consistent"] = fts_ok
        return report

    def close(self) -> None:
        self.catalog.close()


def verify_store(index, store, name: str, store_name: str, wanted: set[str], embed, repair: bool) -> dict:
    """Compare a collection's catalog chunk ids with its vectors; with repair, make them agree."""
    present = set(store.all_ids(store_name))
    missing, orphans = sorted(wanted - present), sorted(present - wanted)
    unsettled = [d.path for d in index.documents(name) if d.state not in SETTLED]
    entry = {"collection": name, "chunks": len(wanted), "vectors": len(present),
             "missing_vectors": len(missing), "orphan_vectors": len(orphans),
             "documents_to_reindex": unsettled}
    if repair and (missing or orphans):
        store.delete(store_name, orphans)
        if missing:
            rows = index.chunks_by_id(missing)
            ids = [i for i in missing if i in rows]
            texts = [rows[i].text for i in ids]
            metas = [{"path": rows[i].path, **({"page": rows[i].page_start} if rows[i].page_start else {})}
                     for i in ids]
            store.add(store_name, ids, embed(texts), metas)
        present = set(store.all_ids(store_name))
        entry["repaired"] = True
        entry["vectors"] = len(present)
    entry["consistent"] = present == wanted
    return entry


def _fts_ok(catalog: Catalog) -> bool:
    try:
        catalog.db.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
        return True
    except sqlite3.DatabaseError:
        return False
