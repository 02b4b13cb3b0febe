"""Plain data carried between the pipeline's stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PageText:
    """Text of one citation unit: a PDF page, a slide, a sheet, a chapter, a mail or one of
    its attachments, or the whole of a plain document.

    `number` is the 1-based page for paged formats (PDF, scans, images), None otherwise.
    `label` names the unit where it is not a page ("slide 3", "sheet 'Q3'", "chapter 2: …").
    A table's unit (a sheet) has one line per row: `rows` gives each line's row number in the
    source and `header` the index of the line that names the columns, which every chunk of
    the rows below it repeats. Text read by OCR keeps where each word is on the page:
    `words` holds (start, end, x0, y0, x1, y1), offsets into `text` and the box in fractions
    of the page's width and height as the page is shown.
    """

    number: int | None
    text: str
    label: str | None = None
    rows: tuple[int, ...] | None = None
    header: int | None = None
    words: tuple[tuple[int, int, float, float, float, float], ...] | None = None


@dataclass
class LoadedDocument:
    """What a loader returns: the text, page by page, and the file's page count."""

    path: str
    kind: str  # "pdf", "text", "markdown", "html", "docx", "pptx", "xlsx", "csv", "epub", "eml", "image", …
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
    unit: str | None = None  # the citation unit when it is not a page: "slide 3", "sheet 'Q3', rows 2–40"


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
    unit: str | None = None  # see Chunk.unit

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "page": self.page,
            "unit": self.unit,
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
    detail: str = ""  # what the reader is doing inside `current` ("reading scanned page 3 of 40")
    # The run's files, in the first event only (a list to show as queued, sent once).
    files: tuple[str, ...] = ()
    # `current` has just finished: {"state": indexed/unchanged/skipped/failed, "reason": ...}.
    outcome: dict | None = None
    # Bytes of the files that must be read, and of those read so far, and the seconds spent
    # reading them: the ETA's rate. Files counted alone mislead: unchanged ones go by in a
    # blink, and one scanned file takes minutes.
    bytes_done: int = 0
    bytes_total: int = 0
    read_elapsed: float = 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left: from the bytes read per second once a file has been read; from files
        per second when nothing needs reading; None until either is known."""
        if self.bytes_total:
            if self.bytes_done <= 0 or self.read_elapsed <= 0:
                return None
            return self.read_elapsed / self.bytes_done * max(0, self.bytes_total - self.bytes_done)
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
