"""`models.lock`: what was installed, from where, and its verified SHA-256.

One `[[model]]` table per file (name, repo, revision, file, size, sha256). Enclave writes
the one in the models folder; an administrator may hand out another (the policy's
`lock_file`), whose hashes every pull must match.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import tomli_w

from rag.errors import EnclaveError

LOCK_FILE = "models.lock"


@dataclass(frozen=True)
class Locked:
    name: str
    file: str
    size: int
    sha256: str
    repo: str = ""  # empty for an imported file
    revision: str = ""  # the commit the hub resolved the request to
    source: str = "hub"  # "hub" or "import"

    def to_json(self) -> dict:
        return asdict(self)


def read_lock(path: str | os.PathLike) -> list[Locked]:
    path = Path(path)
    if not path.exists():
        return []
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return [Locked(**{k: v for k, v in item.items() if k in Locked.__dataclass_fields__})
                for item in raw.get("model", [])]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, TypeError) as exc:
        raise EnclaveError(f"The model lock file {path} cannot be read ({exc}).") from exc


def write_lock(path: str | os.PathLike, entries: list[Locked]) -> None:
    """Write-then-rename, as settings are: a crash never leaves half a lock file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".models-", suffix=".lock", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            tomli_w.dump({"model": [e.to_json() for e in entries]}, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pinned(entries: list[Locked], repo: str, file: str) -> Locked | None:
    return next((e for e in entries if e.repo == repo and e.file == file), None)
