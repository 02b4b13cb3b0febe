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
