"""Plain data carried between the pipeline's stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PageText:
    """Text of one page. `number` is 1-based for paged formats (PDF), None otherwise."""

    number: int | None
    text: str


@dataclass
class LoadedDocument:
    """What a loader returns: the text, page by page, and the file's page count."""

    path: str
    kind: str  # "pdf", "text", "markdown", "html", "docx"
    pages: list[PageText]
    page_count: int | None = None  # real page count for paged formats, None otherwise
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough for the embedding model's window."""

    id: str
    index: int
    text: str
    page_start: int | None
    page_end: int | None
    char_start: int  # offsets into the document's text (pages joined by "\n\n")
    char_end: int
    tokens: int


@dataclass
class Hit:
    """A retrieved chunk with its scores."""

    chunk_id: str
    path: str
    page: int | None
    text: str
    score: float  # fused score, higher is better
    vector_score: float | None = None  # cosine similarity in [-1, 1]
    keyword_score: float | None = None  # BM25 (higher is better)
    page_end: int | None = None
    char_start: int = 0
    char_end: int = 0
    collection: str = "default"

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "page": self.page,
            "chunk_id": self.chunk_id,
            "text": self.text,
            "score": round(self.score, 6),
        }


# Every document ends in one of these states (others mean a run was interrupted).
SETTLED = ("indexed", "skipped", "failed")


# Indexing results live here, beside the other plain data, so the window's process can
# receive them from the engine's process without importing the indexer and its parsers.
@dataclass
class Progress:
    files_done: int
    files_total: int
    chunks_done: int
    current: str
    elapsed: float

    @property
    def eta(self) -> float | None:
        if self.files_done == 0:
            return None
        return self.elapsed / self.files_done * (self.files_total - self.files_done)


@dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    skipped: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    seconds: float = 0.0
    removed_documents: int = 0
    pages: int = 0
    cancelled: bool = False
    stages: dict[str, float] = field(
        default_factory=lambda: {"scan": 0.0, "parse": 0.0, "chunk": 0.0, "embed": 0.0, "store": 0.0}
    )

    def to_json(self) -> dict:
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": self.failed,
            "chunks_added": self.chunks_added,
            "chunks_removed": self.chunks_removed,
            "seconds": round(self.seconds, 3),
            "removed_documents": self.removed_documents,
            "pages": self.pages,
            "cancelled": self.cancelled,
            "stages": {k: round(v, 3) for k, v in self.stages.items()},
        }
