"""The fleet policy an administrator sets for every user of a machine.

`/etc/enclave/policy.toml` (or the file named by ENCLAVE_POLICY_FILE):

    allowed_sha256 = ["9c9f56a3...", "b179c952..."]  # empty or absent: any model
    allow_downloads = false                          # only imports and IT's files
    hub_endpoint = "https://models.corp.internal"   # a mirror that speaks the hub's protocol
    default_model = "qwen2.5-3b"                      # a catalog name or a GGUF path
    allow_remote_server = false                       # Settings may not name a model server
    lock_file = "/etc/enclave/models.lock"            # IT's pinned hashes, enforced on pulls

No file means no restrictions. A file that cannot be read is an error rather than no policy:
a fleet whose policy silently lapsed would be worse than one that stops and says why.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from rag.errors import EnclaveError

POLICY_ENV = "ENCLAVE_POLICY_FILE"
DEFAULT_POLICY_FILE = "/etc/enclave/policy.toml"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PolicyRefused(EnclaveError):
    """The administrator's policy forbids this; the message names the policy file."""


@dataclass(frozen=True)
class Policy:
    path: str = ""  # empty: no policy file
    allowed_sha256: tuple[str, ...] = ()
    allow_downloads: bool = True
    hub_endpoint: str = ""
    default_model: str = ""
    allow_remote_server: bool = True
    lock_file: str = ""

    @property
    def restricts_models(self) -> bool:
        return bool(self.allowed_sha256)

    def allows_sha(self, sha256: str) -> bool:
        return not self.allowed_sha256 or sha256.lower() in self.allowed_sha256

    def check_model(self, sha256: str, what: str) -> None:
        if not self.allows_sha(sha256):
            raise PolicyRefused(
                f"{what} is not on the list of models your administrator allows (policy {self.path}). "
                "Ask them to add its SHA-256, or choose an allowed model.")

    def check_downloads(self) -> None:
        if not self.allow_downloads:
            raise PolicyRefused(
                f"Downloads are turned off by your administrator (policy {self.path}). "
                "Import a model file they provide: enclave-cli models import PATH.")

    def check_remote_server(self) -> None:
        if not self.allow_remote_server:
            raise PolicyRefused(
                f"Your administrator does not allow answers from a model server (policy {self.path}).")

    def to_json(self) -> dict:
        return {"path": self.path, "allowed_sha256": list(self.allowed_sha256),
                "allow_downloads": self.allow_downloads, "hub_endpoint": self.hub_endpoint,
                "default_model": self.default_model, "allow_remote_server": self.allow_remote_server,
                "lock_file": self.lock_file}


def policy_path() -> Path:
    return Path(os.environ.get(POLICY_ENV) or DEFAULT_POLICY_FILE)


def load_policy(path: str | os.PathLike | None = None) -> Policy:
    path = Path(path) if path else policy_path()
    if not path.exists():
        return Policy()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EnclaveError(f"The model policy {path} cannot be read ({exc}). Ask your administrator.") from exc
    problems = []
    allowed = raw.get("allowed_sha256", [])
    if not isinstance(allowed, list) or not all(isinstance(s, str) and _SHA256.match(s.lower()) for s in allowed):
        problems.append("allowed_sha256 must be a list of 64-character SHA-256 hashes")
        allowed = []
    flags = {}
    for key in ("allow_downloads", "allow_remote_server"):
        value = raw.get(key, True)
        if not isinstance(value, bool):
            problems.append(f"{key} must be true or false")
            value = False  # the safe reading of a mistake
        flags[key] = value
    texts = {}
    for key in ("hub_endpoint", "default_model", "lock_file"):
        value = raw.get(key, "")
        if not isinstance(value, str):
            problems.append(f"{key} must be text")
            value = ""
        texts[key] = value.strip()
    if problems:
        raise EnclaveError(f"The model policy {path} is not valid: {'; '.join(problems)}. Ask your administrator.")
    return Policy(path=str(path), allowed_sha256=tuple(s.lower() for s in allowed), **flags, **texts)
