"""Fakes for unit tests only: integration tests use the real models and a real store."""

from __future__ import annotations

import hashlib
import re

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]")


class WordTokenizer:
    """Counts words and punctuation as tokens, like a word-piece tokenizer roughly would."""

    def count(self, texts):
        return [len(_TOKEN.findall(t)) for t in texts]

    def offsets(self, text):
        return [m.span() for m in _TOKEN.finditer(text)]


class HashEmbedder(WordTokenizer):
    """Bag-of-words vectors hashed into 64 dimensions: similar words, similar vectors."""

    name = "fake-hash-embedder"
    max_tokens = 254

    def __init__(self, name: str = "fake-hash-embedder", dim: int = 64):
        self.name = name
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def warm_up(self) -> None:
        pass

    def embed(self, texts):
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self._dim] += 1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else out[i]
            if not norm:
                out[i, 0] = 1.0
        return out
