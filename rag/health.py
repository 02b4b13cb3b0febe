"""Start-up checks of the data folder, each done where a crash cannot take Enclave down.

Chroma can abort the whole process on some corrupt segment files, so the vector store is
opened first in a child process (`python -m rag.health PATH`). The catalog and settings are
plain files that fail with exceptions and are checked in-process. Nothing here deletes
anything: `Engine.rebuild_store()` moves a damaged store aside and re-indexes from the
catalog's list of files, and only when the user asks for it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from .index.catalog import CATALOG_FILE
from .config import SETTINGS_FILE, Settings
from .errors import EnclaveError
from .index.store import STORE_DIR

PROBE_SECONDS = 120


def probe_store(data_dir: Path, timeout: float = PROBE_SECONDS) -> str | None:
    """None if the vector store opens and answers in a child process, else what went wrong."""
    path = Path(data_dir) / STORE_DIR
    if not path.exists():
        return None
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run([sys.executable, "-m", "rag.health", str(path)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return f"the vector store in {path} did not open within {timeout:g} s"
    if proc.returncode == 0:
        return None
    detail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1][:300]
    if proc.returncode < 0:
        detail = f"opening it crashed the reader (signal {-proc.returncode})"
    return f"the vector store in {path} is damaged: {detail}"


def check_catalog(data_dir: Path) -> str | None:
    path = Path(data_dir) / CATALOG_FILE
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = db.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return f"the catalog {path} is damaged: {exc}"
    return None if result == "ok" else f"the catalog {path} is damaged: {result}"


def check_settings(data_dir: Path) -> str | None:
    if not (Path(data_dir) / SETTINGS_FILE).exists():
        return None
    try:
        Settings.load(Path(data_dir))
    except EnclaveError as exc:
        return str(exc)
    return None


def check(data_dir: Path) -> dict[str, str | None]:
    """Problems found, by part; all None means healthy."""
    return {"settings": check_settings(data_dir), "catalog": check_catalog(data_dir), "store": probe_store(data_dir)}


class DataFolderDamaged(EnclaveError):
    """Raised before an engine opens a data folder that `check` found damaged."""

    def __init__(self, problems: dict[str, str]):
        self.problems = problems
        super().__init__("The data folder has problems: " + "; ".join(problems.values()))


def problems(data_dir: Path) -> dict[str, str]:
    """Only the parts that have a problem, with what is wrong."""
    return {part: text for part, text in check(data_dir).items() if text}


def set_aside(data_dir: Path, parts: set[str] | list[str]) -> list[str]:
    """After the user agreed: rename damaged parts (never delete them) so Enclave starts on
    fresh ones. Returns the new names.

    "settings": defaults are used. "store": an empty store; `Engine.reindex_catalog()` then
    reads every document the catalog lists again. "catalog": a fresh catalog and store (the
    old vectors are useless without it); documents must be added again.
    """
    from .lock import WriterLock

    data_dir = Path(data_dir)
    lock = WriterLock(data_dir)
    lock.acquire()  # never rename what another Enclave process has open
    try:
        names = {"settings": [SETTINGS_FILE], "store": [STORE_DIR],
                 "catalog": [CATALOG_FILE, CATALOG_FILE + "-wal", CATALOG_FILE + "-shm", STORE_DIR]}
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moved = []
        for part in parts:
            for name in names[part]:
                path = data_dir / name
                if path.exists():
                    target = path.with_name(f"{path.name}.damaged-{stamp}")
                    path.rename(target)
                    moved.append(str(target))
        return moved
    finally:
        lock.release()


def _probe_main(path: str) -> None:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=path, settings=ChromaSettings(anonymized_telemetry=False))
    for collection in client.list_collections():
        count = collection.count()
        if count:
            got = collection.get(limit=1, include=["embeddings"])
            collection.query(query_embeddings=[got["embeddings"][0]], n_results=1)


if __name__ == "__main__":
    _probe_main(sys.argv[1])
