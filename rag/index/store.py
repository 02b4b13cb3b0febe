"""Vectors in a Chroma PersistentClient, one Chroma collection per Enclave collection.

We always pass our own embeddings; Chroma's default embedder (which would download a model)
is never used, and its telemetry is switched off before the client is built.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import IndexDamaged

STORE_DIR = "vectors"
# Chroma's writes hold Python's GIL for their whole call (about 1.2 ms a vector here), so
# the window's thread waits on every write: 16 vectors a call keep each wait near 20 ms
# (256 took 115 to 175 ms) for about 5 s more per 7,000 chunks.
WRITE_BATCH = 16

# Belt and braces: the Settings flag below is what Chroma reads, this covers its env path.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


class VectorStore:
    write_batch = WRITE_BATCH

    def __init__(self, data_dir: Path):
        self.path = data_dir / STORE_DIR
        self._client = None
        self._collections: dict = {}

    @property
    def client(self):
        if self._client is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            logging.getLogger("chromadb.telemetry").setLevel(logging.CRITICAL)
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                self._client = chromadb.PersistentClient(
                    path=str(self.path),
                    settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False),
                )
            except Exception as exc:
                raise IndexDamaged(
                    f"The vector store in {self.path} cannot be opened ({exc}). "
                    "Move the data folder aside and index your documents again."
                ) from exc
        return self._client

    def _collection(self, store_name: str):
        collection = self._collections.get(store_name)
        if collection is None:
            collection = self.client.get_or_create_collection(
                name=store_name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
            )
            self._collections[store_name] = collection
        return collection

    @property
    def max_batch(self) -> int:
        return int(self.client.get_max_batch_size())

    def add(self, store_name: str, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict]) -> None:
        """Upsert, so a run interrupted after writing vectors can write them again safely."""
        collection = self._collection(store_name)
        step = min(self.max_batch, self.write_batch)
        for start in range(0, len(ids), step):
            end = start + step
            collection.upsert(
                ids=list(ids[start:end]),
                embeddings=vectors[start:end],
                metadatas=list(metadatas[start:end]),
            )

    def delete(self, store_name: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        collection = self._collection(store_name)
        step = min(self.max_batch, self.write_batch)
        for start in range(0, len(ids), step):
            collection.delete(ids=list(ids[start : start + step]))

    def query(self, store_name: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Nearest chunks as (id, cosine similarity)."""
        collection = self._collection(store_name)
        count = collection.count()
        if count == 0:
            return []
        result = collection.query(
            query_embeddings=[vector], n_results=min(k, count), include=["distances"]
        )
        return [(i, 1.0 - float(d)) for i, d in zip(result["ids"][0], result["distances"][0])]

    def vectors(self, store_name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        got = self._collection(store_name).get(ids=list(ids), include=["embeddings"])
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(got["ids"], got["embeddings"])}

    def count(self, store_name: str) -> int:
        return self._collection(store_name).count()

    def all_ids(self, store_name: str) -> list[str]:
        return list(self._collection(store_name).get(include=[])["ids"])

    def close(self) -> None:
        """Forget the client: Chroma caches one system per path, which a moved store must not reuse."""
        if self._client is not None:
            from chromadb.api.client import SharedSystemClient

            SharedSystemClient.clear_system_cache()
        self._client = None
        self._collections = {}

    def drop(self, store_name: str) -> None:
        self._collections.pop(store_name, None)
        try:
            self.client.delete_collection(store_name)
        except Exception:  # already gone: dropping is idempotent
            pass
