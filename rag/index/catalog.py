"""The SQLite catalog: the source of truth for what is indexed.

Documents, their chunks and an FTS5 index over the chunks live here; the Chroma store only
holds vectors keyed by chunk id. Anything in Chroma that the catalog does not list is never
returned to a user. Deletions from Chroma are journaled in `pending_deletes` inside the same
transaction that drops the chunks, so an interrupted run can finish them on the next start.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import IndexDamaged
from ..types import Chunk

CATALOG_FILE = "catalog.sqlite3"

# Numbered migrations: index i brings the schema from version i to i + 1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE collections (
        name        TEXT PRIMARY KEY,
        store_name  TEXT NOT NULL UNIQUE,
        embed_model TEXT,
        embed_dim   INTEGER,
        created_at  REAL NOT NULL
    );
    CREATE TABLE documents (
        id           INTEGER PRIMARY KEY,
        collection   TEXT NOT NULL REFERENCES collections(name)
                         ON UPDATE CASCADE ON DELETE CASCADE,
        path         TEXT NOT NULL,
        content_hash TEXT,
        size         INTEGER,
        mtime_ns     INTEGER,
        kind         TEXT,
        pages        INTEGER,
        state        TEXT NOT NULL,
        reason       TEXT,
        chunks       INTEGER NOT NULL DEFAULT 0,
        updated_at   REAL NOT NULL,
        UNIQUE (collection, path)
    );
    CREATE TABLE chunks (
        rowid       INTEGER PRIMARY KEY,
        id          TEXT NOT NULL UNIQUE,
        document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        idx         INTEGER NOT NULL,
        text        TEXT NOT NULL,
        page_start  INTEGER,
        page_end    INTEGER,
        char_start  INTEGER NOT NULL,
        char_end    INTEGER NOT NULL,
        tokens      INTEGER NOT NULL
    );
    CREATE INDEX chunks_document ON chunks(document_id);
    CREATE VIRTUAL TABLE chunks_fts USING fts5(
        text, content='chunks', content_rowid='rowid',
        tokenize='porter unicode61 remove_diacritics 2'
    );
    -- Triggers keep FTS in the same transaction as the chunks, so the two never drift.
    CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text) VALUES (new.rowid, new.text);
    END;
    CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    END;
    CREATE TABLE pending_deletes (
        store_name TEXT NOT NULL,
        chunk_id   TEXT NOT NULL,
        PRIMARY KEY (store_name, chunk_id)
    );
    """,
    # 2: vectors about to be written are journaled first, so a kill between writing them and
    # committing their chunks leaves a record of what to take back out of Chroma.
    """
    CREATE TABLE pending_adds (
        store_name TEXT NOT NULL,
        chunk_id   TEXT NOT NULL,
        PRIMARY KEY (store_name, chunk_id)
    );
    """,
    # 3: a chunk names its citation unit where that is not a page ("slide 3", "sheet 'Q3',
    # rows 2–40"); pages read by OCR keep each word's box, to highlight it on the page image.
    """
    ALTER TABLE chunks ADD COLUMN unit TEXT;
    CREATE TABLE page_words (
        document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        page        INTEGER NOT NULL,
        words       TEXT NOT NULL,
        PRIMARY KEY (document_id, page)
    );
    """,
]


@dataclass
class DocumentRow:
    id: int
    collection: str
    path: str
    content_hash: str | None
    size: int | None
    mtime_ns: int | None
    kind: str | None
    pages: int | None
    state: str
    reason: str | None
    chunks: int

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "collection": self.collection,
            "state": self.state,
            "reason": self.reason,
            "pages": self.pages,
            "chunks": self.chunks,
        }


@dataclass
class ChunkRow:
    id: str
    path: str
    collection: str
    text: str
    page_start: int | None
    page_end: int | None
    char_start: int
    char_end: int
    unit: str | None = None


def store_name_for(collection: str) -> str:
    # Chroma restricts collection names; a hash keeps any user-chosen name legal and renames cheap.
    return "enclave_" + hashlib.sha1(f"{collection}:{time.time_ns()}".encode()).hexdigest()[:16]


class Catalog:
    """One connection per owner thread; the engine owns it."""

    def __init__(self, data_dir: Path):
        self.path = data_dir / CATALOG_FILE
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise IndexDamaged(
                f"The index catalog {self.path} is damaged ({exc}). "
                "Move the data folder aside and index your documents again."
            ) from exc
        os.chmod(self.path, 0o600)

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number in range(version, len(MIGRATIONS)):
            with self.transaction():
                for statement in _split_sql(MIGRATIONS[number]):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number + 1}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # --- collections -------------------------------------------------------------------

    def collection(self, name: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM collections WHERE name = ?", (name,)).fetchone()

    def ensure_collection(self, name: str) -> sqlite3.Row:
        row = self.collection(name)
        if row is None:
            self.db.execute(
                "INSERT INTO collections(name, store_name, created_at) VALUES (?, ?, ?)",
                (name, store_name_for(name), time.time()),
            )
            row = self.collection(name)
        return row

    def collections(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM collections ORDER BY name").fetchall()

    def set_embedding(self, name: str, model: str, dim: int) -> None:
        self.db.execute(
            "UPDATE collections SET embed_model = ?, embed_dim = ? WHERE name = ?", (model, dim, name)
        )

    # --- documents ---------------------------------------------------------------------

    def document(self, collection: str, path: str) -> DocumentRow | None:
        row = self.db.execute(
            "SELECT * FROM documents WHERE collection = ? AND path = ?", (collection, path)
        ).fetchone()
        return _doc(row) if row else None

    def documents(self, collection: str | None = None) -> list[DocumentRow]:
        if collection is None:
            rows = self.db.execute("SELECT * FROM documents ORDER BY collection, path")
        else:
            rows = self.db.execute(
                "SELECT * FROM documents WHERE collection = ? ORDER BY path", (collection,)
            )
        return [_doc(r) for r in rows]

    def documents_under(self, collection: str, folder: str) -> list[DocumentRow]:
        prefix = folder.rstrip(os.sep) + os.sep
        rows = self.db.execute(
            "SELECT * FROM documents WHERE collection = ? AND substr(path, 1, ?) = ?",
            (collection, len(prefix), prefix),
        )
        return [_doc(r) for r in rows]

    def upsert_document(
        self,
        collection: str,
        path: str,
        *,
        state: str,
        reason: str | None = None,
        content_hash: str | None = None,
        size: int | None = None,
        mtime_ns: int | None = None,
        kind: str | None = None,
        pages: int | None = None,
    ) -> int:
        """Record a document's outcome. Its chunks are replaced separately by replace_chunks."""
        self.db.execute(
            """
            INSERT INTO documents(collection, path, content_hash, size, mtime_ns, kind, pages,
                                  state, reason, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(collection, path) DO UPDATE SET
                content_hash = excluded.content_hash, size = excluded.size,
                mtime_ns = excluded.mtime_ns, kind = excluded.kind, pages = excluded.pages,
                state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at
            """,
            (collection, path, content_hash, size, mtime_ns, kind, pages, state, reason, time.time()),
        )
        return self.db.execute(
            "SELECT id FROM documents WHERE collection = ? AND path = ?", (collection, path)
        ).fetchone()[0]

    def touch_document(self, doc_id: int, size: int, mtime_ns: int) -> None:
        self.db.execute(
            "UPDATE documents SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, doc_id)
        )

    def chunk_ids(self, doc_id: int) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM chunks WHERE document_id = ?", (doc_id,))]

    def replace_chunks(self, doc_id: int, store_name: str, chunks: Sequence[Chunk]) -> list[str]:
        """Swap a document's chunks; returns the old ids no longer used (journaled for Chroma)."""
        old = set(self.chunk_ids(doc_id))
        new_ids = {c.id for c in chunks}
        self.db.execute("DELETE FROM chunks WHERE document_id = ?", (doc_id,))
        self.db.executemany(
            """INSERT INTO chunks(id, document_id, idx, text, page_start, page_end,
                                  char_start, char_end, tokens, unit)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                (c.id, doc_id, c.index, c.text, c.page_start, c.page_end, c.char_start, c.char_end, c.tokens,
                 c.unit)
                for c in chunks
            ],
        )
        self.db.execute("UPDATE documents SET chunks = ? WHERE id = ?", (len(chunks), doc_id))
        stale = sorted(old - new_ids)
        self.journal_deletes(store_name, stale)
        return stale

    def replace_page_words(self, doc_id: int, pages: dict[int, list]) -> None:
        """Swap the word boxes of a document's pages read by OCR: page -> [[start, end,
        x0, y0, x1, y1], ...], offsets into the document's text, boxes in page fractions."""
        self.db.execute("DELETE FROM page_words WHERE document_id = ?", (doc_id,))
        self.db.executemany(
            "INSERT INTO page_words(document_id, page, words) VALUES (?, ?, ?)",
            [(doc_id, page, json.dumps(words, separators=(",", ":"))) for page, words in pages.items()],
        )

    def page_words(self, chunk_id: str) -> tuple[int, list] | None:
        """The page of a chunk and the boxes of the words OCR read on it, if it was read so."""
        row = self.db.execute(
            """SELECT w.page, w.words FROM chunks c JOIN page_words w
               ON w.document_id = c.document_id AND w.page = c.page_start WHERE c.id = ?""",
            (chunk_id,),
        ).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def delete_document(self, doc_id: int, store_name: str) -> list[str]:
        ids = self.chunk_ids(doc_id)
        self.journal_deletes(store_name, ids)
        self.db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        return ids

    def journal_deletes(self, store_name: str, ids: Iterable[str]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO pending_deletes(store_name, chunk_id) VALUES (?, ?)",
            [(store_name, i) for i in ids],
        )

    def pending_deletes(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for row in self.db.execute("SELECT store_name, chunk_id FROM pending_deletes"):
            out.setdefault(row[0], []).append(row[1])
        return out

    def clear_pending(self, store_name: str, ids: Sequence[str]) -> None:
        self.db.executemany(
            "DELETE FROM pending_deletes WHERE store_name = ? AND chunk_id = ?",
            [(store_name, i) for i in ids],
        )

    def forget_store(self, store_name: str) -> None:
        """The store was dropped whole: nothing journaled for it is left to delete."""
        self.db.execute("DELETE FROM pending_deletes WHERE store_name = ?", (store_name,))
        self.db.execute("DELETE FROM pending_adds WHERE store_name = ?", (store_name,))

    def journal_adds(self, store_name: str, ids: Sequence[str]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO pending_adds(store_name, chunk_id) VALUES (?, ?)",
            [(store_name, i) for i in ids],
        )

    def settle_adds(self, store_name: str, ids: Sequence[str]) -> None:
        self.db.executemany(
            "DELETE FROM pending_adds WHERE store_name = ? AND chunk_id = ?", [(store_name, i) for i in ids]
        )

    def unsettled_adds(self) -> dict[str, list[str]]:
        """Journaled vector ids whose chunks never reached the catalog."""
        out: dict[str, list[str]] = {}
        rows = self.db.execute(
            "SELECT p.store_name, p.chunk_id FROM pending_adds p LEFT JOIN chunks c ON c.id = p.chunk_id "
            "WHERE c.id IS NULL"
        )
        for store_name, chunk_id in rows:
            out.setdefault(store_name, []).append(chunk_id)
        return out

    def store_chunk_ids(self, store_name: str) -> set[str]:
        rows = self.db.execute(
            """SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id
               JOIN collections k ON k.name = d.collection WHERE k.store_name = ?""",
            (store_name,),
        )
        return {r[0] for r in rows}

    # --- chunks for retrieval ----------------------------------------------------------

    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, ChunkRow]:
        out: dict[str, ChunkRow] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(
                f"""SELECT c.id, d.path, d.collection, c.text, c.page_start, c.page_end,
                           c.char_start, c.char_end, c.unit
                    FROM chunks c JOIN documents d ON d.id = c.document_id
                    WHERE c.id IN ({marks}) AND d.state = 'indexed'""",
                part,
            )
            for r in rows:
                out[r[0]] = ChunkRow(*r)
        return out

    def document_chunks(self, doc_id: int) -> list[ChunkRow]:
        """A document's chunks in document order (whole-document tasks read them all)."""
        rows = self.db.execute(
            """SELECT c.id, d.path, d.collection, c.text, c.page_start, c.page_end,
                      c.char_start, c.char_end, c.unit
               FROM chunks c JOIN documents d ON d.id = c.document_id
               WHERE c.document_id = ? ORDER BY c.idx""",
            (doc_id,),
        )
        return [ChunkRow(*r) for r in rows]

    def keyword_search(self, collection: str, match: str, limit: int) -> list[tuple[str, float]]:
        """BM25 over chunk text; returns (chunk id, score) with higher = better."""
        rows = self.db.execute(
            """SELECT c.id, -bm25(chunks_fts) AS score
               FROM chunks_fts JOIN chunks c ON c.rowid = chunks_fts.rowid
               JOIN documents d ON d.id = c.document_id
               WHERE chunks_fts MATCH ? AND d.collection = ? AND d.state = 'indexed'
               ORDER BY bm25(chunks_fts) LIMIT ?""",
            (match, collection, limit),
        )
        return [(r[0], r[1]) for r in rows]

    def count_chunks(self, collection: str | None = None) -> int:
        if collection is None:
            return self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return self.db.execute(
            "SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.collection = ?",
            (collection,),
        ).fetchone()[0]


def _doc(row: sqlite3.Row) -> DocumentRow:
    return DocumentRow(
        id=row["id"],
        collection=row["collection"],
        path=row["path"],
        content_hash=row["content_hash"],
        size=row["size"],
        mtime_ns=row["mtime_ns"],
        kind=row["kind"],
        pages=row["pages"],
        state=row["state"],
        reason=row["reason"],
        chunks=row["chunks"],
    )


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (which contain ';') whole."""
    statements, current = [], []
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line)
        text = "\n".join(current)
        if stripped.endswith(";") and (not text.lstrip().upper().startswith("CREATE TRIGGER") or stripped.upper() == "END;"):
            statements.append(text)
            current = []
    return statements
