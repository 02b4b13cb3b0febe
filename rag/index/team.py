"""The team index: the catalog in PostgreSQL, vectors on a Chroma server.

A member's Enclave reads, chunks and embeds files on their own machine and writes chunks to
PostgreSQL and vectors to Chroma. PostgreSQL is the source of truth, as the SQLite catalog
is locally: a vector is only ever returned for a chunk the catalog lists and row-level
security lets this member's role see. Writes are journaled per writer; each writer holds a
session advisory lock on its writer id, so any client can tell a dead writer's journal (its
lock is free) from a live one's and settle it: vectors whose chunks never committed are
taken back, promised deletions are made. Two writers of the same document serialize on a
transaction lock per (collection, path); chunk ids derive from content and path, so they
end with one copy.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

import numpy as np

from .catalog import ChunkRow, DocumentRow
from ..addresses import dsn_host
from ..errors import EnclaveError
from .store import VectorStore
from .base import DocumentWrite
from .local import verify_store
from .query import query_words

log = logging.getLogger(__name__)

PREFIX = "team:"
MEMBER_ROLE = "enclave_member"

# Numbered migrations, run by the administrator (`enclave-cli team-admin migrate`); index i
# brings the schema from version i to i + 1. Members never run DDL.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE enclave_collections (
        name        TEXT PRIMARY KEY,
        store_name  TEXT NOT NULL UNIQUE,
        embed_model TEXT,
        embed_dim   INTEGER,
        created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE enclave_grants (
        collection TEXT NOT NULL REFERENCES enclave_collections(name) ON UPDATE CASCADE ON DELETE CASCADE,
        role_name  TEXT NOT NULL,
        can_write  BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (collection, role_name)
    );
    CREATE TABLE enclave_documents (
        id           BIGSERIAL PRIMARY KEY,
        collection   TEXT NOT NULL REFERENCES enclave_collections(name) ON UPDATE CASCADE ON DELETE CASCADE,
        path         TEXT NOT NULL,
        content_hash TEXT,
        size         BIGINT,
        mtime_ns     BIGINT,
        kind         TEXT,
        pages        INTEGER,
        state        TEXT NOT NULL,
        reason       TEXT,
        chunks       INTEGER NOT NULL DEFAULT 0,
        updated_by   TEXT NOT NULL DEFAULT session_user,
        updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (collection, path)
    );
    CREATE TABLE enclave_chunks (
        id          TEXT PRIMARY KEY,
        document_id BIGINT NOT NULL REFERENCES enclave_documents(id) ON DELETE CASCADE,
        collection  TEXT NOT NULL,
        idx         INTEGER NOT NULL,
        text        TEXT NOT NULL,
        page_start  INTEGER,
        page_end    INTEGER,
        char_start  INTEGER NOT NULL,
        char_end    INTEGER NOT NULL,
        tokens      INTEGER NOT NULL,
        unit        TEXT,
        tsv         tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
    );
    CREATE INDEX enclave_chunks_document ON enclave_chunks(document_id);
    CREATE INDEX enclave_chunks_collection ON enclave_chunks(collection);
    CREATE INDEX enclave_chunks_tsv ON enclave_chunks USING GIN (tsv);
    CREATE TABLE enclave_journal (
        collection TEXT NOT NULL,
        chunk_id   TEXT NOT NULL,
        op         TEXT NOT NULL CHECK (op IN ('add', 'delete')),
        writer     BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (collection, chunk_id, op, writer)
    );
    CREATE INDEX enclave_journal_writer ON enclave_journal(writer);
    -- Grants are read with the owner's rights (members cannot read the grants table), for
    -- the role that logged in (session_user) and every role it is a member of.
    CREATE FUNCTION enclave_can_read(c TEXT) RETURNS BOOLEAN
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
        SELECT EXISTS (SELECT 1 FROM enclave_grants g JOIN pg_roles r ON r.rolname = g.role_name
                       WHERE g.collection = c AND pg_has_role(session_user, r.oid, 'MEMBER'))
    $$;
    CREATE FUNCTION enclave_can_write(c TEXT) RETURNS BOOLEAN
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
        SELECT EXISTS (SELECT 1 FROM enclave_grants g JOIN pg_roles r ON r.rolname = g.role_name
                       WHERE g.collection = c AND g.can_write
                         AND pg_has_role(session_user, r.oid, 'MEMBER'))
    $$;
    ALTER TABLE enclave_collections ENABLE ROW LEVEL SECURITY;
    ALTER TABLE enclave_grants ENABLE ROW LEVEL SECURITY;
    ALTER TABLE enclave_documents ENABLE ROW LEVEL SECURITY;
    ALTER TABLE enclave_chunks ENABLE ROW LEVEL SECURITY;
    ALTER TABLE enclave_journal ENABLE ROW LEVEL SECURITY;
    CREATE POLICY member_reads ON enclave_collections FOR SELECT USING (enclave_can_read(name));
    CREATE POLICY member_records_model ON enclave_collections FOR UPDATE
        USING (enclave_can_write(name)) WITH CHECK (enclave_can_write(name));
    CREATE POLICY member_reads ON enclave_documents FOR SELECT USING (enclave_can_read(collection));
    CREATE POLICY member_adds ON enclave_documents FOR INSERT WITH CHECK (enclave_can_write(collection));
    CREATE POLICY member_updates ON enclave_documents FOR UPDATE
        USING (enclave_can_write(collection)) WITH CHECK (enclave_can_write(collection));
    CREATE POLICY member_deletes ON enclave_documents FOR DELETE USING (enclave_can_write(collection));
    CREATE POLICY member_reads ON enclave_chunks FOR SELECT USING (enclave_can_read(collection));
    CREATE POLICY member_adds ON enclave_chunks FOR INSERT WITH CHECK (enclave_can_write(collection));
    CREATE POLICY member_updates ON enclave_chunks FOR UPDATE
        USING (enclave_can_write(collection)) WITH CHECK (enclave_can_write(collection));
    CREATE POLICY member_deletes ON enclave_chunks FOR DELETE USING (enclave_can_write(collection));
    CREATE POLICY member_journals ON enclave_journal FOR ALL
        USING (enclave_can_write(collection)) WITH CHECK (enclave_can_write(collection));
    DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'enclave_member') THEN
            CREATE ROLE enclave_member NOLOGIN;
        END IF;
    END $$;
    GRANT SELECT ON enclave_collections TO enclave_member;
    GRANT UPDATE (embed_model, embed_dim) ON enclave_collections TO enclave_member;
    GRANT SELECT, INSERT, UPDATE, DELETE ON enclave_documents, enclave_chunks, enclave_journal TO enclave_member;
    GRANT USAGE ON SEQUENCE enclave_documents_id_seq TO enclave_member;
    """,
    # 2: PostgreSQL cannot inline a SECURITY DEFINER function, so enclave_can_read(collection)
    # ran once per candidate row (a member's keyword query took 4x the owner's at 100k
    # chunks). The policies now test membership in a set computed once per statement.
    # enclave_can_read/enclave_can_write stay: clients call enclave_can_write directly.
    """
    CREATE FUNCTION enclave_readable() RETURNS SETOF TEXT
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
        SELECT DISTINCT g.collection FROM enclave_grants g JOIN pg_roles r ON r.rolname = g.role_name
        WHERE pg_has_role(session_user, r.oid, 'MEMBER')
    $$;
    CREATE FUNCTION enclave_writable() RETURNS SETOF TEXT
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
        SELECT DISTINCT g.collection FROM enclave_grants g JOIN pg_roles r ON r.rolname = g.role_name
        WHERE g.can_write AND pg_has_role(session_user, r.oid, 'MEMBER')
    $$;
    ALTER POLICY member_reads ON enclave_collections USING (name IN (SELECT enclave_readable()));
    ALTER POLICY member_records_model ON enclave_collections
        USING (name IN (SELECT enclave_writable())) WITH CHECK (name IN (SELECT enclave_writable()));
    ALTER POLICY member_reads ON enclave_documents USING (collection IN (SELECT enclave_readable()));
    ALTER POLICY member_adds ON enclave_documents WITH CHECK (collection IN (SELECT enclave_writable()));
    ALTER POLICY member_updates ON enclave_documents
        USING (collection IN (SELECT enclave_writable())) WITH CHECK (collection IN (SELECT enclave_writable()));
    ALTER POLICY member_deletes ON enclave_documents USING (collection IN (SELECT enclave_writable()));
    ALTER POLICY member_reads ON enclave_chunks USING (collection IN (SELECT enclave_readable()));
    ALTER POLICY member_adds ON enclave_chunks WITH CHECK (collection IN (SELECT enclave_writable()));
    ALTER POLICY member_updates ON enclave_chunks
        USING (collection IN (SELECT enclave_writable())) WITH CHECK (collection IN (SELECT enclave_writable()));
    ALTER POLICY member_deletes ON enclave_chunks USING (collection IN (SELECT enclave_writable()));
    ALTER POLICY member_journals ON enclave_journal
        USING (collection IN (SELECT enclave_writable())) WITH CHECK (collection IN (SELECT enclave_writable()));
    """,
]


def _unprefixed(name: str) -> str:
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def _doc(row, prefix: bool = True) -> DocumentRow:
    (id_, collection, path, content_hash, size, mtime_ns, kind, pages, state, reason, chunks) = row
    return DocumentRow(id_, PREFIX + collection, path, content_hash, size, mtime_ns, kind, pages, state,
                       reason, chunks)


_DOC_COLUMNS = "id, collection, path, content_hash, size, mtime_ns, kind, pages, state, reason, chunks"


def connect_catalog(dsn: str, ca_file: str = "", timeout_s: float = 10.0, autocommit: bool = True):
    import psycopg

    extra = {"connect_timeout": max(1, int(timeout_s)), "application_name": "enclave"}
    if ca_file:
        extra["sslrootcert"] = os.path.expanduser(ca_file)
    try:
        return psycopg.connect(dsn, autocommit=autocommit, **extra)
    except psycopg.Error as exc:
        raise EnclaveError(
            f"The team catalog at {dsn_host(dsn)} cannot be reached: {_first_line(exc)}. "
            "Team collections are unavailable; local collections keep working."
        ) from exc


def _http_status(exc: BaseException | None) -> int | None:
    """The HTTP status behind a Chroma client error (it keeps the response only in the chain)."""
    seen = 0
    while exc is not None and seen < 5:
        response = getattr(exc, "response", None)
        if response is not None and hasattr(response, "status_code"):
            return response.status_code
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class RemoteVectorStore(VectorStore):
    """The same vector operations against a Chroma server reached through a TLS proxy.

    The server holds vectors keyed by chunk id and nothing else: no text, no path (the
    proxy's token is shared by the team, so what a role may read is decided in PostgreSQL).
    """

    write_batch = 256  # no Python lock is held across the network, so bigger batches pay

    def __init__(self, url: str, token: str | None, ca_file: str = "", timeout_s: float = 10.0):
        self.url = url
        self.path = None
        self._token = token
        self._ca_file = ca_file
        self._timeout_s = timeout_s
        self._client = None
        self._collections: dict = {}
        self._max_batch: int | None = None

    @property
    def where(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"

    @property
    def client(self):
        if self._client is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            logging.getLogger("chromadb.telemetry").setLevel(logging.CRITICAL)
            parts = urlsplit(self.url)
            https = parts.scheme == "https"
            settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
            verify = True
            if https and self._ca_file:
                import ssl

                # A context rather than a path: httpx deprecates verify=<path>.
                verify = ssl.create_default_context(cafile=os.path.expanduser(self._ca_file))
                settings.chroma_server_ssl_verify = verify
            headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
            self._preflight(headers, verify)
            try:
                client = chromadb.HttpClient(host=parts.hostname, port=parts.port or (443 if https else 80),
                                             ssl=https, headers=headers, settings=settings)
            except Exception as exc:
                raise self._unreachable(exc) from exc
            self._bound_waits(client)
            self._client = client
        return self._client

    def _preflight(self, headers, verify) -> None:
        """One heartbeat within the time limit before Chroma's client (which waits without
        limit) is built: a host that does not answer is a message in seconds, not a hang."""
        import httpx

        url = self.url.rstrip("/") + "/api/v2/heartbeat"
        try:
            response = httpx.get(url, headers=headers, verify=verify, timeout=self._timeout_s,
                                 follow_redirects=False, trust_env=False)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    def _bound_waits(self, client) -> None:
        # Chroma's HTTP client waits without limit; a member must not hang on a dead server.
        import httpx

        session = getattr(getattr(client, "_server", None), "_session", None)
        if session is not None:
            session.timeout = httpx.Timeout(self._timeout_s, read=max(self._timeout_s, 60.0))

    def _unreachable(self, exc: BaseException) -> EnclaveError:
        detail, status = _first_line(exc), _http_status(exc)
        if status in (401, 403):
            why = f"it refused this member's token ({detail}); check the variable named in settings' team.token_env"
        elif status is not None and status >= 500:  # the proxy answers, the Chroma server behind it does not
            why = f"it cannot be reached (the proxy answered HTTP {status})"
        else:
            why = f"it cannot be reached ({detail})"
        return EnclaveError(f"The team vector server at {self.where}: {why}. "
                            "Team collections are unavailable; local collections keep working.")

    def _collection(self, store_name: str):
        try:
            return super()._collection(store_name)
        except EnclaveError:
            raise
        except Exception as exc:
            raise self._unreachable(exc) from exc

    def add(self, store_name: str, ids, vectors, metadatas=None) -> None:
        collection = self._collection(store_name)
        step = min(self.max_batch, self.write_batch)
        try:
            for start in range(0, len(ids), step):
                collection.upsert(ids=list(ids[start:start + step]), embeddings=vectors[start:start + step])
        except Exception as exc:
            raise self._unreachable(exc) from exc

    @property
    def max_batch(self) -> int:
        if self._max_batch is None:
            self._max_batch = int(self.client.get_max_batch_size())
        return self._max_batch

    @contextmanager
    def _guard(self):
        try:
            yield
        except EnclaveError:
            raise
        except Exception as exc:  # the server went away mid-session
            raise self._unreachable(exc) from exc

    def query(self, store_name, vector, k):
        with self._guard():
            return super().query(store_name, vector, k)

    def vectors(self, store_name, ids):
        with self._guard():
            return super().vectors(store_name, ids)

    def delete(self, store_name, ids) -> None:
        with self._guard():
            super().delete(store_name, ids)

    def all_ids(self, store_name: str) -> list[str]:
        collection = self._collection(store_name)
        ids: list[str] = []
        with self._guard():
            while True:
                got = collection.get(include=[], limit=5000, offset=len(ids))["ids"]
                ids += got
                if len(got) < 5000:
                    return ids

    def heartbeat(self) -> None:
        try:
            self.client.heartbeat()
        except EnclaveError:
            raise
        except Exception as exc:
            raise self._unreachable(exc) from exc

    def close(self) -> None:
        self._client = None
        self._collections = {}


class TeamIndex:
    """Team collections, named team:NAME here and NAME on the servers."""

    kind = "team"

    def __init__(self, db, store: RemoteVectorStore, where: str, reconnect=None):
        self.db = db
        self._reconnect = reconnect
        self.store = store
        self.where = where
        self._writer: int | None = None
        self._check_schema()

    def owns(self, collection: str) -> bool:
        return collection.startswith(PREFIX)

    @contextmanager
    def _errors(self):
        import psycopg

        try:
            yield
        except psycopg.errors.InsufficientPrivilege as exc:
            raise EnclaveError(f"The team catalog at {self.where} refused this member: {_first_line(exc)}.") from exc
        except psycopg.OperationalError as exc:
            raise EnclaveError(
                f"The team catalog at {self.where} stopped answering ({_first_line(exc)}). "
                "Team collections are unavailable; local collections keep working."
            ) from exc

    def _check_schema(self) -> None:
        with self._errors():
            row = self.db.execute(
                "SELECT to_regclass('enclave_schema') IS NOT NULL"
            ).fetchone()
            version = self.db.execute("SELECT max(version) FROM enclave_schema").fetchone()[0] if row[0] else 0
        if (version or 0) < len(MIGRATIONS):
            raise EnclaveError(
                f"The team catalog at {self.where} is not set up for this Enclave (schema {version or 0}, "
                f"needs {len(MIGRATIONS)}). Ask the administrator to run: enclave-cli team-admin migrate."
            )

    def _sql(self, query: str, params=()):
        """One statement outside a transaction; once more on a new connection when the
        server had dropped this one (every such statement here may run twice)."""
        import psycopg

        self._alive()
        try:
            return self.db.execute(query, params)
        except psycopg.OperationalError:
            if not self.db.broken or self._reconnect is None:
                with self._errors():
                    raise
        self._alive()
        with self._errors():
            return self.db.execute(query, params)

    def _alive(self) -> None:
        """After the catalog server restarted, connect again. The old session's writer lock
        went with it, so its journal is settled like any dead writer's."""
        if (self.db.closed or self.db.broken) and self._reconnect is not None:
            self.db = self._reconnect()
            self._writer = None

    # --- collections -------------------------------------------------------------------

    def collection(self, name: str) -> Mapping | None:
        row = self._sql("SELECT name, store_name, embed_model, embed_dim FROM enclave_collections WHERE name = %s",
                        (_unprefixed(name),)).fetchone()
        if row is None:
            return None
        return {"name": PREFIX + row[0], "store_name": row[1], "embed_model": row[2], "embed_dim": row[3]}

    def collections(self) -> list[Mapping]:
        rows = self._sql("SELECT name, store_name, embed_model, embed_dim FROM enclave_collections ORDER BY name")
        return [{"name": PREFIX + r[0], "store_name": r[1], "embed_model": r[2], "embed_dim": r[3]} for r in rows]

    def create_collection(self, name: str) -> None:
        raise EnclaveError("Team collections are created by the team's administrator "
                           "(enclave-cli team-admin create NAME --grant ROLE).")

    def rename_collection(self, old: str, new: str) -> None:
        raise EnclaveError("Team collections are renamed by the team's administrator, on the server.")

    def delete_collection(self, name: str) -> list[DocumentRow]:
        raise EnclaveError("Team collections are deleted by the team's administrator, on the server.")

    def _require(self, name: str) -> Mapping:
        row = self.collection(name)
        if row is None:
            raise EnclaveError(f"There is no team collection {name!r} on {self.where}, or your role has not "
                               "been granted it.")
        return row

    def prepare_collection(self, name: str, model: str, dim: int) -> None:
        """Check that this member may write and embeds with the collection's model; the first
        writer records the model."""
        row = self._require(name)
        bare = _unprefixed(name)
        if not self._sql("SELECT enclave_can_write(%s)", (bare,)).fetchone()[0]:
            raise EnclaveError(f"Your role may read team collection {name!r} but not add to it.")
        if row["embed_model"] is None:
            self._sql("UPDATE enclave_collections SET embed_model = %s, embed_dim = %s "
                      "WHERE name = %s AND embed_model IS NULL", (model, dim, bare))
            row = self._require(name)
        if (row["embed_model"], row["embed_dim"]) != (model, dim):
            raise EnclaveError(
                f"Team collection {name!r} holds vectors of the embedding model {row['embed_model']} "
                f"({row['embed_dim']} dimensions); this Enclave embeds with {model} ({dim} dimensions). "
                "Set the team's embedding model in Settings to add to it; nothing was written."
            )
        self._ensure_writer()

    def _ensure_writer(self) -> None:
        """Take this writer's session lock; the journal names the writer, so a client that
        dies (and loses the lock with its session) is recognised as dead by the others."""
        if self._writer is None:
            while True:
                writer = secrets.randbits(62) + 1
                if self._sql("SELECT pg_try_advisory_lock(%s)", (writer,)).fetchone()[0]:
                    self._writer = writer
                    return

    def _store_name(self, collection: str) -> str:
        return self._require(collection)["store_name"]

    # --- documents ---------------------------------------------------------------------

    def document(self, collection: str, path: str) -> DocumentRow | None:
        row = self._sql(f"SELECT {_DOC_COLUMNS} FROM enclave_documents WHERE collection = %s AND path = %s",
                        (_unprefixed(collection), path)).fetchone()
        return _doc(row) if row else None

    def documents(self, collection: str | None = None) -> list[DocumentRow]:
        if collection is None:
            rows = self._sql(f"SELECT {_DOC_COLUMNS} FROM enclave_documents ORDER BY collection, path")
        else:
            rows = self._sql(f"SELECT {_DOC_COLUMNS} FROM enclave_documents WHERE collection = %s ORDER BY path",
                             (_unprefixed(collection),))
        return [_doc(r) for r in rows]

    def documents_under(self, collection: str, folder: str) -> list[DocumentRow]:
        prefix = folder.rstrip(os.sep) + os.sep
        rows = self._sql(f"SELECT {_DOC_COLUMNS} FROM enclave_documents WHERE collection = %s "
                         "AND left(path, %s) = %s", (_unprefixed(collection), len(prefix), prefix))
        return [_doc(r) for r in rows]

    def touch_document(self, doc_id: int, size: int, mtime_ns: int) -> None:
        self._sql("UPDATE enclave_documents SET size = %s, mtime_ns = %s WHERE id = %s", (size, mtime_ns, doc_id))

    @contextmanager
    def _transaction(self):
        self._alive()
        with self._errors(), self.db.transaction():
            yield self.db

    def _lock_paths(self, collection: str, paths: Sequence[str]) -> None:
        # In a stable order, so two writers of overlapping batches never deadlock.
        for path in sorted(set(paths)):
            self.db.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", (collection, path))

    def _upsert_document(self, collection, path, *, state, reason=None, content_hash=None, size=None,
                         mtime_ns=None, kind=None, pages=None) -> int:
        return self.db.execute(
            """INSERT INTO enclave_documents(collection, path, content_hash, size, mtime_ns, kind, pages,
                                             state, reason)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (collection, path) DO UPDATE SET
                   content_hash = excluded.content_hash, size = excluded.size, mtime_ns = excluded.mtime_ns,
                   kind = excluded.kind, pages = excluded.pages, state = excluded.state,
                   reason = excluded.reason, updated_by = session_user, updated_at = now()
               RETURNING id""",
            (collection, path, content_hash, size, mtime_ns, kind, pages, state, reason),
        ).fetchone()[0]

    def _replace_chunks(self, collection: str, doc_id: int, chunks) -> list[str]:
        """Swap a document's chunks; journals and returns the old ids no longer used."""
        old = {r[0] for r in self.db.execute("SELECT id FROM enclave_chunks WHERE document_id = %s", (doc_id,))}
        self.db.execute("DELETE FROM enclave_chunks WHERE document_id = %s", (doc_id,))
        if chunks:
            with self.db.cursor() as cur:
                cur.executemany(
                    """INSERT INTO enclave_chunks(id, document_id, collection, idx, text, page_start, page_end,
                                                  char_start, char_end, tokens, unit)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                       ON CONFLICT (id) DO UPDATE SET document_id = excluded.document_id, text = excluded.text""",
                    [(c.id, doc_id, collection, c.index, c.text.replace("\x00", ""), c.page_start, c.page_end,
                      c.char_start, c.char_end, c.tokens, c.unit) for c in chunks],
                )
        self.db.execute("UPDATE enclave_documents SET chunks = %s WHERE id = %s", (len(chunks), doc_id))
        stale = sorted(old - {c.id for c in chunks})
        self._journal(collection, "delete", stale)
        return stale

    def _journal(self, collection: str, op: str, ids: Sequence[str]) -> None:
        if ids:
            with self.db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO enclave_journal(collection, chunk_id, op, writer) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING", [(collection, i, op, self._writer) for i in ids])

    def _settle(self, collection: str, op: str, ids: Sequence[str]) -> None:
        if ids:
            self.db.execute("DELETE FROM enclave_journal WHERE collection = %s AND op = %s AND writer = %s "
                            "AND chunk_id = ANY(%s)", (collection, op, self._writer, list(ids)))

    def _delete_vectors(self, collection: str, store_name: str, ids: Sequence[str]) -> None:
        if ids:
            self.store.delete(store_name, ids)
            with self._transaction():
                self._settle(collection, "delete", ids)

    def record_outcome(self, collection, path, *, state, reason, content_hash, size, mtime_ns, pages) -> int:
        bare, store_name = _unprefixed(collection), self._store_name(collection)
        self._ensure_writer()
        with self._transaction():
            self._lock_paths(bare, [path])
            doc_id = self._upsert_document(bare, path, state=state, reason=reason, content_hash=content_hash,
                                           size=size, mtime_ns=mtime_ns, pages=pages)
            stale = self._replace_chunks(bare, doc_id, [])
        self._delete_vectors(bare, store_name, stale)
        return len(stale)

    def write_documents(self, collection: str, docs: Sequence[DocumentWrite], vectors: np.ndarray) -> int:
        bare, store_name = _unprefixed(collection), self._store_name(collection)
        self._ensure_writer()
        ids = [c.id for d in docs for c in d.chunks]
        with self._transaction():
            self._journal(bare, "add", ids)
        self.store.add(store_name, ids, vectors)  # vectors only: paths and text stay in the catalog
        stale: list[str] = []
        with self._transaction():
            self._lock_paths(bare, [d.path for d in docs])
            self._settle(bare, "add", ids)
            for d in docs:
                doc_id = self._upsert_document(bare, d.path, state="indexed", content_hash=d.content_hash,
                                               size=d.size, mtime_ns=d.mtime_ns, kind=d.kind, pages=d.pages)
                stale += self._replace_chunks(bare, doc_id, d.chunks)
        self._delete_vectors(bare, store_name, stale)
        return len(stale)

    def forget_document(self, doc: DocumentRow) -> int:
        bare, store_name = _unprefixed(doc.collection), self._store_name(doc.collection)
        self._ensure_writer()
        with self._transaction():
            self._lock_paths(bare, [doc.path])
            ids = [r[0] for r in self.db.execute("SELECT id FROM enclave_chunks WHERE document_id = %s",
                                                 (doc.id,))]
            self._journal(bare, "delete", ids)
            self.db.execute("DELETE FROM enclave_documents WHERE id = %s", (doc.id,))
        self._delete_vectors(bare, store_name, ids)
        return len(ids)

    def recover(self) -> dict[str, int]:
        """Settle the journal of every writer that is gone (its session lock is free), in the
        collections this member may write. Idempotent; live writers are left alone."""
        added = deleted = 0
        writers = [r[0] for r in self._sql("SELECT DISTINCT writer FROM enclave_journal")]
        for writer in writers:
            if writer == self._writer:
                continue
            if not self._sql("SELECT pg_try_advisory_lock(%s)", (writer,)).fetchone()[0]:
                continue  # alive: its own commit settles it
            try:
                a, d = self._settle_dead(writer)
                added += a
                deleted += d
            finally:
                self._sql("SELECT pg_advisory_unlock(%s)", (writer,))
        return {"vectors_taken_back": added, "deletions_finished": deleted}

    def _settle_dead(self, writer: int) -> tuple[int, int]:
        stores = {r["name"][len(PREFIX):]: r["store_name"] for r in self.collections()}
        added = deleted = 0
        for collection, store_name in stores.items():
            # Vectors written for chunks that never committed, unless another live writer
            # journaled the same ids (same file, same content) and may still commit them.
            take_back = [r[0] for r in self._sql(
                """SELECT j.chunk_id FROM enclave_journal j
                   WHERE j.writer = %s AND j.collection = %s AND j.op = 'add'
                     AND NOT EXISTS (SELECT 1 FROM enclave_chunks c WHERE c.id = j.chunk_id)
                     AND NOT EXISTS (SELECT 1 FROM enclave_journal o WHERE o.chunk_id = j.chunk_id
                                     AND o.op = 'add' AND o.writer <> j.writer)""", (writer, collection))]
            promised = [r[0] for r in self._sql(
                """SELECT j.chunk_id FROM enclave_journal j
                   WHERE j.writer = %s AND j.collection = %s AND j.op = 'delete'
                     AND NOT EXISTS (SELECT 1 FROM enclave_chunks c WHERE c.id = j.chunk_id)""",
                (writer, collection))]
            if take_back or promised:
                self.store.delete(store_name, take_back + promised)
            self._sql("DELETE FROM enclave_journal WHERE writer = %s AND collection = %s", (writer, collection))
            added += len(take_back)
            deleted += len(promised)
        return added, deleted

    # --- reading -----------------------------------------------------------------------

    def vector_search(self, collection: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        return self.store.query(self._store_name(collection), vector, k)

    def keyword_search(self, collection: str, query: str, k: int) -> list[tuple[str, float]]:
        """Full-text search (websearch_to_tsquery) over the content words: every match is
        ranked with the cheap ts_rank, and only the best thousand are ranked again with ts_rank_cd,
        which rewards the words standing close together (a phrase's chunk first).

        OR-ing a question's words matches half of a large collection; ranking all of those with
        ts_rank_cd was most of the query's time (benchmarks/team_keyword.py)."""
        words = query_words(query)
        if not words:
            return []
        rows = self._sql(
            """WITH q AS (SELECT websearch_to_tsquery('english', %s) AS q),
                    candidates AS MATERIALIZED (
                        SELECT c.id, c.tsv
                        FROM enclave_chunks c JOIN enclave_documents d ON d.id = c.document_id, q
                        WHERE c.collection = %s AND d.state = 'indexed' AND c.tsv @@ q.q
                        ORDER BY ts_rank(c.tsv, q.q) DESC, c.id LIMIT %s)
               SELECT candidates.id, ts_rank_cd(candidates.tsv, q.q) AS score FROM candidates, q
               ORDER BY score DESC, candidates.id LIMIT %s""",
            (" or ".join(words), _unprefixed(collection), max(1000, 20 * k), k),
        )
        return [(r[0], float(r[1])) for r in rows]

    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, ChunkRow]:
        if not ids:
            return {}
        rows = self._sql(
            """SELECT c.id, d.path, d.collection, c.text, c.page_start, c.page_end, c.char_start,
                      c.char_end, c.unit
               FROM enclave_chunks c JOIN enclave_documents d ON d.id = c.document_id
               WHERE c.id = ANY(%s) AND d.state = 'indexed'""",
            (list(ids),),
        )
        return {r[0]: ChunkRow(r[0], r[1], PREFIX + r[2], *r[3:]) for r in rows}

    def document_chunks(self, doc: DocumentRow) -> list[ChunkRow]:
        rows = self._sql(
            """SELECT c.id, d.path, d.collection, c.text, c.page_start, c.page_end, c.char_start,
                      c.char_end, c.unit
               FROM enclave_chunks c JOIN enclave_documents d ON d.id = c.document_id
               WHERE c.document_id = %s ORDER BY c.idx""",
            (doc.id,),
        )
        return [ChunkRow(r[0], r[1], PREFIX + r[2], *r[3:]) for r in rows]

    def vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return self.store.vectors(self._store_name(collection), ids)

    def page_words(self, chunk_id: str) -> tuple[int, list] | None:
        return None  # OCR word boxes stay with the member who indexed the scan

    def count_chunks(self, collection: str | None = None) -> int:
        if collection is None:
            return self._sql("SELECT count(*) FROM enclave_chunks").fetchone()[0]
        return self._sql("SELECT count(*) FROM enclave_chunks WHERE collection = %s",
                         (_unprefixed(collection),)).fetchone()[0]

    # --- maintenance -------------------------------------------------------------------

    def verify(self, embed, repair: bool = False) -> dict:
        """Every catalog chunk of each collection this member sees has exactly one vector,
        and no vector lacks a chunk (vectors a live writer journaled are not orphans yet)."""
        report: dict = {"recovered": self.recover(), "collections": []}
        for row in self.collections():
            bare = _unprefixed(row["name"])
            wanted = {r[0] for r in self._sql("SELECT id FROM enclave_chunks WHERE collection = %s", (bare,))}
            in_flight = {r[0] for r in self._sql(
                "SELECT chunk_id FROM enclave_journal WHERE collection = %s AND op = 'add'", (bare,))}
            can_write = self._sql("SELECT enclave_can_write(%s)", (bare,)).fetchone()[0]
            entry = verify_store(self, _Ignoring(self.store, in_flight), row["name"], row["store_name"],
                                 wanted, embed, repair and can_write)
            report["collections"].append(entry)
        return report

    def test_connection(self) -> dict:
        """What the settings page shows: each server, reached or not, and what this role sees."""
        self.store.heartbeat()
        names = [r["name"] for r in self.collections()]
        return {"catalog": self.where, "vectors": self.store.where, "collections": names}

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            self.store.close()


class _Ignoring:
    """A store seen without the vectors of writes still in flight."""

    def __init__(self, store: RemoteVectorStore, ignored: set[str]):
        self._store, self._ignored = store, ignored

    def all_ids(self, store_name: str) -> list[str]:
        return [i for i in self._store.all_ids(store_name) if i not in self._ignored]

    def __getattr__(self, name):
        return getattr(self._store, name)


def open_team_index(team) -> TeamIndex:
    """Connect to the servers in settings' [team] section; a clear error if one is missing
    or down."""
    if not team.configured:
        raise EnclaveError("No team servers are set: add the [team] section to settings (see the README) "
                           "to use team:NAME collections.")
    problems = team.problems()
    if problems:
        raise EnclaveError("Invalid team settings: " + "; ".join(problems) + ".")
    token = None
    if team.token_env:
        token = os.environ.get(team.token_env)
        if not token:
            raise EnclaveError(f"The team's token is missing: set the environment variable {team.token_env}.")
    db = connect_catalog(team.postgres_dsn, team.ca_file, team.timeout_s)
    store = RemoteVectorStore(team.chroma_url, token, team.ca_file, team.timeout_s)
    try:
        return TeamIndex(db, store, dsn_host(team.postgres_dsn),
                         reconnect=lambda: connect_catalog(team.postgres_dsn, team.ca_file, team.timeout_s))
    except BaseException:
        db.close()
        raise


# --- administration (the catalog owner's role) -------------------------------------------


def migrate(db) -> int:
    """Bring the team catalog's schema up to date; returns the version now. Run by the
    role that owns the tables (the administrator), never by members."""
    with db.transaction():
        db.execute("CREATE TABLE IF NOT EXISTS enclave_schema (version INTEGER PRIMARY KEY, "
                   "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        db.execute("LOCK TABLE enclave_schema IN EXCLUSIVE MODE")
        version = db.execute("SELECT coalesce(max(version), 0) FROM enclave_schema").fetchone()[0]
        for number in range(version, len(MIGRATIONS)):
            db.execute(MIGRATIONS[number])
            db.execute("INSERT INTO enclave_schema(version) VALUES (%s)", (number + 1,))
        db.execute(f"GRANT SELECT ON enclave_schema TO {MEMBER_ROLE}")
    return len(MIGRATIONS)


def create_collection(db, name: str) -> str:
    """A new team collection (no model yet: the first writer records it); returns its
    vector store name."""
    import hashlib
    import time

    name = _unprefixed(name)
    store_name = "enclave_team_" + hashlib.sha1(f"{name}:{time.time_ns()}".encode()).hexdigest()[:16]
    db.execute("INSERT INTO enclave_collections(name, store_name) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
               (name, store_name))
    return db.execute("SELECT store_name FROM enclave_collections WHERE name = %s", (name,)).fetchone()[0]


def grant(db, collection: str, role: str, write: bool = False) -> None:
    """Let a role (a person, or a group role people are members of) see a collection, and
    add to it with write."""
    from psycopg import sql

    collection = _unprefixed(collection)
    db.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(MEMBER_ROLE), sql.Identifier(role)))
    db.execute("INSERT INTO enclave_grants(collection, role_name, can_write) VALUES (%s, %s, %s) "
               "ON CONFLICT (collection, role_name) DO UPDATE SET can_write = excluded.can_write",
               (collection, role, write))


def revoke(db, collection: str, role: str) -> None:
    db.execute("DELETE FROM enclave_grants WHERE collection = %s AND role_name = %s", (_unprefixed(collection), role))
