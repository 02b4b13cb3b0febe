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
