"""The curated model catalog shipped in the repository (`models/catalog.toml`)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from rag.errors import EnclaveError

CATALOG_FILE = Path(__file__).resolve().parents[2] / "models" / "catalog.toml"
# A company may ship its own catalog (its mirror's repositories, its approved files) and
# name it here; tests point it at a catalog of the stand-in hub's files.
CATALOG_ENV = "ENCLAVE_CATALOG_FILE"
_REQUIRED = ("name", "title", "family", "parameters", "quant", "file", "license", "context")


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    family: str
    parameters: str
    quant: str
    file: str
    license: str
    context: int  # trained context, tokens
    params_b: float = 0.0
    size_mb: float = 0.0
    repo: str = ""
    sha256: str = ""  # empty: not verified when the catalog was written
    languages: tuple[str, ...] = ()
    hardware: str = ""
    layers: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    bundled: bool = False
    eval_f1: float | None = None
    refusal_probability: float | None = None
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def size_bytes(self) -> int:
        return int(self.size_mb * 1_000_000)

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["languages"] = list(self.languages)
        return out


def load_catalog(path: str | Path | None = None) -> list[CatalogEntry]:
    path = Path(path or os.environ.get(CATALOG_ENV) or CATALOG_FILE)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise EnclaveError(f"The model catalog {path} cannot be read ({exc}).") from exc
    known = {f.name for f in fields(CatalogEntry)}
    entries, seen = [], set()
    for number, item in enumerate(raw.get("model", []), 1):
        missing = [key for key in _REQUIRED if not item.get(key)]
        if missing:
            raise EnclaveError(f"The model catalog {path}: entry {number} lacks {', '.join(missing)}.")
        if item["name"] in seen:
            raise EnclaveError(f"The model catalog {path} names {item['name']!r} twice.")
        seen.add(item["name"])
        values = {k: v for k, v in item.items() if k in known}
        values["languages"] = tuple(item.get("languages", ()))
        values["sha256"] = str(item.get("sha256", "")).lower()
        values["extra"] = {k: v for k, v in item.items() if k not in known}
        entries.append(CatalogEntry(**values))
    return entries


def find_entry(entries: list[CatalogEntry], name: str) -> CatalogEntry | None:
    wanted = name.strip().lower()
    return next((e for e in entries if e.name.lower() == wanted), None)
