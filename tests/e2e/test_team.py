"""Team collections end to end, as members use them: `enclave-cli` in subprocesses, each
member with a data folder of their own, the real embedding and answering models, and a real
PostgreSQL with pgvector (behind TLS) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.ingest.loaders import load
from tests.conftest import CORPUS, require
from tests.servers import PG_BIN
from tests.e2e.test_crash_safety import FILES as KILL_FILES, _cpu_s  # the same files and CPU clock as the local kills

PDF = CORPUS / "pdf"
TEAM_PDFS = [
    "026-latex-multicolumn/multicolumn.pdf",
    "004-pdflatex-4-pages/pdflatex-4-pages.pdf",
    "021-pdfa/crazyones-pdfa.pdf",
    "011-google-doc-document/google-doc-document.pdf",
]


def _cmd(data: Path, *args: str):
    return [sys.executable, "-m", "rag.cli", *args], dict(os.environ, ENCLAVE_DATA_DIR=str(data), HF_HUB_OFFLINE="1")


def cli(data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd, env = _cmd(data, *args)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"enclave-cli {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def as_json(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout)


def _copy(files, folder: Path, base: Path) -> Path:
    folder.mkdir()
    for rel in files:
        shutil.copy(require(base / rel), folder)
    return folder


def _team_chunks(data: Path, collection: str) -> int:
    return sum(d["chunks"] for d in as_json(cli(data, "docs", "--collection", collection, "--json")))


def test_two_members_share_a_collection_and_keep_their_own(team, tmp_path):
    docs = _copy(TEAM_PDFS, tmp_path / "handbook", PDF)
    alice = team.data_dir(tmp_path / "alice", "alice")
    bob = team.data_dir(tmp_path / "bob", "bob")

    report = as_json(cli(alice, "index", str(docs), "--collection", "team:handbook", "--json"))
    assert report["indexed"] == 4 and not report["failed"], report
    assert as_json(cli(alice, "docs", "--json")) == []  # nothing of it was kept locally

    # Bob, from his own data folder, finds Alice's documents and the right pages.
    hits = as_json(cli(bob, "search", "What is the capital of Denmark?", "--collection", "team:handbook",
                       "-k", "3", "--json"))
    assert hits[0]["path"] == str(docs / "multicolumn.pdf") and hits[0]["page"] == 3, hits[0]
    page = load(docs / "multicolumn.pdf").pages[1].text.split()
    phrase = " ".join(page[len(page) // 2: len(page) // 2 + 12])
    hits = as_json(cli(bob, "search", phrase, "--collection", "team:handbook", "-k", "3", "--json"))
    assert hits[0]["path"] == str(docs / "multicolumn.pdf") and hits[0]["page"] == 2, (phrase, hits[0])

    # ... and asks the bundled model, on his machine, for a cited answer.
    answer = as_json(cli(bob, "ask", "What is the capital of Denmark?", "--collection", "team:handbook",
                         "-k", "3", "--json"))
    assert not answer["refused"] and answer["answer"].strip(), answer
    first = answer["sources"][0]
    assert first["path"] == str(docs / "multicolumn.pdf") and first["page"] == 3
    assert "Copenhagen" in first["text"]

    # Bob cannot see the board's collection, which Alice can.
    board = _copy(["pdf/021-pdfa/crazyones-pdfa.pdf"], tmp_path / "board", CORPUS)
    cli(alice, "index", str(board), "--collection", "team:board", "--json")
    assert as_json(cli(alice, "search", "crazy ones", "--collection", "team:board", "--json"))
    assert as_json(cli(bob, "search", "crazy ones", "--collection", "team:board", "--json")) == []
    assert as_json(cli(bob, "team", "--json"))["collections"] == ["team:handbook"]
    refused = cli(bob, "index", str(board), "--collection", "team:board", check=False)
    assert refused.returncode == 1 and "not been granted" in refused.stderr

    # Bob's own collection stays in his data folder: Alice's searches and the team catalog never see it.
    mine = tmp_path / "bobs-notes"
    mine.mkdir()
    (mine / "salary.txt").write_text("Bob's private note: my salary review is on the 14th of March.\n")
    cli(bob, "index", str(mine), "--collection", "private", "--json")
    both = as_json(cli(bob, "search", "salary review Copenhagen", "--collection", "private",
                       "--collection", "team:handbook", "-k", "5", "--json"))
    assert {h["path"] for h in both} >= {str(mine / "salary.txt"), str(docs / "multicolumn.pdf")}
    # Bob's local collection never reaches Alice: on her machine there is no such collection.
    theirs = cli(alice, "search", "salary review", "--collection", "private", "--json", check=False)
    assert theirs.returncode == 1 and "no collection named 'private'" in theirs.stderr and theirs.stdout == ""
    db = team.admin()
    assert not db.execute("SELECT count(*) FROM enclave_documents WHERE path LIKE %s",
                          (f"%{mine.name}%",)).fetchone()[0]
    assert not db.execute("SELECT count(*) FROM enclave_chunks WHERE text LIKE '%salary review%'").fetchone()[0]

    # With his own credentials in a SQL client, bob reads no board vector and changes nothing.
    import psycopg

    from rag.index.team import connect_catalog

    raw = connect_catalog(team.settings("bob").team.postgres_dsn)
    assert raw.execute("SELECT embedding FROM enclave_chunks WHERE collection = 'board'").fetchall() == []
    assert raw.execute("DELETE FROM enclave_chunks").rowcount == 0
    assert raw.execute("UPDATE enclave_chunks SET text = 'x'").rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        raw.execute("DELETE FROM enclave_audit")
    raw.close()
    # And in psql, PostgreSQL's own client. The test servers' psql is built without OpenSSL,
    # so it logs in on the server's own port (127.0.0.1, scram) rather than through the TLS proxy.
    def psql(statement: str) -> subprocess.CompletedProcess:
        role = team.role("bob")
        return subprocess.run([str(PG_BIN / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                               "-p", str(team.servers.pg_port), "-U", role, "-d", team.dbname, "-c", statement],
                              capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, PGPASSWORD=team.passwords[role], PGCONNECT_TIMEOUT="10"))

    def refused(statement: str, why: str) -> None:
        proc = psql(statement)
        assert proc.returncode != 0 and why in proc.stderr, (statement, proc.stdout, proc.stderr)

    board_rows = "SELECT count(*) FROM enclave_chunks WHERE collection = 'board'"
    assert db.execute(board_rows).fetchone()[0] > 0
    assert psql(board_rows).stdout.strip() == "0"
    assert psql("SELECT embedding FROM enclave_chunks WHERE collection = 'board'").stdout.strip() == ""
    assert int(psql("SELECT count(embedding) FROM enclave_chunks WHERE collection = 'handbook'").stdout) > 0
    for statement in ("UPDATE enclave_chunks SET embedding = embedding", "UPDATE enclave_chunks SET text = 'x'",
                      "DELETE FROM enclave_chunks", "DELETE FROM enclave_documents",
                      "UPDATE enclave_documents SET state = 'failed'"):
        proc = psql(statement)  # the rows he may not write are not there for him: nothing changes
        assert proc.returncode == 0 and proc.stdout.split()[-1:] == ["0"], (statement, proc.stdout, proc.stderr)
    refused("INSERT INTO enclave_chunks(id, document_id, collection, idx, text, char_start, char_end, tokens, "
            "embedding) SELECT 'forged', id, 'handbook', 0, 'x', 0, 1, 1, NULL FROM enclave_documents LIMIT 1",
            "row-level security")
    refused("INSERT INTO enclave_documents(collection, path, state) VALUES ('board', '/forged', 'indexed')",
            "row-level security")
    for statement in ("SELECT * FROM enclave_audit", "INSERT INTO enclave_audit(collection, action) "
                      "VALUES ('board', 'forged')", "UPDATE enclave_audit SET role_name = 'x'",
                      "DELETE FROM enclave_audit"):
        refused(statement, "permission denied for table enclave_audit")
    assert db.execute("SELECT count(embedding) FROM enclave_chunks WHERE collection = 'board'").fetchone()[0] > 0
    db.close()
    # Alice's pages are still found first, the collections are consistent, and the audit
    # (read by the administrator with the CLI) lists her writes and none of bob's.
    hits = as_json(cli(alice, "search", "What is the capital of Denmark?", "--collection", "team:handbook",
                       "-k", "3", "--json"))
    assert hits[0]["path"] == str(docs / "multicolumn.pdf") and hits[0]["page"] == 3
    report = as_json(cli(alice, "verify", "--json"))
    assert report["consistent"], report
    audit = as_json(cli(tmp_path / "admin", "team-admin", "--admin-dsn", team.servers.dsn(dbname=team.dbname),
                        "audit", "--json"))
    written = [r for r in audit if r["action"] == "indexed"]
    assert {r["role"] for r in written} == {team.role("alice")} and len(written) == 5
    assert not [r for r in audit if r["role"] == team.role("bob")]


def _writing(db, role: str) -> int:
    """The member's sessions inside a write transaction (documents, chunks, vectors going in)."""
    return db.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND xact_start IS NOT NULL "
                      "AND (state = 'idle in transaction' OR query LIKE 'INSERT INTO enclave_chunks%%')",
                      (role,)).fetchone()[0]


def _torn(db) -> int:
    """Documents whose recorded chunk count is not the chunks (each with its vector) present."""
    return db.execute("""SELECT count(*) FROM enclave_documents d WHERE d.collection = 'handbook' AND d.chunks <>
                         (SELECT count(embedding) FROM enclave_chunks c WHERE c.document_id = d.id)""").fetchone()[0]


def _handbook_entry(data: Path) -> dict:
    check = cli(data, "verify", "--json", check=False)
    report = json.loads(check.stdout)
    entry = [c for c in report["collections"] if c["collection"] == "team:handbook"][0]
    assert check.returncode == 0 and report["consistent"], report
    assert entry["missing_vectors"] == entry["orphan_vectors"] == 0 and entry["chunks"] == entry["vectors"]
    return entry


def test_kills_while_indexing_into_a_team_collection_leave_it_consistent(team, tmp_path):
    folder = _copy(KILL_FILES, tmp_path / "docs", CORPUS)
    alice = team.data_dir(tmp_path / "alice", "alice")

    # An uninterrupted run (into another collection) says how many chunks and how much CPU.
    cmd, env = _cmd(alice, "index", str(folder), "--collection", "team:reference", "--json")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = 0.0
    while proc.poll() is None:
        work = max(work, _cpu_s(proc.pid) or 0.0)
        time.sleep(0.02)
    assert proc.returncode == 0
    expected = _team_chunks(alice, "team:reference")
    assert expected > 100

    # The kills land while the client writes to the database: once alice's session has a
    # transaction open (documents, chunks and vectors going in), after a random delay.
    db = team.admin()

    def writing() -> int:
        return _writing(db, team.role("alice"))

    def torn() -> int:
        return _torn(db)

    rng = random.Random(20261130)
    kills = 0
    settled = []
    for _ in range(3):
        cmd, env = _cmd(alice, "index", str(folder), "--collection", "team:handbook", "--json")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and writing() == 0:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.15))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(60)
        assert torn() == 0
        settled.append(_handbook_entry(alice)["chunks"])
    db.close()
    assert kills >= 2, f"the kills must land while the client writes (a whole run used {work:.1f} s of CPU)"

    final = cli(alice, "index", str(folder), "--collection", "team:handbook", "--json")
    assert final.returncode == 0, final.stderr
    assert _team_chunks(alice, "team:handbook") == expected
    report = as_json(cli(alice, "verify", "--json"))
    entry = [c for c in report["collections"] if c["collection"] == "team:handbook"][0]
    assert report["consistent"] and entry["chunks"] == entry["vectors"] == expected, entry
    print(f"\nteam kills: {kills}, uninterrupted {expected} chunks; chunks (each with its vector) after each kill: {settled}")


FILES_CUT = 10


def test_a_kill_between_batches_keeps_the_batches_committed_and_the_rerun_adds_the_rest(team, tmp_path):
    """Many files, so a run writes several batches (a transaction each, every 256 chunks or
    2 s): killed once it has committed one and is writing another, the committed documents
    stay whole with their vectors, the cut batch leaves nothing, and a rerun adds only the rest."""
    book = require(CORPUS / "office" / "book-war-and-peace-1225p.txt").read_text(encoding="utf-8")
    folder = tmp_path / "volumes"
    folder.mkdir()
    for n in range(FILES_CUT):  # 10 files of 30 kB: about 380 chunks
        (folder / f"volume-{n:02d}.txt").write_text(book[n * 30_000:(n + 1) * 30_000], encoding="utf-8")
    alice = team.data_dir(tmp_path / "alice", "alice")
    cli(alice, "index", str(folder), "--collection", "team:reference", "--json")
    expected = _team_chunks(alice, "team:reference")
    assert expected > 300

    db = team.admin()

    def committed() -> int:
        return db.execute("SELECT count(*) FROM enclave_documents WHERE collection = 'handbook' "
                          "AND state = 'indexed'").fetchone()[0]

    cmd, env = _cmd(alice, "index", str(folder), "--collection", "team:handbook", "--json")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and committed() == 0:
        time.sleep(0.005)
    while proc.poll() is None and _writing(db, team.role("alice")) == 0:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before its second batch: too few chunks for this test"
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    kept = committed()
    assert _torn(db) == 0
    db.close()
    entry = _handbook_entry(alice)
    assert 0 < kept < FILES_CUT and 0 < entry["chunks"] < expected, (kept, entry)

    rerun = as_json(cli(alice, "index", str(folder), "--collection", "team:handbook", "--json"))
    assert rerun["unchanged"] == kept and rerun["indexed"] == FILES_CUT - kept, rerun
    assert _handbook_entry(alice)["chunks"] == expected == _team_chunks(alice, "team:handbook")
    print(f"\nkilled between batches: {kept} of {FILES_CUT} files committed ({entry['chunks']} of {expected} chunks)")


def test_two_members_indexing_the_same_files_at_once_end_with_one_copy(team, tmp_path):
    from rag.index import team as team_db

    db = team.admin()
    team_db.grant(db, "handbook", team.role("bob"), write=True)
    db.close()
    folder = _copy(TEAM_PDFS, tmp_path / "shared", PDF)
    members = [team.data_dir(tmp_path / "alice", "alice"), team.data_dir(tmp_path / "bob", "bob")]
    procs = []
    for data in members:
        cmd, env = _cmd(data, "index", str(folder), "--collection", "team:handbook", "--json")
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        out, err = proc.communicate(timeout=1800)
        assert proc.returncode == 0, err
    alone = team.data_dir(tmp_path / "alone", "alice")
    cli(alone, "index", str(folder), "--collection", "team:reference", "--json")
    docs = as_json(cli(members[1], "docs", "--collection", "team:handbook", "--json"))
    assert sorted(d["path"] for d in docs) == sorted(str(p) for p in folder.iterdir())
    assert _team_chunks(members[0], "team:handbook") == _team_chunks(alone, "team:reference")
    report = as_json(cli(members[0], "verify", "--json"))
    entry = [c for c in report["collections"] if c["collection"] == "team:handbook"][0]
    assert report["consistent"] and entry["chunks"] == entry["vectors"], entry


def test_an_administrator_sets_up_a_team_with_enclave_cli(team_servers, tmp_path, monkeypatch):
    """The README's admin steps, as a database owner that is no superuser."""
    import secrets

    from psycopg import sql

    from rag.config import Settings, TeamSettings
    from rag.index.team import connect_catalog

    suffix = secrets.token_hex(4)
    owner, member, dbname = f"owner_{suffix}", f"carol_{suffix}", f"enclave_admin_{suffix}"
    root = connect_catalog(team_servers.dsn())
    root.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD 'owner-pw'").format(sql.Identifier(owner)))
    root.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'carol-pw'").format(sql.Identifier(member)))
    root.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(owner)))
    root.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'enclave_member') THEN "
                 "CREATE ROLE enclave_member NOLOGIN; END IF; END $$")  # as another database's setup left it
    try:
        admin = tmp_path / "admin"
        monkeypatch.setenv("ENCLAVE_TEAM_ADMIN_DSN", team_servers.dsn(owner, "owner-pw", dbname))
        # pgvector is not a trusted extension: the owner is told what a superuser must run.
        refused = cli(admin, "team-admin", "migrate", check=False)
        assert refused.returncode == 1 and "CREATE EXTENSION vector" in refused.stderr, refused.stderr
        root_db = connect_catalog(team_servers.dsn(dbname=dbname))
        root_db.execute("CREATE EXTENSION vector")
        root_db.close()
        assert as_json(cli(admin, "team-admin", "migrate", "--json")) == {"schema": 7, "vectors_rebuilt": {}}
        assert as_json(cli(admin, "team-admin", "migrate", "--json")) == {"schema": 7, "vectors_rebuilt": {}}
        # enclave_member is cluster-wide and other tests' databases created it, so this owner
        # does not administer it (PostgreSQL 16+): told what to run, then given it.
        refused = cli(admin, "team-admin", "grant", "wiki", member, check=False)
        assert refused.returncode == 1 and f"GRANT enclave_member TO {owner} WITH ADMIN OPTION" in refused.stderr
        root.execute(sql.SQL("GRANT enclave_member TO {} WITH ADMIN OPTION").format(sql.Identifier(owner)))
        created = as_json(cli(admin, "team-admin", "create", "wiki", "--json"))
        assert created["collection"] == "team:wiki" and created["store_name"].startswith("enclave_team_")
        cli(admin, "team-admin", "grant", "wiki", member, "--write")

        carol = tmp_path / "carol"
        carol.mkdir()
        Settings(team=TeamSettings(postgres_dsn=team_servers.dsn(member, "carol-pw", dbname),
                                   ca_file=str(team_servers.ca_file))).save(carol)
        status = as_json(cli(carol, "team", "--json"))
        assert status == {"catalog": f"127.0.0.1:{team_servers.tls_port}", "collections": ["team:wiki"]}
        page = tmp_path / "wiki"
        page.mkdir()
        (page / "onboarding.md").write_text("# Onboarding\n\nNew starters collect their badge from reception on day one.\n")
        assert as_json(cli(carol, "index", str(page), "--collection", "team:wiki", "--json"))["indexed"] == 1
        hits = as_json(cli(carol, "search", "where do I get my badge", "--collection", "team:wiki", "--json"))
        assert hits[0]["path"] == str(page / "onboarding.md")
        cli(admin, "team-admin", "revoke", "wiki", member)
        assert as_json(cli(carol, "search", "badge", "--collection", "team:wiki", "--json")) == []
        audit = as_json(cli(admin, "team-admin", "audit", "--json"))
        assert [(r["role"], r["action"]) for r in audit] == [(owner, "grant"), (member, "indexed"), (owner, "revoke")]
        since = as_json(cli(admin, "team-admin", "audit", "--since", audit[-1]["at"], "--json"))
        assert [r["action"] for r in since] == ["revoke"]
        human = cli(admin, "team-admin", "audit").stdout
        assert "onboarding.md" in human and member in human
    finally:
        root.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
        root.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(member)))
        root.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))
        root.close()
