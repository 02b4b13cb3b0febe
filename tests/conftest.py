"""Hermetic tests: offline, headless, a fresh data folder each, no connection off this machine."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"
EVAL = SHARED / "eval"

# --- the network guard ----------------------------------------------------------------
# Any attempt to reach a non-loopback address, or to resolve a name other than localhost,
# is recorded and fails the test that made it (even if the code under test swallowed the
# exception).

_violations: list[str] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_loopback(host) -> bool:
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(sock, address) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        _violations.append(f"connect to {address!r}")
        raise ConnectionRefusedError(f"test network guard: connection to {address!r} refused")


def _guarded_connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_loopback(host):
        _violations.append(f"DNS lookup of {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, f"test network guard: lookup of {host!r} refused")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo


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
