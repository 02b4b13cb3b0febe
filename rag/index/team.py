"""The team index: documents, chunks, their vectors and keyword index in PostgreSQL.

A member's Enclave reads, chunks and embeds files on their own machine and writes each
chunk with its vector (pgvector) into one row of PostgreSQL, in one transaction per batch.
One row-level security then decides what a role may read and write, by any path: this
client, or a hand-written SQL statement with the member's own credentials. A client killed
mid-write leaves nothing half done (the transaction rolls back), so there is no journal.
Two writers of the same document serialize on a transaction lock per (collection, path);
chunk ids derive from content and path, so they end with one copy.

Searches may go to a streaming replica (`read_dsn`); one that is down or behind falls back
to the primary with a one-line notice. A search's vector and keyword queries run at once, on
two connections to the same server: each is a single-threaded plan, so the second one would
otherwise wait for the first (benchmarks/team_keyword_quality.py --profile measured both).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

from .catalog import ChunkRow, DocumentRow
from ..addresses import dsn_host
from ..errors import EnclaveError
from .base import DocumentWrite
from .query import query_words

log = logging.getLogger(__name__)

PREFIX = "team:"
MEMBER_ROLE = "enclave_member"
EF_SEARCH = 100  # HNSW candidate list; iterative scans extend it when filters drop rows

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
    # 3: vectors in PostgreSQL (pgvector), in the chunk's own row, so one row-level security
    # decides who reads and writes them by any path, and a chunk and its vector commit
    # together (the cross-store journal goes). pgvector is not a trusted extension: a
    # superuser runs CREATE EXTENSION vector once (the migration does when it can).
    """
    CREATE EXTENSION IF NOT EXISTS vector;
    ALTER TABLE enclave_chunks ADD COLUMN embedding vector;
    DROP TABLE enclave_journal;
    -- The recorded model is set once, by the first writer; never changed by a member after.
    ALTER POLICY member_records_model ON enclave_collections
        USING (name IN (SELECT enclave_writable()) AND embed_model IS NULL)
        WITH CHECK (name IN (SELECT enclave_writable()));
    -- Every vector has its collection's dimension, and a chunk belongs to a document of its
    -- own collection (the foreign key alone would let a writer hang a chunk on another
    -- collection's document).
    CREATE FUNCTION enclave_check_chunk() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        DECLARE want INTEGER;
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM enclave_documents d WHERE d.id = NEW.document_id
                           AND d.collection = NEW.collection) THEN
                RAISE EXCEPTION 'chunk % names collection % but its document is not in it', NEW.id, NEW.collection
                    USING ERRCODE = '23514';
            END IF;
            IF NEW.embedding IS NOT NULL THEN
                SELECT embed_dim INTO want FROM enclave_collections WHERE name = NEW.collection;
                IF want IS NULL OR vector_dims(NEW.embedding) <> want THEN
                    RAISE EXCEPTION 'team collection team:% holds vectors of % dimensions, not %',
                        NEW.collection, coalesce(want::text, 'no recorded'), vector_dims(NEW.embedding)
                        USING ERRCODE = '22000';
                END IF;
            END IF;
            RETURN NEW;
        END $$;
    CREATE TRIGGER enclave_chunks_check BEFORE INSERT OR UPDATE ON enclave_chunks
        FOR EACH ROW EXECUTE FUNCTION enclave_check_chunk();
    -- One HNSW index per collection, partial on its name and cast to its dimension: a
    -- search of one collection walks a graph of that collection's vectors only, so the
    -- filter never empties the k nearest (iterative scans cover the rest, see vector_search).
    CREATE FUNCTION enclave_vector_index(c TEXT) RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        DECLARE r RECORD;
        BEGIN
            SELECT store_name, embed_dim INTO r FROM enclave_collections WHERE name = c;
            IF r.embed_dim IS NOT NULL THEN
                EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON enclave_chunks USING hnsw '
                               '((embedding::vector(%s)) vector_cosine_ops) WHERE collection = %L',
                               r.store_name || '_hnsw', r.embed_dim, c);
            END IF;
        END $$;
    REVOKE EXECUTE ON FUNCTION enclave_vector_index(TEXT) FROM PUBLIC;
    CREATE FUNCTION enclave_collection_model_set() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        BEGIN
            PERFORM enclave_vector_index(NEW.name);
            RETURN NULL;
        END $$;
    CREATE TRIGGER enclave_collections_model AFTER UPDATE OF embed_dim ON enclave_collections
        FOR EACH ROW WHEN (OLD.embed_dim IS DISTINCT FROM NEW.embed_dim)
        EXECUTE FUNCTION enclave_collection_model_set();
    -- Collections that already hold chunks get their index once their vectors are rebuilt
    -- (migrate() and rebuild_vectors): one build over all rows beats as many inserts.
    """,
    # 4: the audit: every document write and every grant appends a row, by trigger, with
    # the role that logged in. Members hold no privilege on the table (and row-level security
    # with no policy), so they can neither read, add, change nor delete a row.
    """
    CREATE TABLE enclave_audit (
        id         BIGSERIAL PRIMARY KEY,
        at         TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
        role_name  TEXT NOT NULL DEFAULT session_user,
        collection TEXT NOT NULL,
        path       TEXT,
        action     TEXT NOT NULL,
        chunks     INTEGER,
        detail     TEXT
    );
    CREATE INDEX enclave_audit_at ON enclave_audit(at);
    ALTER TABLE enclave_audit ENABLE ROW LEVEL SECURITY;
    REVOKE ALL ON enclave_audit FROM PUBLIC;
    CREATE FUNCTION enclave_audit_document() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                INSERT INTO enclave_audit(collection, path, action, chunks)
                    VALUES (OLD.collection, OLD.path, 'removed', OLD.chunks);
                RETURN OLD;
            END IF;
            IF TG_OP = 'UPDATE' AND OLD.content_hash IS NOT DISTINCT FROM NEW.content_hash
               AND OLD.state = NEW.state AND OLD.chunks = NEW.chunks THEN
                RETURN NEW;  -- a touch (size, mtime): nothing read or written
            END IF;
            INSERT INTO enclave_audit(collection, path, action, chunks, detail)
                VALUES (NEW.collection, NEW.path,
                        CASE WHEN NEW.state <> 'indexed' THEN NEW.state
                             WHEN TG_OP = 'INSERT' THEN 'indexed' ELSE 'replaced' END,
                        NEW.chunks, NEW.reason);
            RETURN NEW;
        END $$;
    CREATE TRIGGER enclave_documents_audit AFTER INSERT OR UPDATE OR DELETE ON enclave_documents
        FOR EACH ROW EXECUTE FUNCTION enclave_audit_document();
    CREATE FUNCTION enclave_audit_grant() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                INSERT INTO enclave_audit(collection, action, detail) VALUES (OLD.collection, 'revoke', OLD.role_name);
                RETURN OLD;
            END IF;
            INSERT INTO enclave_audit(collection, action, detail)
                VALUES (NEW.collection, 'grant',
                        NEW.role_name || CASE WHEN NEW.can_write THEN ' (read, write)' ELSE ' (read)' END);
            RETURN NEW;
        END $$;
    CREATE TRIGGER enclave_grants_audit AFTER INSERT OR UPDATE OR DELETE ON enclave_grants
        FOR EACH ROW EXECUTE FUNCTION enclave_audit_grant();
    """,
    # 5: the owner's functions ran with search_path = public, and PostgreSQL searches a
    # session's own temporary schema first for tables unless the path names it: a member who
    # created a temporary table enclave_grants read and deleted every collection through the
    # policies, and one named enclave_audit would have hidden his writes from the audit.
    # Every SECURITY DEFINER function now searches pg_catalog, then public, then pg_temp last
    # (PostgreSQL's advice for such functions); later migrations write SAFE_PATH themselves.
    # Members need no CREATE on public (PostgreSQL 15 and later grant none; older ones do).
    """
    DO $$ DECLARE f RECORD;
    BEGIN
        FOR f IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
                 WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace
                   AND pg_get_userbyid(p.proowner) = current_user LOOP
            EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, public, pg_temp', f.sig);
        END LOOP;
        IF has_schema_privilege('enclave_member', 'public', 'CREATE') THEN
            BEGIN
                REVOKE CREATE ON SCHEMA public FROM PUBLIC;
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE WARNING 'members can create objects in schema public: its owner should run '
                              'REVOKE CREATE ON SCHEMA public FROM PUBLIC';
            END;
        END IF;
    END $$;
    """,
    # 6: a member's keyword query never used the GIN index: under row-level security a qual
    # that is not LEAKPROOF (tsvector @@ tsquery is not) may not run before the policy's, so
    # the planner can only scan every chunk and test it (200 ms at 100k chunks even when 40
    # match; the owner's same query took 3 ms through the index). This function runs the
    # query with the owner's rights, so GIN serves it, and filters by the same readable set
    # as the policies (session_user's grants): it returns nothing a member could not read.
    # Stages go from strict to loose (the question's words all in one chunk, then all but
    # one, ... any one); the first that finds k chunks is ranked, so a question whose words
    # match half the collection no longer ranks that half.
    """
    CREATE FUNCTION enclave_keyword_search(c TEXT, stages tsquery[], ranked tsquery, k INTEGER)
        RETURNS TABLE(chunk_id TEXT, score REAL)
        LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
        DECLARE stage tsquery; chosen tsquery; found INTEGER;
        BEGIN
            -- The arguments are judged before the grants, the same way for every collection:
            -- an error or an empty answer says nothing of one the caller may not read. The
            -- bounds keep one call's work near one search's (the client sends k <= 200, at
            -- most 5 stages, at most 64 words).
            IF k IS NULL OR k < 1 OR ranked IS NULL OR stages IS NULL OR cardinality(stages) = 0 THEN
                RETURN;
            END IF;
            IF k > 1000 OR cardinality(stages) > 16 OR numnode(ranked) > 1000
               OR EXISTS (SELECT 1 FROM unnest(stages) s WHERE numnode(s) > 1000) THEN
                RAISE EXCEPTION 'enclave_keyword_search takes k up to 1000, up to 16 stages and queries of up to 1000 nodes'
                    USING ERRCODE = '22023';
            END IF;
            IF c IS NULL OR c NOT IN (SELECT enclave_readable()) THEN
                RETURN;
            END IF;
            FOREACH stage IN ARRAY stages LOOP
                CONTINUE WHEN stage IS NULL;
                chosen := stage;
                SELECT count(*) INTO found FROM (
                    SELECT 1 FROM enclave_chunks x JOIN enclave_documents d ON d.id = x.document_id
                    WHERE x.collection = c AND d.state = 'indexed' AND x.tsv @@ stage LIMIT k) enough;
                EXIT WHEN found >= k;
            END LOOP;
            IF chosen IS NULL THEN
                RETURN;
            END IF;
            RETURN QUERY
                WITH candidates AS MATERIALIZED (
                    SELECT x.id, x.tsv FROM enclave_chunks x JOIN enclave_documents d ON d.id = x.document_id
                    WHERE x.collection = c AND d.state = 'indexed' AND x.tsv @@ chosen
                    ORDER BY ts_rank(x.tsv, ranked) DESC, x.id LIMIT greatest(1000, 20 * k))
                SELECT candidates.id, ts_rank_cd(candidates.tsv, ranked) FROM candidates
                ORDER BY 2 DESC, 1 LIMIT k;
        END $$;
    REVOKE EXECUTE ON FUNCTION enclave_keyword_search(TEXT, tsquery[], tsquery, INTEGER) FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION enclave_keyword_search(TEXT, tsquery[], tsquery, INTEGER) TO enclave_member;
    """,
    # 7: the same stages in under half the time (p50 at 100k chunks: this function 0.38x,
    # the fused search 0.63x) with better answers (benchmarks/team_keyword_quality.py,
    # issue 22). Each stage's ranking is its
    # count: one with fewer than k matches ranks those few (no dearer than counting them) and
    # the first with k is returned, so the chosen stage's chunks are read once, not twice.
    # ts_rank alone orders them: re-ranking the best thousand with ts_rank_cd cost 9 us a
    # chunk and put the answering paragraph in the fused top 5 for 11 points fewer of 293
    # SQuAD questions at 100k. A document's state is looked up by key for the chunks that
    # match, after the ranking and only until k are found, not hash-joined with every
    # document (3 ms even when 36 chunks matched). Statements are planned with each call's
    # collection and query: a cached generic plan ANDed the word bitmap with the
    # collection's own (8 ms to read 100k entries) where the collection is most of the table.
    """
    CREATE OR REPLACE FUNCTION enclave_keyword_search(c TEXT, stages tsquery[], ranked tsquery, k INTEGER)
        RETURNS TABLE(chunk_id TEXT, score REAL)
        LANGUAGE plpgsql STABLE SECURITY DEFINER
        SET plan_cache_mode = force_custom_plan SET search_path = pg_catalog, public, pg_temp AS $$
        DECLARE stage tsquery; ids TEXT[]; scores REAL[];
        BEGIN
            -- The arguments are judged before the grants, the same way for every collection:
            -- an error or an empty answer says nothing of one the caller may not read. The
            -- bounds keep one call's work near one search's (the client sends k <= 200, at
            -- most 5 stages, at most 64 words).
            IF k IS NULL OR k < 1 OR ranked IS NULL OR stages IS NULL OR cardinality(stages) = 0 THEN
                RETURN;
            END IF;
            IF k > 1000 OR cardinality(stages) > 16 OR numnode(ranked) > 1000
               OR EXISTS (SELECT 1 FROM unnest(stages) s WHERE numnode(s) > 1000) THEN
                RAISE EXCEPTION 'enclave_keyword_search takes k up to 1000, up to 16 stages and queries of up to 1000 nodes'
                    USING ERRCODE = '22023';
            END IF;
            IF c IS NULL OR c NOT IN (SELECT enclave_readable()) THEN
                RETURN;
            END IF;
            FOREACH stage IN ARRAY stages LOOP
                CONTINUE WHEN stage IS NULL;
                -- OFFSET 0 keeps the state test above the sort: it runs on the best first.
                SELECT array_agg(m.id ORDER BY m.r DESC, m.id), array_agg(m.r ORDER BY m.r DESC, m.id)
                    INTO ids, scores FROM (
                    SELECT m.id, m.r FROM (
                        SELECT x.id, x.document_id, ts_rank(x.tsv, ranked) AS r FROM enclave_chunks x
                        WHERE x.collection = c AND x.tsv @@ stage ORDER BY r DESC, x.id OFFSET 0) m
                    WHERE (SELECT d.state FROM enclave_documents d WHERE d.id = m.document_id) = 'indexed'
                    LIMIT k) m;
                EXIT WHEN cardinality(ids) >= k;
            END LOOP;
            RETURN QUERY SELECT u.id, u.r FROM unnest(ids, scores) WITH ORDINALITY u(id, r, n) ORDER BY u.n;
        END $$;
    """,
]

# The search path of every SECURITY DEFINER function (migration 5 says why).
SAFE_PATH = "pg_catalog, public, pg_temp"


STAGE_WORDS = 5  # at most 10 ANDs a stage: with 8 words (70) a stage cost more than it saved (p95 x5 at 100k)


def keyword_stages(words: Sequence[str]) -> list[str]:
    """websearch_to_tsquery texts from strict to loose: chunks holding all of the first
    STAGE_WORDS words, then any all but one of them, ..., then any word of the question."""
    from itertools import combinations

    first = list(words[:STAGE_WORDS])
    stages = [" or ".join(" ".join(c) for c in combinations(first, n)) for n in range(len(first), 1, -1)]
    return stages + [" or ".join(words)]


def _unprefixed(name: str) -> str:
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def _doc(row) -> DocumentRow:
    (id_, collection, path, content_hash, size, mtime_ns, kind, pages, state, reason, chunks) = row
    return DocumentRow(id_, PREFIX + collection, path, content_hash, size, mtime_ns, kind, pages, state,
                       reason, chunks)


_DOC_COLUMNS = "id, collection, path, content_hash, size, mtime_ns, kind, pages, state, reason, chunks"


def vector_text(vector) -> str:
    """pgvector's text form; repr keeps every float32 exactly."""
    return "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).tolist())) + "]"


def parse_vector(text: str) -> np.ndarray:
    return np.array(text[1:-1].split(","), dtype=np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _login_problem(where: str, detail: str, with_certificate: bool = False) -> str:
    """A failed connection in words that say what to fix."""
    low = detail.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        fix = ("the server refused this role's password: check PGPASSWORD or ~/.pgpass (libpq's places) "
               "and the user in team.postgres_dsn")
        if with_certificate:  # clientcert=verify-full reports a certificate for another role this way
            fix += ", and that the certificate in sslcert was issued for that user"
    elif "certificate expired" in low:
        fix = (f"the server refused this machine's client certificate as expired ({detail}): "
               "ask the administrator for a new one (sslcert/sslkey in team.postgres_dsn)")
    elif "certificate authentication failed" in low or "cn mismatch" in low:
        # PostgreSQL's own certificate login: the certificate's CN is not the role (nor
        # mapped to it in pg_ident.conf).
        fix = (f"this client certificate does not name this role ({detail}): use the certificate "
               "issued for the user in team.postgres_dsn, or ask the administrator to map it in pg_ident.conf")
    elif ("certificate required" in low or "alert certificate" in low or "unknown ca" in low
          or "requires a valid client certificate" in low or "alert decrypt error" in low):
        fix = (f"the server wants a client certificate it trusts ({detail}): set sslcert and sslkey "
               "in team.postgres_dsn to this member's certificate and key")
    elif "certificate verify failed" in low or "root certificate" in low or "server certificate" in low:
        fix = f"its certificate could not be verified ({detail}): check team.ca_file"
    elif "no pg_hba.conf entry" in low or "does not exist" in low and "role" in low:
        fix = f"it does not admit this role ({detail}): ask the administrator for a login role"
    else:
        return (f"The team database at {where} cannot be reached: {detail}. "
                "Team collections are unavailable; local collections keep working.")
    return (f"The team database at {where} refused the connection: {fix}. "
            "Team collections are unavailable; local collections keep working.")


def connect_catalog(dsn: str, ca_file: str = "", timeout_s: float = 10.0, autocommit: bool = True):
    import psycopg

    extra = {"connect_timeout": max(1, int(timeout_s)), "application_name": "enclave"}
    if ca_file:
        extra["sslrootcert"] = os.path.expanduser(ca_file)
    try:
        db = psycopg.connect(dsn, autocommit=autocommit, **extra)
    except psycopg.Error as exc:
        raise EnclaveError(_login_problem(dsn_host(dsn), _first_line(exc), "sslcert" in dsn)) from exc
    try:  # relaxed_order: a filtered HNSW scan keeps walking the graph until it has k rows
        db.execute("SET hnsw.iterative_scan = relaxed_order")
        db.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
    except psycopg.Error:
        if not autocommit:
            db.rollback()
    return db


def _usable(conn, reconnect):
    """`conn` while it can still be used, else a new connection from `reconnect` (none yet,
    closed, or dropped by the server)."""
    if conn is not None and not conn.closed and not conn.broken:
        return conn
    return reconnect()


class TeamIndex:
    """Team collections, named team:NAME here and NAME on the server."""

    kind = "team"
    write_batch = 256

    def __init__(self, db, where: str, reconnect=None, reader=None, reader_where: str = "",
                 reconnect_reader=None, max_lag_s: float = 30.0):
        self.db = db
        self._reconnect = reconnect
        self.where = where
        self._reader = reader
        self.reader_where = reader_where
        self._reconnect_reader = reconnect_reader
        self._max_lag_s = max_lag_s
        self._reader_checked = 0.0
        self._reader_ok = reader is not None or reconnect_reader is not None
        self._last_write_lsn: str | None = None
        self.notices: list[str] = []
        self._dims: dict[str, int] = {}  # each collection's dimension as its last lookup saw it
        # The keyword half of a search runs on its own thread and connections (opened on first
        # use), so that it and the vector half run on the server at the same time.
        self._side = threading.local()
        self._side_db = None
        self._side_reader = None
        self._pool = None
        self._check_schema()

    def owns(self, collection: str) -> bool:
        return collection.startswith(PREFIX)

    @contextmanager
    def _errors(self, where: str | None = None):
        import psycopg

        where = where or self.where
        try:
            yield
        except psycopg.errors.InsufficientPrivilege as exc:
            raise EnclaveError(f"The team database at {where} refused this member: {_first_line(exc)}.") from exc
        except psycopg.OperationalError as exc:
            raise EnclaveError(
                f"The team database at {where} stopped answering ({_first_line(exc)}). "
                "Team collections are unavailable; local collections keep working."
            ) from exc

    def _check_schema(self) -> None:
        with self._errors():
            row = self.db.execute("SELECT to_regclass('enclave_schema') IS NOT NULL").fetchone()
            version = self.db.execute("SELECT max(version) FROM enclave_schema").fetchone()[0] if row[0] else 0
        if (version or 0) < len(MIGRATIONS):
            raise EnclaveError(
                f"The team database at {self.where} is not set up for this Enclave (schema {version or 0}, "
                f"needs {len(MIGRATIONS)}). Ask the administrator to run: enclave-cli team-admin migrate."
            )

    def _sql(self, query, params=()):
        """One statement outside a transaction; once more on a new connection when the
        server had dropped this one (every such statement here may run twice)."""
        import psycopg

        if self._on_side():
            return self._side_primary().execute(query, params)  # a failure is retried by candidates()
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
        if self._reconnect is not None:
            self.db = _usable(self.db, self._reconnect)

    # --- the second connection: a search's keyword half -------------------------------------

    def _on_side(self) -> bool:
        return getattr(self._side, "active", False)

    def _side_primary(self):
        self._side_db = _usable(self._side_db, self._reconnect)
        return self._side_db

    def _side_replica(self):
        self._side_reader = _usable(self._side_reader, self._reconnect_reader)
        return self._side_reader

    def _drop_side(self) -> None:
        for conn in (self._side_db, self._side_reader):
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - a broken connection may fail to close
                    pass
        self._side_db = self._side_reader = None

    def _side_pool(self):
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="enclave-team-keyword",
                                            initializer=lambda: setattr(self._side, "active", True))
        return self._pool

    def candidates(self, collection: str, query: str, vector: np.ndarray, n: int):
        """(vector hits, keyword hits), n of each: the keyword query runs on the second
        connection while the vector query runs on this one. Should the second connection fail,
        the keyword query runs again here, where a server that is down is reported."""
        if self._reconnect is None:  # given one connection only: one query after the other
            return self.vector_search(collection, vector, n), self.keyword_search(collection, query, n)
        self._route()  # decided here, once, so that both halves read from the same server
        future = self._side_pool().submit(self.keyword_search, collection, query, n)
        try:
            vector_hits = self.vector_search(collection, vector, n)
        finally:
            failure = future.exception()  # the keyword half has ended either way
        if failure is None:
            return vector_hits, future.result()
        log.info("keyword search on the second connection failed (%s); running it again", _first_line(failure))
        self._drop_side()
        return vector_hits, self.keyword_search(collection, query, n)

    # --- the replica -------------------------------------------------------------------

    def _notice(self, text: str) -> None:
        log.warning("%s", text)
        self.notices.append(text)

    def _read(self, query, params=()):
        """A search statement: on the replica when there is one that is up and not behind
        (nor behind this member's own last write), else on the primary."""
        import psycopg

        if self._reader is None and self._reconnect_reader is None:
            return self._sql(query, params)
        if self._on_side():  # the route was decided by candidates(), on the calling thread
            return (self._side_replica() if self._reader_ok else self._side_primary()).execute(query, params)
        now = self._route()
        if self._reader_ok:
            try:
                return self._reader.execute(query, params)
            except psycopg.OperationalError as exc:
                self._notice(f"The team replica at {self.reader_where} stopped answering ({_first_line(exc)}); "
                             f"searching the primary at {self.where}.")
                self._reader_ok = False
                self._reader_checked = now
        return self._sql(query, params)

    def _route(self) -> float:
        """Check the replica again when the last check is old or this member wrote since."""
        now = time.monotonic()
        if (self._reader is not None or self._reconnect_reader is not None) and (
                now - self._reader_checked > 5.0 or self._last_write_lsn is not None):
            self._reader_ok = self._reader_fresh()
            self._reader_checked = now
        return now

    def _reader_fresh(self) -> bool:
        import psycopg

        try:
            self._reader = _usable(self._reader, self._reconnect_reader)
            # No replayed transaction yet counts as far behind; the LSN check below decides.
            lag, caught_up = self._reader.execute(
                "SELECT coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 1e9), "
                "%s::pg_lsn IS NULL OR pg_last_wal_replay_lsn() >= %s::pg_lsn",
                (self._last_write_lsn, self._last_write_lsn)).fetchone()
        except (psycopg.Error, EnclaveError) as exc:
            if self._reader_ok or not self.notices:
                self._notice(f"The team replica at {self.reader_where} cannot be reached ({_first_line(exc)}); "
                             f"searching the primary at {self.where}.")
            return False
        if not caught_up:
            return False  # this member's own write has not reached it yet: read it where it is
        self._last_write_lsn = None
        if lag > self._max_lag_s and self._primary_ahead():
            if self._reader_ok:
                self._notice(f"The team replica at {self.reader_where} is behind the primary "
                             f"(last replayed {min(lag, 1e6):.0f} s ago); searching the primary at {self.where}.")
            return False
        return True

    def _primary_ahead(self) -> bool:
        """Whether the primary committed anything the replica has not replayed (an idle
        primary makes the replay timestamp look old without the replica being behind)."""
        primary = self._sql("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        replayed = self._reader.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]
        return self._sql("SELECT %s::pg_lsn > %s::pg_lsn", (primary, replayed)).fetchone()[0]

    def _wrote(self) -> None:
        if self._reader is not None or self._reconnect_reader is not None:
            self._last_write_lsn = self._sql("SELECT pg_current_wal_lsn()::text").fetchone()[0]

    # --- collections -------------------------------------------------------------------

    def collection(self, name: str) -> Mapping | None:
        row = self._sql("SELECT name, store_name, embed_model, embed_dim FROM enclave_collections WHERE name = %s",
                        (_unprefixed(name),)).fetchone()
        if row is None:
            self._dims.pop(name, None)
            return None
        if row[3]:
            self._dims[name] = int(row[3])
        return {"name": PREFIX + row[0], "store_name": row[1], "embed_model": row[2], "embed_dim": row[3]}

    def collections(self) -> list[Mapping]:
        rows = self._sql("SELECT name, store_name, embed_model, embed_dim FROM enclave_collections ORDER BY name")
        return [{"name": PREFIX + r[0], "store_name": r[1], "embed_model": r[2], "embed_dim": r[3]} for r in rows]

    def create_collection(self, name: str) -> None:
        raise EnclaveError("Team collections are created by the team's administrator "
                           "(enclave-cli team-admin create NAME, then grant).")

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

    def _require_writable(self, name: str) -> Mapping:
        row = self._require(name)
        if not self._sql("SELECT enclave_can_write(%s)", (_unprefixed(name),)).fetchone()[0]:
            raise EnclaveError(f"Your role may read team collection {name!r} but not add to it or remove "
                               "from it; ask the administrator for write access.")
        return row

    def prepare_collection(self, name: str, model: str, dim: int) -> None:
        """Check that this member may write and embeds with the collection's model; the first
        writer records the model (which builds the collection's vector index)."""
        row = self._require_writable(name)
        bare = _unprefixed(name)
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
    def _transaction(self) -> Iterator:
        import psycopg

        self._alive()
        try:
            with self._errors(), self.db.transaction():
                yield self.db
        except psycopg.errors.CheckViolation as exc:  # enclave_check_chunk: a chunk on another's document
            raise EnclaveError(f"The team database at {self.where} refused the write: {_first_line(exc)}.") from exc
        except psycopg.errors.DataException as exc:  # a vector of the wrong dimension
            raise EnclaveError(f"The team database at {self.where} refused the vectors: {_first_line(exc)}. "
                               "Nothing was written.") from exc
        except psycopg.errors.InsufficientPrivilege:
            raise
        except psycopg.Error as exc:
            if "row-level security" in str(exc):
                raise EnclaveError(f"The team database at {self.where} refused this member's write: "
                                   f"{_first_line(exc)}.") from exc
            raise
        self._wrote()

    def _lock_paths(self, collection: str, paths: Sequence[str]) -> None:
        # In a stable order, so two writers of overlapping batches never deadlock.
        for path in sorted(set(paths)):
            self.db.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", (collection, path))

    def _upsert_document(self, collection, path, *, state, reason=None, content_hash=None, size=None,
                         mtime_ns=None, kind=None, pages=None, chunks=0) -> int:
        # The chunk count is set here, in the one statement the audit trigger sees.
        return self.db.execute(
            """INSERT INTO enclave_documents(collection, path, content_hash, size, mtime_ns, kind, pages,
                                             state, reason, chunks)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (collection, path) DO UPDATE SET
                   content_hash = excluded.content_hash, size = excluded.size, mtime_ns = excluded.mtime_ns,
                   kind = excluded.kind, pages = excluded.pages, state = excluded.state,
                   reason = excluded.reason, chunks = excluded.chunks, updated_by = session_user,
                   updated_at = now()
               RETURNING id""",
            (collection, path, content_hash, size, mtime_ns, kind, pages, state, reason, chunks),
        ).fetchone()[0]

    def _replace_chunks(self, collection: str, doc_id: int, chunks, vectors=None) -> int:
        """Swap a document's chunks (with their vectors); returns how many old ones went."""
        old = {r[0] for r in self.db.execute("SELECT id FROM enclave_chunks WHERE document_id = %s", (doc_id,))}
        self.db.execute("DELETE FROM enclave_chunks WHERE document_id = %s", (doc_id,))
        if chunks:
            with self.db.cursor() as cur:
                cur.executemany(
                    """INSERT INTO enclave_chunks(id, document_id, collection, idx, text, page_start, page_end,
                                                  char_start, char_end, tokens, unit, embedding)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::vector)
                       ON CONFLICT (id) DO UPDATE SET document_id = excluded.document_id, text = excluded.text,
                           embedding = excluded.embedding""",
                    [(c.id, doc_id, collection, c.index, c.text.replace("\x00", ""), c.page_start, c.page_end,
                      c.char_start, c.char_end, c.tokens, c.unit, vector_text(v)) for c, v in zip(chunks, vectors)],
                )
        return len(old - {c.id for c in chunks})

    def record_outcome(self, collection, path, *, state, reason, content_hash, size, mtime_ns, pages) -> int:
        bare = _unprefixed(collection)
        with self._transaction():
            self._lock_paths(bare, [path])
            doc_id = self._upsert_document(bare, path, state=state, reason=reason, content_hash=content_hash,
                                           size=size, mtime_ns=mtime_ns, pages=pages)
            return self._replace_chunks(bare, doc_id, [])

    def write_documents(self, collection: str, docs: Sequence[DocumentWrite], vectors: np.ndarray) -> int:
        """Documents, their chunks and the chunks' vectors in one transaction."""
        bare = _unprefixed(collection)
        removed, start = 0, 0
        with self._transaction():
            self._lock_paths(bare, [d.path for d in docs])
            for d in docs:
                doc_id = self._upsert_document(bare, d.path, state="indexed", content_hash=d.content_hash,
                                               size=d.size, mtime_ns=d.mtime_ns, kind=d.kind, pages=d.pages,
                                               chunks=len(d.chunks))
                removed += self._replace_chunks(bare, doc_id, d.chunks, vectors[start:start + len(d.chunks)])
                start += len(d.chunks)
        return removed

    def forget_document(self, doc: DocumentRow) -> int:
        bare = _unprefixed(doc.collection)
        with self._transaction():
            self._lock_paths(bare, [doc.path])
            gone = self.db.execute("DELETE FROM enclave_documents WHERE id = %s RETURNING chunks",
                                   (doc.id,)).fetchone()
        if gone is None:  # row-level security hid it: this role may not remove from the collection
            self._require_writable(doc.collection)
        return gone[0] if gone else 0

    def recover(self) -> dict[str, int]:
        """Nothing to settle: a chunk and its vector commit or roll back together."""
        return {}

    # --- reading -----------------------------------------------------------------------

    def vector_search(self, collection: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Cosine nearest chunks through the collection's own HNSW index (a partial index on
        its name), as (id, similarity). Row-level security still filters every row."""
        from psycopg import sql

        dim = self._dims.get(collection)  # Engine.search has just looked the collection up
        if dim is None:
            row = self.collection(collection)
            if row is None or not row["embed_dim"]:
                return []
            dim = int(row["embed_dim"])
        # Literals, not parameters: a generic plan could not prove the partial index applies.
        query = sql.SQL(
            "SELECT id, (embedding::vector({dim})) <=> %s::vector({dim}) AS d FROM enclave_chunks "
            "WHERE collection = {name} AND embedding IS NOT NULL "
            "ORDER BY (embedding::vector({dim})) <=> %s::vector({dim}) LIMIT {k}"
        ).format(dim=sql.Literal(dim), name=sql.Literal(_unprefixed(collection)), k=sql.Literal(int(k)))
        text = vector_text(vector)
        rows = self._read(query, (text, text)).fetchall()
        # relaxed_order may return neighbours slightly out of order: sort what came back.
        return sorted(((r[0], 1.0 - float(r[1])) for r in rows), key=lambda h: -h[1])

    def keyword_search(self, collection: str, query: str, k: int) -> list[tuple[str, float]]:
        """Full-text search (websearch_to_tsquery) over the content words, in the server's
        enclave_keyword_search (migrations 6 and 7 say why): the chunks holding the most of
        the question's words, at least k of them (any one word when fewer), ranked by ts_rank.

        OR-ing a question's words matches half of a large collection; ranking every match was
        the query's whole time (benchmarks/team_keyword_fused.py)."""
        words = query_words(query)
        if not words:
            return []
        rows = self._read(
            "SELECT chunk_id, score FROM enclave_keyword_search(%s, "
            "ARRAY(SELECT websearch_to_tsquery('english', s) FROM unnest(%s::text[]) WITH ORDINALITY u(s, n) ORDER BY n), "
            "websearch_to_tsquery('english', %s), %s)",
            (_unprefixed(collection), keyword_stages(words), " or ".join(words), k)).fetchall()
        return [(r[0], float(r[1])) for r in rows]

    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, ChunkRow]:
        if not ids:
            return {}
        rows = self._read(
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
        if not ids:
            return {}
        rows = self._read("SELECT id, embedding::text FROM enclave_chunks WHERE collection = %s AND id = ANY(%s) "
                          "AND embedding IS NOT NULL", (_unprefixed(collection), list(ids)))
        return {r[0]: parse_vector(r[1]) for r in rows}

    def page_words(self, chunk_id: str) -> tuple[int, list] | None:
        return None  # OCR word boxes stay with the member who indexed the scan

    def count_chunks(self, collection: str | None = None) -> int:
        if collection is None:
            return self._sql("SELECT count(*) FROM enclave_chunks").fetchone()[0]
        return self._sql("SELECT count(*) FROM enclave_chunks WHERE collection = %s",
                         (_unprefixed(collection),)).fetchone()[0]

    # --- maintenance -------------------------------------------------------------------

    def verify(self, embed, repair: bool = False) -> dict:
        """Every chunk of each collection this member sees has a vector of the collection's
        dimension; with repair (and write access), missing ones are embedded again from the
        chunk's text."""
        report: dict = {"recovered": {}, "collections": []}
        for row in self.collections():
            bare = _unprefixed(row["name"])
            chunks, vectors, wrong = self._sql(
                "SELECT count(*), count(embedding), count(*) FILTER (WHERE embedding IS NOT NULL "
                "AND vector_dims(embedding) <> %s) FROM enclave_chunks WHERE collection = %s",
                (row["embed_dim"] or 0, bare)).fetchone()
            unsettled = [d.path for d in self.documents(row["name"]) if d.state not in ("indexed", "skipped", "failed")]
            entry = {"collection": row["name"], "chunks": chunks, "vectors": vectors - wrong,
                     "missing_vectors": chunks - vectors + wrong, "orphan_vectors": 0,
                     "documents_to_reindex": unsettled}
            can_write = self._sql("SELECT enclave_can_write(%s)", (bare,)).fetchone()[0]
            if repair and can_write and entry["missing_vectors"]:
                done = rebuild_vectors(self.db, bare, embed, build_index=False)
                entry["repaired"] = True
                entry["vectors"] += done
                entry["missing_vectors"] -= done
            entry["consistent"] = entry["missing_vectors"] == 0
            report["collections"].append(entry)
        return report

    def test_connection(self) -> dict:
        """What the settings page shows: the server reached and what this role sees."""
        names = [r["name"] for r in self.collections()]
        info = {"catalog": self.where, "collections": names}
        if self.reader_where:
            info["replica"] = self.reader_where if self._reader_fresh() else None
        return info

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._drop_side()
        try:
            self.db.close()
        finally:
            if self._reader is not None:
                self._reader.close()


def open_team_index(team) -> TeamIndex:
    """Connect to the database in settings' [team] section; a clear error if it is missing
    or down. A replica (`read_dsn`) that cannot be reached is a notice, not an error."""
    if not team.configured:
        raise EnclaveError("No team database is set: add the [team] section to settings (see the README) "
                           "to use team:NAME collections.")
    problems = team.problems()
    if problems:
        raise EnclaveError("Invalid team settings: " + "; ".join(problems) + ".")
    db = connect_catalog(team.postgres_dsn, team.ca_file, team.timeout_s)
    reconnect_reader = None
    if team.read_dsn:
        def reconnect_reader():
            return connect_catalog(team.read_dsn, team.ca_file, team.timeout_s)
    try:
        return TeamIndex(db, dsn_host(team.postgres_dsn),
                         reconnect=lambda: connect_catalog(team.postgres_dsn, team.ca_file, team.timeout_s),
                         reader_where=dsn_host(team.read_dsn) if team.read_dsn else "",
                         reconnect_reader=reconnect_reader)
    except BaseException:
        db.close()
        raise


# --- administration (the role that owns the tables) --------------------------------------


def schema_version(db) -> int:
    if not db.execute("SELECT to_regclass('enclave_schema') IS NOT NULL").fetchone()[0]:
        return 0
    return db.execute("SELECT coalesce(max(version), 0) FROM enclave_schema").fetchone()[0]


def migrate(db) -> int:
    """Bring the team database's schema up to date; returns the version now. Run by the
    role that owns the tables (the administrator), never by members."""
    import psycopg

    try:
        with db.transaction():
            db.execute("CREATE TABLE IF NOT EXISTS enclave_schema (version INTEGER PRIMARY KEY, "
                       "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            db.execute("LOCK TABLE enclave_schema IN EXCLUSIVE MODE")
            version = db.execute("SELECT coalesce(max(version), 0) FROM enclave_schema").fetchone()[0]
            for number in range(version, len(MIGRATIONS)):
                db.execute(MIGRATIONS[number])
                db.execute("INSERT INTO enclave_schema(version) VALUES (%s)", (number + 1,))
            db.execute(f"GRANT SELECT ON enclave_schema TO {MEMBER_ROLE}")
            # One statement per index: CREATE INDEX refuses to run inside a statement that is
            # itself reading enclave_chunks (a second migrate over collections with vectors failed).
            ready = db.execute("SELECT c.name FROM enclave_collections c WHERE NOT EXISTS (SELECT 1 FROM "
                               "enclave_chunks k WHERE k.collection = c.name AND k.embedding IS NULL)").fetchall()
            for (name,) in ready:
                db.execute("SELECT enclave_vector_index(%s)", (name,))
    except psycopg.errors.InsufficientPrivilege as exc:
        if "extension" in str(exc).lower() or "vector" in str(exc).lower():
            raise EnclaveError("The pgvector extension must be created once by a superuser: "
                               "sudo -u postgres psql -d DBNAME -c 'CREATE EXTENSION vector', "
                               "then run team-admin migrate again.") from exc
        raise
    except psycopg.errors.UndefinedFile as exc:
        raise EnclaveError("The PostgreSQL server has no pgvector extension installed "
                           f"({_first_line(exc)}): install it (Debian/Ubuntu: postgresql-NN-pgvector from "
                           "apt.postgresql.org), then run team-admin migrate again.") from exc
    return len(MIGRATIONS)


def missing_vectors(db) -> dict[str, tuple[str | None, int]]:
    """Per collection: (recorded embedding model, chunks without a vector)."""
    rows = db.execute("SELECT c.name, c.embed_model, count(k.id) FROM enclave_collections c "
                      "JOIN enclave_chunks k ON k.collection = c.name AND k.embedding IS NULL "
                      "GROUP BY c.name, c.embed_model ORDER BY c.name").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def rebuild_vectors(db, collection: str, embed: Callable, batch: int = 256,
                    progress: Callable[[int], None] | None = None, build_index: bool = True) -> int:
    """Embed the chunks of a collection that have no vector, from their text in the database,
    one committed batch at a time: an interrupted rebuild resumes where it stopped. The owner
    (build_index) then builds the collection's HNSW index over all its rows at once and
    analyzes the table: until autovacuum does, a search on a table its statistics say is
    empty is planned badly (3x slower at 10k chunks, benchmarks/team_vectors.py --analyze)."""
    done = 0
    while True:
        with db.transaction():
            rows = db.execute("SELECT id, text FROM enclave_chunks WHERE collection = %s AND embedding IS NULL "
                              "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED", (collection, batch)).fetchall()
            if not rows:
                if build_index:
                    db.execute("SELECT enclave_vector_index(%s)", (collection,))
                    if done:  # searches right after an upgrade are planned on real statistics
                        db.execute("ANALYZE enclave_chunks")
                return done
            vectors = embed([r[1] for r in rows])
            with db.cursor() as cur:
                cur.executemany("UPDATE enclave_chunks SET embedding = %s::vector WHERE id = %s",
                                [(vector_text(v), r[0]) for r, v in zip(rows, vectors)])
        done += len(rows)
        if progress is not None:
            progress(len(rows))


def create_collection(db, name: str) -> str:
    """A new team collection (no model yet: the first writer records it); returns the name
    its vector index will carry."""
    import hashlib

    name = _unprefixed(name)
    store_name = "enclave_team_" + hashlib.sha1(f"{name}:{time.time_ns()}".encode()).hexdigest()[:16]
    db.execute("INSERT INTO enclave_collections(name, store_name) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
               (name, store_name))
    return db.execute("SELECT store_name FROM enclave_collections WHERE name = %s", (name,)).fetchone()[0]


def grant(db, collection: str, role: str, write: bool = False) -> None:
    """Let a role (a person, or a group role people are members of) see a collection, and
    add to it with write."""
    from psycopg import sql

    import psycopg

    collection = _unprefixed(collection)
    try:
        db.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(MEMBER_ROLE), sql.Identifier(role)))
    except psycopg.errors.InsufficientPrivilege as exc:
        # PostgreSQL 16+: a CREATEROLE owner may grant only roles it administers; it does
        # when it created enclave_member, not when another database of the cluster did.
        owner = db.execute("SELECT current_user").fetchone()[0]
        raise EnclaveError(f"The owner role {owner} may not grant {MEMBER_ROLE} ({_first_line(exc)}). As a superuser, "
                           f"run once: GRANT {MEMBER_ROLE} TO {owner} WITH ADMIN OPTION;") from exc
    db.execute("INSERT INTO enclave_grants(collection, role_name, can_write) VALUES (%s, %s, %s) "
               "ON CONFLICT (collection, role_name) DO UPDATE SET can_write = excluded.can_write",
               (collection, role, write))


def revoke(db, collection: str, role: str) -> None:
    db.execute("DELETE FROM enclave_grants WHERE collection = %s AND role_name = %s", (_unprefixed(collection), role))


def audit(db, since=None, limit: int = 10000) -> list[dict]:
    """The audit rows (oldest first), from `since` on when given."""
    rows = db.execute("SELECT id, at, role_name, collection, path, action, chunks, detail FROM enclave_audit "
                      "WHERE %s::timestamptz IS NULL OR at >= %s::timestamptz ORDER BY id LIMIT %s",
                      (since, since, limit)).fetchall()
    return [{"id": r[0], "at": r[1].isoformat(), "role": r[2], "collection": PREFIX + r[3], "path": r[4],
             "action": r[5], "chunks": r[6], "detail": r[7]} for r in rows]
