"""The `Index` Protocol: a catalog (the source of truth), its vectors and their journal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .catalog import ChunkRow, DocumentRow
from ..types import Chunk


@dataclass
class DocumentWrite:
    """A document read, chunked and embedded, ready to be committed with its chunks."""

    path: str
    content_hash: str
    size: int
    mtime_ns: int
    kind: str | None
    pages: int | None
    chunks: list[Chunk]
    page_words: dict[int, list] = field(default_factory=dict)


class Index(Protocol):
    """Collections, documents, chunks and vectors, kept in step by a journal.

    A collection row is a mapping with at least `name`, `store_name`, `embed_model` and
    `embed_dim`. Every write that touches vectors journals them first, so that `recover()`
    can settle what a killed writer left: vectors whose chunks never committed are taken
    back, and promised deletions are made.
    """

    kind: str  # "local" or "team"

    def owns(self, collection: str) -> bool: ...
    def collection(self, name: str) -> Mapping | None: ...
    def collections(self) -> list[Mapping]: ...
    def create_collection(self, name: str) -> None: ...
    def rename_collection(self, old: str, new: str) -> None: ...
    def delete_collection(self, name: str) -> list[DocumentRow]: ...
    def prepare_collection(self, name: str, model: str, dim: int) -> None: ...

    def document(self, collection: str, path: str) -> DocumentRow | None: ...
    def documents(self, collection: str | None = None) -> list[DocumentRow]: ...
    def documents_under(self, collection: str, folder: str) -> list[DocumentRow]: ...
    def touch_document(self, doc_id: int, size: int, mtime_ns: int) -> None: ...
    def record_outcome(self, collection: str, path: str, *, state: str, reason: str | None,
                       content_hash: str | None, size: int | None, mtime_ns: int | None,
                       pages: int | None) -> int: ...
    def write_documents(self, collection: str, docs: Sequence[DocumentWrite], vectors: np.ndarray) -> int: ...
    def forget_document(self, doc: DocumentRow) -> int: ...
    def recover(self) -> dict[str, int]: ...

    def vector_search(self, collection: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]: ...
    def keyword_search(self, collection: str, query: str, k: int) -> list[tuple[str, float]]: ...
    def candidates(self, collection: str, query: str, vector: np.ndarray,
                   n: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]: ...  # n of each
    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, ChunkRow]: ...
    def document_chunks(self, doc: DocumentRow) -> list[ChunkRow]: ...  # in document order
    def vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]: ...
    def page_words(self, chunk_id: str) -> tuple[int, list] | None: ...
    def count_chunks(self, collection: str | None = None) -> int: ...

    def verify(self, embed, repair: bool = False) -> dict: ...
    def close(self) -> None: ...


def vector_metadata(path: str, chunk: Chunk) -> dict:
    meta: dict = {"path": path}
    if chunk.page_start is not None:
        meta["page"] = chunk.page_start
    return meta
