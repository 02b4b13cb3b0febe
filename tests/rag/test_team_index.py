"""Team collections on a real PostgreSQL with pgvector (behind TLS) with a fake embedder:
routing, fused search, row-level security by every path, refusals and clear errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rag.engine import Engine
from rag.errors import EnclaveError
from tests.fakes import HashEmbedder


@pytest.fixture
def folder(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        (docs / f"policy{i}.txt").write_text(f"Policy {i}: the codeword is walrus{i}. Walrus{i} governs leave.\n")
    return docs


def _engine(team, tmp_path, member, **kw):
    return Engine(tmp_path / f"data-{member}", settings=team.settings(member), embedder=kw.pop("embedder", None)
                  or HashEmbedder(), **kw)


def test_a_team_collection_is_written_by_one_member_and_searched_by_another(team, tmp_path, folder):
    alice, bob = _engine(team, tmp_path, "alice"), _engine(team, tmp_path, "bob")
    report = alice.index_all([folder], collection="team:handbook")
    assert report.indexed == 4 and not report.failed
    assert alice.collections() == []  # nothing was written locally
    hits = bob.search("walrus2", "team:handbook", k=2)
    assert hits[0].path == str(folder / "policy2.txt") and hits[0].collection == "team:handbook"
    assert hits[0].vector_score is not None and "walrus2" in hits[0].text
    assert [d.path for d in bob.documents("team:handbook")] == sorted(str(p) for p in folder.iterdir())
    # A second run is free; a changed file is replaced, not duplicated.
    assert alice.index_all([folder], collection="team:handbook").unchanged == 4
    (folder / "policy1.txt").write_text("Policy 1 now speaks of narwhals only.\n")
    again = alice.index_all([folder], collection="team:handbook")
    assert again.indexed == 1 and again.chunks_removed >= 1
    assert not [h for h in bob.search("walrus1", "team:handbook", k=10) if "walrus1" in h.text]
    # Each chunk's vector is in its own row, of the collection's dimension.
    db = team.admin()
    rows = db.execute("SELECT count(*), count(embedding), min(vector_dims(embedding)) FROM enclave_chunks "
                      "WHERE collection = 'handbook'").fetchone()
    assert rows == (4, 4, 64)
    db.close()
    # A catalog connection that the server dropped is made again on the next call.
    db = team.admin()
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (team.role("bob"),))
    db.close()
    assert bob.search("walrus2", "team:handbook", k=1)[0].path.endswith("policy2.txt")
    verify = bob.verify()
    assert verify["consistent"], verify
    team_entry = [c for c in verify["collections"] if c["collection"] == "team:handbook"][0]
    assert team_entry["chunks"] == team_entry["vectors"] == 4
    alice.close(), bob.close()


def test_a_search_runs_its_keyword_half_on_a_second_connection_at_the_same_time(team, tmp_path, folder):
    """The vector and keyword queries go to the server on two connections, each on its own
    backend, and find what one query after the other finds; a second connection the server
    dropped costs nothing but its reconnection."""
    import threading

    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:handbook")
    index = alice.team
    alice.search("walrus2", "team:handbook", k=2)
    assert index._side_db is not None and not index._side_db.closed
    pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in (index.db, index._side_db)}
    assert len(pids) == 2

    # At the same time: each half waits, inside its query, until the other has started its own.
    started = threading.Barrier(2, timeout=20)
    vector_search, keyword_search = index.vector_search, index.keyword_search

    def together(search):
        def call(*args):
            started.wait()  # a BrokenBarrierError here: the halves ran one after the other
            return search(*args)
        return call

    index.vector_search, index.keyword_search = together(vector_search), together(keyword_search)
    try:
        vector = alice.embedder.embed(["walrus2"])[0]
        both = index.candidates("team:handbook", "walrus2", vector, 8)
    finally:
        index.vector_search, index.keyword_search = vector_search, keyword_search
    assert both == (vector_search("team:handbook", vector, 8), keyword_search("team:handbook", "walrus2", 8))
    assert both[1] and both[1][0][0] in {h.chunk_id for h in alice.search("walrus2", "team:handbook", k=1)}

    db = team.admin()
    side_pid = index._side_db.execute("SELECT pg_backend_pid()").fetchone()[0]
    db.execute("SELECT pg_terminate_backend(%s)", (side_pid,))
    db.close()
    hits = alice.search("walrus3", "team:handbook", k=1)
    assert hits[0].path.endswith("policy3.txt") and hits[0].keyword_score is not None
    alice.close()
    assert index._side_db is None and index._pool is None


def test_local_and_team_collections_are_searched_together(team, tmp_path, folder):
    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:handbook")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "diary.txt").write_text("My own note: the walrus2 meeting moved to Friday.\n")
    alice.index_all([mine], collection="private")
    hits = alice.search("walrus2", ["private", "team:handbook"], k=3)
    assert {h.collection for h in hits} == {"private", "team:handbook"}
    assert {h.path for h in hits[:2]} == {str(mine / "diary.txt"), str(folder / "policy2.txt")}
    # One collection alone is what it was.
    assert [h.collection for h in alice.search("walrus2", "private", k=3)] == ["private"]
    alice.close()


def test_a_member_never_sees_a_collection_not_granted_and_locals_stay_local(team, tmp_path, folder):
    alice, bob = _engine(team, tmp_path, "alice"), _engine(team, tmp_path, "bob")
    alice.index_all([folder], collection="team:board")
    assert alice.search("walrus3", "team:board", k=1)
    assert bob.search("walrus3", "team:board", k=5) == []
    assert bob.documents("team:board") == []
    assert bob.team_collections() == ["team:handbook"]
    assert sorted(alice.team_collections()) == ["team:board", "team:handbook", "team:reference"]
    with pytest.raises(EnclaveError, match="no team collection 'team:board'.*not\\s+been granted"):
        bob.index_all([folder], collection="team:board")
    with pytest.raises(EnclaveError, match="may read team collection 'team:handbook' but not add"):
        bob.index_all([folder], collection="team:handbook")
    # Bob's own collection is in his data folder only: the team catalog never hears of it.
    bob.index_all([folder / "policy0.txt"], collection="bobs-notes")
    assert alice.search("walrus0", "bobs-notes", k=5) == []
    db = team.admin()
    paths = {r[0] for r in db.execute("SELECT DISTINCT collection FROM enclave_documents")}
    assert paths == {"board"}
    # Bob's role, asking the catalog directly, sees no row of the board either.
    from rag.index.team import connect_catalog

    raw = connect_catalog(team.settings("bob").team.postgres_dsn)
    assert raw.execute("SELECT count(*) FROM enclave_chunks WHERE collection = 'board'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM enclave_chunks WHERE collection = 'board'").fetchone()[0] == 4
    raw.close(), db.close(), alice.close(), bob.close()


def test_a_member_with_another_embedding_model_is_refused_before_writing(team, tmp_path, folder):
    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:handbook")
    other = Engine(tmp_path / "data-other", settings=team.settings("alice"),
                   embedder=HashEmbedder(name="another-model", dim=32))
    with pytest.raises(EnclaveError, match="holds vectors of the embedding model fake-hash-embedder .64 dimensions.; "
                                           "this Enclave embeds with another-model .32 dimensions."):
        other.index_all([folder], collection="team:handbook")
    with pytest.raises(EnclaveError, match="indexed with the embedding model fake-hash-embedder"):
        other.search("walrus1", "team:handbook")
    assert alice.team.count_chunks("team:handbook") == 4
    alice.close(), other.close()


def test_a_wrong_password_is_one_message_naming_what_to_fix(team, tmp_path, folder):
    dsn = team.settings("alice").team.postgres_dsn.replace(team.passwords[team.role("alice")], "not-the-password")
    member = Engine(tmp_path / "data-x", settings=team.settings("alice", postgres_dsn=dsn), embedder=HashEmbedder())
    with pytest.raises(EnclaveError, match="team database at 127.0.0.1:\\d+ refused the connection: the server "
                                           "refused this role's password: check PGPASSWORD or ~/.pgpass"):
        member.index_all([folder], collection="team:handbook")
    assert member.index_all([folder], collection="mine").indexed == 4  # local collections keep working
    member.close()


def test_a_server_that_is_down_gives_a_clear_message_and_local_collections_keep_working(team, tmp_path, folder):
    from tests.servers import free_port

    closed = free_port()
    dsn = team.settings("alice").team.postgres_dsn.replace(f"port={team.servers.tls_port}", f"port={closed}")
    engine = Engine(tmp_path / "data-down2", embedder=HashEmbedder(), settings=team.settings("alice", postgres_dsn=dsn))
    with pytest.raises(EnclaveError, match=f"team database at 127.0.0.1:{closed} cannot be reached.*"
                                           "local collections keep working"):
        engine.search("walrus1", "team:handbook")
    assert engine.index_all([folder], collection="mine").indexed == 4
    assert engine.search("walrus1", "mine", k=1)[0].path.endswith("policy1.txt")
    assert engine.verify(team=False)["consistent"]
    engine.close()


def test_without_team_settings_team_names_are_a_clear_error(tmp_path):
    engine = Engine(tmp_path / "data-none", embedder=HashEmbedder())
    with pytest.raises(EnclaveError, match="No team database is set"):
        engine.search("x", "team:handbook")
    engine.close()


def _open_tcp_peers() -> "Counter[tuple[str, int]]":
    """Remote ends of this process's TCP connections (Python's and libpq's alike), from /proc."""
    import os

    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    from collections import Counter

    peers: Counter = Counter()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                remote, state, inode = fields[2], fields[3], fields[9]
                if inode in inodes and state == "01":  # established
                    address, port = remote.split(":")
                    if len(address) == 8:
                        host = socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1])
                    else:
                        host = socket.inet_ntop(socket.AF_INET6, b"".join(
                            bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8)))
                    peers[(host, int(port, 16))] += 1
    return peers


def test_the_client_contacts_only_the_configured_hosts(team, tmp_path, folder, monkeypatch):
    seen: set[tuple[str, int]] = set()
    real = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            seen.add((address[0], address[1]))
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    before = _open_tcp_peers()
    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:handbook")
    alice.search("walrus1", "team:handbook")
    alice.verify()
    opened = _open_tcp_peers() - before
    alice.close()
    configured = {("127.0.0.1", team.servers.tls_port)}
    # No Python socket at all (there is no vector server any more); libpq's socket reaches the
    # configured database port only, never PostgreSQL behind the TLS terminator.
    assert seen == set()
    assert opened[("127.0.0.1", team.servers.tls_port)] >= 1 and set(opened) <= configured


def test_a_writer_that_dies_mid_transaction_leaves_no_chunk_and_no_vector(team, tmp_path, folder):
    from rag.index.team import open_team_index, vector_text

    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:handbook")
    dying = open_team_index(team.settings("alice").team)
    dying.db.execute("BEGIN")
    doc = dying._upsert_document("handbook", "/half.txt", state="indexed", chunks=1)
    dying.db.execute("INSERT INTO enclave_chunks(id, document_id, collection, idx, text, char_start, char_end, "
                     "tokens, embedding) VALUES ('half-0', %s, 'handbook', 0, 'half written', 0, 12, 2, %s::vector)",
                     (doc, vector_text([1.0] * 64)))
    dying.db.close()  # the client is gone before COMMIT
    db = team.admin()
    assert db.execute("SELECT count(*) FROM enclave_chunks WHERE id = 'half-0'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM enclave_documents WHERE path = '/half.txt'").fetchone()[0] == 0
    db.close()
    report = alice.verify()
    assert report["consistent"] and report["team_recovered"] == {}
    alice.close()


def test_a_database_that_never_answers_is_a_message_within_the_time_limit(team, tmp_path):
    import time

    silent = socket.socket()  # accepts connections (the kernel does) and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    dsn = team.settings("alice").team.postgres_dsn.replace(f"port={team.servers.tls_port}", f"port={port}")
    engine = Engine(tmp_path / "data-silent", embedder=HashEmbedder(),
                    settings=team.settings("alice", postgres_dsn=dsn, timeout_s=2.0))
    started = time.monotonic()
    try:
        with pytest.raises(EnclaveError, match=f"team database at 127.0.0.1:{port} cannot be reached"):
            engine.search("walrus1", "team:handbook")
        assert time.monotonic() - started < 30
    finally:
        engine.close()
        silent.close()


def test_removed_and_deleted_files_leave_the_team_collection_with_their_vectors(team, tmp_path, folder):
    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:handbook")
    assert alice.remove([folder / "policy0.txt"], "team:handbook") == [str(folder / "policy0.txt")]
    (folder / "policy3.txt").unlink()
    report = alice.index_all([folder], collection="team:handbook")
    assert report.removed_documents == 1 and report.unchanged == 2 and report.indexed == 1  # policy0 again
    alice.remove([folder / "policy1.txt"], "team:handbook")
    assert sorted(d.path for d in alice.documents("team:handbook")) == [str(folder / "policy0.txt"),
                                                                         str(folder / "policy2.txt")]
    db = team.admin()
    assert db.execute("SELECT count(embedding) FROM enclave_chunks").fetchone()[0] == 2
    db.close()
    assert alice.team.count_chunks("team:handbook") == 2
    assert alice.search("walrus3", "team:handbook", k=5)[0].path.endswith(("policy0.txt", "policy2.txt"))
    assert alice.verify()["consistent"]
    alice.close()


def test_a_collection_granted_to_a_group_role_is_seen_by_its_members(team, tmp_path, folder):
    from psycopg import sql

    from rag.index import team as team_db

    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:board")
    group = team.role("staff")
    db = team.admin()
    db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
    try:
        team_db.grant(db, "board", group)
        bob = _engine(team, tmp_path, "bob")
        assert bob.search("walrus1", "team:board", k=1) == []  # not in the group yet
        db.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(team.role("bob"))))
        assert bob.search("walrus1", "team:board", k=1)[0].path.endswith("policy1.txt")
        assert sorted(bob.team_collections()) == ["team:board", "team:handbook"]
        bob.close()
    finally:
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(group)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(group)))
        db.close()
        alice.close()


def test_bob_with_his_own_credentials_cannot_read_or_change_board_vectors_by_any_path(team, tmp_path, folder):
    import psycopg

    from rag.index.team import connect_catalog, vector_text

    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:board")
    alice.index_all([folder], collection="team:handbook")
    admin = team.admin()

    def board_state():
        return admin.execute("SELECT count(*), md5(string_agg(id || text || embedding::text, ',' ORDER BY id)) "
                             "FROM enclave_chunks WHERE collection = 'board'").fetchone()

    before = board_state()
    audit_rows = admin.execute("SELECT count(*) FROM enclave_audit").fetchone()[0]
    bob = connect_catalog(team.settings("bob").team.postgres_dsn)
    near = vector_text([1.0] * 64)
    # Reading: nothing of the board, by vector order, by text, or by counting.
    assert bob.execute("SELECT id, embedding FROM enclave_chunks WHERE collection = 'board'").fetchall() == []
    assert bob.execute("SELECT id FROM enclave_chunks ORDER BY embedding::vector(64) <=> %s::vector(64) LIMIT 50",
                       (near,)).fetchall() != []  # his own collection's rows ...
    assert not [r for r in bob.execute("SELECT collection FROM enclave_chunks").fetchall() if r[0] != "handbook"]
    assert bob.execute("SELECT count(*) FROM enclave_documents WHERE collection = 'board'").fetchone()[0] == 0
    # Writing the board: INSERT refused by the server; UPDATE and DELETE see no row to touch.
    doc_id = admin.execute("SELECT id FROM enclave_documents WHERE collection = 'board' LIMIT 1").fetchone()[0]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        bob.execute("INSERT INTO enclave_chunks(id, document_id, collection, idx, text, char_start, char_end, tokens, "
                    "embedding) VALUES ('poison', %s, 'board', 0, 'x', 0, 1, 1, %s::vector)", (doc_id, near))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        bob.execute("INSERT INTO enclave_documents(collection, path, state) VALUES ('board', '/x', 'indexed')")
    assert bob.execute("UPDATE enclave_chunks SET embedding = %s::vector WHERE collection = 'board'",
                       (near,)).rowcount == 0
    assert bob.execute("DELETE FROM enclave_chunks WHERE collection = 'board'").rowcount == 0
    assert bob.execute("DELETE FROM enclave_documents WHERE collection = 'board'").rowcount == 0
    assert bob.execute("UPDATE enclave_collections SET embed_model = 'x', embed_dim = 3").rowcount == 0
    # Read-only on the handbook: he sees it and can change none of it either.
    assert bob.execute("SELECT count(embedding) FROM enclave_chunks WHERE collection = 'handbook'").fetchone()[0] == 4
    assert bob.execute("UPDATE enclave_chunks SET embedding = %s::vector", (near,)).rowcount == 0
    assert bob.execute("DELETE FROM enclave_chunks").rowcount == 0
    # The audit table and the owner's functions are closed to him.
    for statement in ("SELECT * FROM enclave_audit", "DELETE FROM enclave_audit", "UPDATE enclave_audit SET role_name = 'x'",
                      "INSERT INTO enclave_audit(collection, action) VALUES ('board', 'forged')",
                      "SELECT enclave_vector_index('board')", "TRUNCATE enclave_chunks",
                      "DROP INDEX IF EXISTS enclave_chunks_tsv", "ALTER TABLE enclave_chunks DISABLE ROW LEVEL SECURITY"):
        with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.WrongObjectType)):
            bob.execute(statement)
    # The keyword function reads with the owner's rights (so GIN serves it): the same grants filter it.
    keyword = ("SELECT chunk_id FROM enclave_keyword_search(%s, ARRAY[websearch_to_tsquery('english', 'walrus2')], "
               "websearch_to_tsquery('english', 'walrus2'), 5)")
    assert bob.execute(keyword, ("board",)).fetchall() == []
    assert len(bob.execute(keyword, ("handbook",)).fetchall()) == 1
    bob.close()
    assert board_state() == before and before[0] == 4
    assert admin.execute("SELECT count(*) FROM enclave_audit").fetchone()[0] == audit_rows
    # Through the CLI's engine: refused with the collection named, and alice still searches.
    bob_engine = _engine(team, tmp_path, "bob")
    with pytest.raises(EnclaveError, match="'team:board'"):
        bob_engine.index_all([folder], collection="team:board")
    with pytest.raises(EnclaveError, match="'team:handbook' but not add"):
        bob_engine.remove([folder / "policy0.txt"], "team:handbook")
    assert bob_engine.search("walrus2", "team:board", k=3) == []
    assert alice.search("walrus2", "team:board", k=1)[0].path.endswith("policy2.txt")
    bob_engine.close(), alice.close(), admin.close()


def test_a_member_temporary_table_cannot_stand_in_for_the_grants_or_the_audit(team, tmp_path, folder):
    """The owner's functions once searched a member's temporary schema first: a temporary
    enclave_grants gave bob every collection (he read and deleted team:board's 4 chunks), a
    temporary enclave_audit would have hidden his writes."""
    import psycopg

    from rag.index import team as team_db

    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:board")
    alice.close()
    admin = team.admin()
    audit_rows = admin.execute("SELECT count(*) FROM enclave_audit").fetchone()[0]
    bob = psycopg.connect(team.servers.dsn(team.role("bob"), team.passwords[team.role("bob")], team.dbname),
                          autocommit=True)
    bob.execute("CREATE TEMP TABLE enclave_grants (collection TEXT, role_name TEXT, can_write BOOLEAN)")
    bob.execute("INSERT INTO pg_temp.enclave_grants VALUES ('board', session_user, true), "
                "('handbook', session_user, true)")
    bob.execute("CREATE TEMP TABLE enclave_audit (id SERIAL, at TIMESTAMPTZ DEFAULT now(), role_name TEXT "
                "DEFAULT session_user, collection TEXT, path TEXT, action TEXT, chunks INTEGER, detail TEXT)")
    assert bob.execute("SELECT count(*) FROM enclave_chunks WHERE collection = 'board'").fetchone()[0] == 0
    assert bob.execute("DELETE FROM enclave_chunks WHERE collection = 'board'").rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        bob.execute("INSERT INTO enclave_documents(collection, path, state) VALUES ('handbook', '/x', 'indexed')")
    bob.close()
    assert admin.execute("SELECT count(*) FROM enclave_chunks WHERE collection = 'board'").fetchone()[0] == 4
    assert admin.execute("SELECT count(*) FROM enclave_audit").fetchone()[0] == audit_rows
    # Every function that runs with the owner's rights searches pg_temp last (the keyword
    # search also plans with each call's values, migration 7), and members cannot create
    # objects in public.
    paths = admin.execute("SELECT p.proname, p.proconfig FROM pg_proc p WHERE p.prosecdef "
                          "AND p.pronamespace = 'public'::regnamespace").fetchall()
    safe = f"search_path={team_db.SAFE_PATH}"
    assert len(paths) >= 9 and all(sorted(config) == (["plan_cache_mode=force_custom_plan", safe]
                                                      if name == "enclave_keyword_search" else [safe])
                                   for name, config in paths), paths
    assert not admin.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", (team.role("bob"),)).fetchone()[0]
    admin.close()


def test_a_member_search_walks_the_collection_own_hnsw_index(team, tmp_path, folder):
    from rag.index.team import connect_catalog, vector_text

    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:handbook")
    bob = connect_catalog(team.settings("bob").team.postgres_dsn)
    for kind in ("seqscan", "bitmapscan", "sort"):  # four rows: make the planner show the index it may use
        bob.execute(f"SET enable_{kind} = off")
    plan = "\n".join(r[0] for r in bob.execute(
        "EXPLAIN SELECT id FROM enclave_chunks WHERE collection = 'handbook' AND embedding IS NOT NULL "
        "ORDER BY (embedding::vector(64)) <=> %s::vector(64) LIMIT 10", (vector_text([1.0] * 64),)))
    store = alice.team.collection("team:handbook")["store_name"]
    assert f"{store}_hnsw" in plan, plan
    assert bob.execute("SHOW hnsw.iterative_scan").fetchone()[0] == "relaxed_order"
    bob.close(), alice.close()


def test_keyword_search_ranks_the_chunks_holding_the_most_question_words_first(team, tmp_path):
    docs = tmp_path / "kw"
    docs.mkdir()
    texts = {"all": "The amber falcon nests in the quarry.", "two_a": "An amber falcon flew by.",
             "two_b": "A falcon over the quarry.", "one": "Amber is fossil resin.",
             "none": "Nothing of the kind here."}
    for name, text in texts.items():
        (docs / f"{name}.txt").write_text(text + "\n")
    alice = _engine(team, tmp_path, "alice")
    alice.index_all([docs], collection="team:handbook")

    def found(k):
        hits = alice.team.keyword_search("team:handbook", "amber falcon quarry?", k)
        paths = {c.id: c.path for c in alice.team.chunks_by_id([h[0] for h in hits]).values()}
        return [Path(paths[h[0]]).stem for h in hits]

    assert found(1) == ["all"]  # three words in one chunk: the strict stage alone answers
    top = found(3)
    assert top[0] == "all" and sorted(top[1:]) == ["two_a", "two_b"]
    assert sorted(found(10)) == ["all", "one", "two_a", "two_b"]  # too few: any word, never "none"
    alice.close()


def test_the_keyword_function_tells_a_member_nothing_of_a_collection_he_may_not_read(team, tmp_path, folder):
    """enclave_keyword_search reads with the owner's rights. Whatever bob passes (a collection
    he has no grant on, one that does not exist, an injection for a name, k NULL, negative or
    huge, no stages, too many, NULL ones, a query too large), the answer for the board is the
    answer for a collection that does not exist: the arguments are judged before the grants."""
    import psycopg

    from rag.index.team import connect_catalog

    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:board")
    alice.index_all([folder], collection="team:handbook")
    alice.close()
    bob = connect_catalog(team.settings("bob").team.postgres_dsn)
    call = "SELECT chunk_id, score FROM enclave_keyword_search(%s, %s::tsquery[], %s::tsquery, %s)"
    word = "'walrus2'"
    many = " | ".join(f"'w{i}'" for i in range(600))  # 1199 nodes

    def answer(collection, stages, ranked, k):
        try:
            return ("rows", bob.execute(call, (collection, stages, ranked, k)).fetchall())
        except psycopg.Error as exc:
            return (type(exc).__name__, str(exc).splitlines()[0])

    refused = ("InvalidParameterValue", "enclave_keyword_search takes k up to 1000, up to 16 stages and "
               "queries of up to 1000 nodes")
    found, empty = 1, 0
    cases = [(([word], word, 5), found), (([word, None], word, 5), found), (([None, word], word, 5), found),
             (([word], word, 0), empty), (([word], word, -1), empty), (([word], word, None), empty),
             ((None, word, 5), empty), (([], word, 5), empty), (([None], word, 5), empty), (([word], None, 5), empty),
             (([word], word, 1001), refused), (([word], word, 2**31 - 1), refused), (([word] * 17, word, 5), refused),
             (([word], many, 5), refused), (([many], word, 5), refused)]
    for args, expected in cases:
        board = answer("board", *args)
        assert board == answer("no-such-collection", *args), args
        readable = answer("handbook", *args)
        if expected == refused:  # the same refusal whether he may read the collection or not
            assert board == readable == refused, (args, board, readable)
        else:
            assert board == ("rows", []), (args, board)
            assert readable[0] == "rows" and len(readable[1]) == expected, (args, readable)
    # A name is a value, never SQL.
    for name in (None, "board' OR true --", "handbook' OR '1'='1", "handbook; SELECT 1", "%", "handbook "):
        assert answer(name, [word], word, 5) == ("rows", []), name
    bob.close()


def test_a_vector_of_the_wrong_dimension_is_refused_by_the_server(team, tmp_path, folder):
    import numpy as np

    from rag.index.base import DocumentWrite
    from rag.types import Chunk

    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:handbook")
    chunk = Chunk(id="odd-0", index=0, text="odd", page_start=None, page_end=None, char_start=0, char_end=3, tokens=1)
    doc = DocumentWrite("/odd.txt", "h", 3, 0, "text", None, [chunk])
    with pytest.raises(EnclaveError, match="holds vectors of 64 dimensions, not 32.*Nothing was written"):
        alice.team.write_documents("team:handbook", [doc], np.ones((1, 32), dtype=np.float32))
    assert alice.team.document("team:handbook", "/odd.txt") is None
    alice.close()


def test_migrate_brings_a_database_at_the_chroma_era_schema_to_pgvector_resumably(team_servers, tmp_path, folder):
    import secrets

    from psycopg import sql

    from rag.index import team as team_db

    suffix = secrets.token_hex(4)
    dbname, member = f"enclave_old_{suffix}", f"dave_{suffix}"
    root = team_db.connect_catalog(team_servers.dsn())
    root.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    root.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'dave-pw'").format(sql.Identifier(member)))
    admin = team_db.connect_catalog(team_servers.dsn(dbname=dbname))
    try:
        # The schema as main left it (2), with 600 chunks whose vectors were on the Chroma server.
        admin.execute("CREATE TABLE enclave_schema (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL "
                      "DEFAULT now())")
        for number, script in enumerate(team_db.MIGRATIONS[:2], 1):
            admin.execute(script)
            admin.execute("INSERT INTO enclave_schema(version) VALUES (%s)", (number,))
        admin.execute("INSERT INTO enclave_collections VALUES ('wiki', 'enclave_team_old', 'fake-hash-embedder', 64)")
        team_db.grant(admin, "wiki", member, write=True)
        doc = admin.execute("INSERT INTO enclave_documents(collection, path, state, chunks) "
                            "VALUES ('wiki', '/wiki/page.txt', 'indexed', 600) RETURNING id").fetchone()[0]
        with admin.cursor() as cur:
            cur.executemany("INSERT INTO enclave_chunks(id, document_id, collection, idx, text, char_start, char_end, "
                            "tokens) VALUES (%s, %s, 'wiki', %s, %s, 0, 10, 5)",
                            [(f"c{i:04d}", doc, i, f"Page {i}: the codeword is okapi{i}.") for i in range(600)])
        assert team_db.migrate(admin) == len(team_db.MIGRATIONS)
        assert team_db.missing_vectors(admin) == {"wiki": ("fake-hash-embedder", 600)}
        index = "SELECT count(*) FROM pg_indexes WHERE indexname = 'enclave_team_old_hnsw'"
        assert admin.execute(index).fetchone()[0] == 0  # built once the vectors are in
        embedder = HashEmbedder()
        calls = []

        def dies_on_the_third_batch(texts):
            calls.append(len(texts))
            if len(calls) == 3:
                raise KeyboardInterrupt  # the administrator's Ctrl-C, or a crash
            return embedder.embed(texts)

        with pytest.raises(KeyboardInterrupt):
            team_db.rebuild_vectors(admin, "wiki", dies_on_the_third_batch, batch=100)
        assert team_db.missing_vectors(admin) == {"wiki": ("fake-hash-embedder", 400)}  # two batches kept
        steps = []
        assert team_db.rebuild_vectors(admin, "wiki", embedder.embed, batch=100, progress=steps.append) == 400
        assert steps == [100] * 4 and team_db.missing_vectors(admin) == {}
        assert admin.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'enclave_team_old_hnsw'"
                             ).fetchone()[0] == 1
        # Analyzed at the end, so the first searches are planned on what the table holds.
        # (Column statistics come from ANALYZE only; building an index counts rows but leaves none.)
        assert admin.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'enclave_chunks' "
                             "AND attname = 'collection'").fetchone()[0] == 1
        # Run again (the next upgrade) over a collection whose vectors and index are in: nothing to do.
        assert team_db.migrate(admin) == len(team_db.MIGRATIONS)
        from rag.config import Settings, TeamSettings

        settings = Settings(team=TeamSettings(postgres_dsn=team_servers.dsn(member, "dave-pw", dbname)))
        dave = Engine(tmp_path / "data-dave", settings=settings, embedder=HashEmbedder())
        hits = dave.search("okapi417", "team:wiki", k=3)
        assert hits[0].chunk_id == "c0417" and hits[0].vector_score is not None
        verify = dave.verify()
        assert verify["consistent"], verify
        dave.close()
    finally:
        admin.close()
        root.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
        root.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(member)))
        root.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(member)))
        root.close()


def test_the_audit_lists_every_write_and_grant_with_the_role_and_members_cannot_touch_it(team, tmp_path, folder):
    from rag.index import team as team_db

    alice = _engine(team, tmp_path, "alice")
    alice.index_all([folder], collection="team:handbook")
    (folder / "policy1.txt").write_text("Policy 1 now speaks of narwhals only.\n")
    alice.index_all([folder], collection="team:handbook")
    alice.remove([folder / "policy0.txt"], "team:handbook")
    bob = _engine(team, tmp_path, "bob")
    with pytest.raises(EnclaveError):
        bob.index_all([folder], collection="team:handbook")
    db = team.admin()
    rows = team_db.audit(db)
    writes = [(r["role"], r["action"], r["path"], r["chunks"]) for r in rows if r["action"] not in ("grant", "revoke")]
    a = team.role("alice")
    assert sorted(writes[:4]) == [(a, "indexed", str(folder / f"policy{i}.txt"), 1) for i in range(4)]
    assert writes[4:] == [(a, "replaced", str(folder / "policy1.txt"), 1), (a, "removed", str(folder / "policy0.txt"), 1)]
    grants = [(r["collection"], r["detail"]) for r in rows if r["action"] == "grant"]
    assert ("team:handbook", f"{team.role('bob')} (read)") in grants
    assert not [r for r in rows if r["role"] == team.role("bob")]
    later = team_db.audit(db, since=rows[-1]["at"])
    assert [r["id"] for r in later] == [rows[-1]["id"]]
    team_db.revoke(db, "handbook", team.role("bob"))
    assert team_db.audit(db)[-1]["action"] == "revoke"
    db.close(), alice.close(), bob.close()


def test_searches_go_to_the_replica_and_fall_back_to_the_primary_when_it_is_down_or_behind(team, tmp_path, folder):
    from rag.index.team import connect_catalog
    from tests.servers import free_port

    servers = team.servers
    if not servers.replica_tls_port:
        pytest.skip("these test servers run no replica")
    alice_role, bob_role = team.role("alice"), team.role("bob")
    replica = servers.dsn(alice_role, team.passwords[alice_role], team.dbname, port=servers.replica_tls_port)
    alice = Engine(tmp_path / "data-a", embedder=HashEmbedder(), settings=team.settings("alice", read_dsn=replica))
    alice.index_all([folder], collection="team:handbook")
    # Her own write is found at once: the replica has replayed it, or she reads the primary.
    assert alice.search("walrus2", "team:handbook", k=1)[0].path.endswith("policy2.txt")
    assert alice.team.test_connection()["replica"] == f"127.0.0.1:{servers.replica_tls_port}"
    assert alice.team._reader.execute("SELECT pg_is_in_recovery()").fetchone()[0]  # searches read a standby
    # The replica holds the same row-level security: bob sees no board row there either.
    bob_replica = connect_catalog(servers.dsn(bob_role, team.passwords[bob_role], team.dbname,
                                              port=servers.replica_tls_port))
    with pytest.raises(Exception, match="read-only"):
        bob_replica.execute("DELETE FROM enclave_chunks")
    bob_replica.close()

    # Behind: replay paused on the standby while alice writes; bob's search reads the primary.
    standby = connect_catalog(servers.dsn(dbname=team.dbname, port=servers.replica_tls_port))
    standby.execute("SELECT pg_wal_replay_pause()")
    try:
        (folder / "late.txt").write_text("A late policy about the walrus99 rota.\n")
        alice.index_all([folder], collection="team:handbook")
        bob_dsn = servers.dsn(bob_role, team.passwords[bob_role], team.dbname, port=servers.replica_tls_port)
        bob = Engine(tmp_path / "data-b", embedder=HashEmbedder(), settings=team.settings("bob", read_dsn=bob_dsn))
        bob.team._max_lag_s = 0.0
        assert bob.search("walrus99", "team:handbook", k=1)[0].path.endswith("late.txt")
        assert any("is behind the primary" in n for n in bob.team.notices), bob.team.notices
        bob.close()
    finally:
        standby.execute("SELECT pg_wal_replay_resume()")
        standby.close()

    # Down: a replica nobody answers at; one notice, and searches go on against the primary.
    down = replica.replace(f"port={servers.replica_tls_port}", f"port={free_port()}")
    carol = Engine(tmp_path / "data-c", embedder=HashEmbedder(), settings=team.settings("alice", read_dsn=down))
    assert carol.search("walrus3", "team:handbook", k=1)[0].path.endswith("policy3.txt")
    assert carol.search("walrus1", "team:handbook", k=1)[0].path.endswith("policy1.txt")
    assert len(carol.team.notices) == 1 and "replica at 127.0.0.1" in carol.team.notices[0]
    assert "searching the primary" in carol.team.notices[0]
    carol.close(), alice.close()


def test_a_client_certificate_port_admits_a_valid_certificate_and_names_what_is_wrong_otherwise(team, tmp_path, folder):
    from tests.servers import client_certificate

    servers = team.servers
    role = team.role("alice")
    base = servers.dsn(role, team.passwords[role], team.dbname, port=servers.cert_port)
    cert, key = client_certificate(tmp_path, servers.ca_file, servers.ca_key, role)
    good = Engine(tmp_path / "data-cert", embedder=HashEmbedder(),
                  settings=team.settings("alice", postgres_dsn=f"{base} sslcert={cert} sslkey={key}"))
    assert good.index_all([folder], collection="team:handbook").indexed == 4
    assert good.search("walrus1", "team:handbook", k=1)[0].path.endswith("policy1.txt")
    good.close()
    none = Engine(tmp_path / "data-nocert", embedder=HashEmbedder(), settings=team.settings("alice", postgres_dsn=base))
    with pytest.raises(EnclaveError, match="wants a client certificate it trusts.*set sslcert and sslkey"):
        none.search("walrus1", "team:handbook")
    none.close()
    old_cert, old_key = client_certificate(tmp_path, servers.ca_file, servers.ca_key, role, expired=True)
    expired = Engine(tmp_path / "data-expired", embedder=HashEmbedder(),
                     settings=team.settings("alice", postgres_dsn=f"{base} sslcert={old_cert} sslkey={old_key}"))
    with pytest.raises(EnclaveError, match="client certificate as expired.*ask the administrator for a new one"):
        expired.search("walrus1", "team:handbook")
    assert expired.index_all([folder], collection="mine").indexed == 4  # local collections keep working
    expired.close()


def test_a_member_summarizes_and_compares_team_documents_another_member_indexed(team, tmp_path):
    from tests.rag.test_documents import long_text

    docs = (tmp_path / "team-docs").resolve()
    docs.mkdir()
    v1, v2, secret = (docs / n for n in ("rules-2024.txt", "rules-2025.txt", "minutes.txt"))
    v1.write_text(long_text(4))
    v2.write_text(long_text(4).replace("counted 121 in", "counted 160 in"))
    secret.write_text(long_text(2))
    alice, bob = _engine(team, tmp_path, "alice"), _engine(team, tmp_path, "bob")
    try:
        assert alice.index_all([v1, v2], collection="team:handbook").indexed == 2
        alice.index_all([secret], collection="team:board")
        v1.unlink()  # bob's machine never had the files: the summary is of what the team stored
        summary = list(bob.summarize(v1, "long", collection="team:handbook", use_model=False))[-1]
        assert len(summary.extractive) >= 3 and not summary.warnings
        assert {i["source"]["path"] for i in summary.extractive} == {str(v1)}
        chunk_ids = {c.id for c in bob.team.document_chunks(bob.team.document("team:handbook", str(v1)))}
        assert {i["source"]["chunk_id"] for i in summary.extractive} <= chunk_ids
        assert {t for i in summary.extractive for t in ("harbour", "orchard", "glacier", "railway") if t in i["text"]} \
            >= {"harbour", "railway"}  # the whole document, first section to last
        compared = list(bob.compare(v1, v2, collection="team:handbook", use_model=False))[-1]
        assert compared.mode == "versions" and not compared.added and not compared.removed
        assert len(compared.changed) == 1
        change = compared.changed[0]
        assert "121" in change["before"]["text"] and "160" in change["after"]["text"]
        assert change["before"]["source"]["path"] == str(v1) and change["after"]["source"]["path"] == str(v2)
        # A collection bob was not granted holds nothing he can summarize.
        with pytest.raises(EnclaveError):
            list(bob.summarize(secret, collection="team:board", use_model=False))
    finally:
        alice.close(), bob.close()
