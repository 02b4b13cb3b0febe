"""Token-aware chunking that never exceeds the embedding model's window.

Text is cut into units (paragraphs; sentences when a paragraph is too long; token windows
when a sentence is), and units are packed greedily into chunks of at most `max_tokens` word
pieces. Consecutive chunks share trailing units of up to `overlap` tokens. Chunks never cross
a unit's boundary (page, slide, sheet, chapter, mail), so a citation's page or unit is exact.
A table's rows are packed whole, and each chunk of them starts with the table's header row.
Every chunk is re-counted at the end and split again if joining units changed its length:
nothing is silently truncated.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..text import split_spans
from ..types import Chunk, PageText

PAGE_SEPARATOR = "\n\n"
_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n")


class Tokenizer(Protocol):
    """The embedding model's tokenizer: counts and locates word pieces."""

    def count(self, texts: Sequence[str]) -> list[int]: ...

    def offsets(self, text: str) -> list[tuple[int, int]]: ...


@dataclass
class _Unit:
    start: int
    end: int
    tokens: int
    page: int | None
    part: int = 0  # which of the document's units (page, slide, sheet…) it belongs to


def document_text(pages: Sequence[PageText]) -> tuple[str, list[int]]:
    """Join pages into one text; returns it with each page's start offset."""
    starts, parts, pos = [], [], 0
    for page in pages:
        starts.append(pos)
        parts.append(page.text)
        pos += len(page.text) + len(PAGE_SEPARATOR)
    return PAGE_SEPARATOR.join(parts), starts


class FileTokenizer:
    """The embedding model's tokenizer read from its tokenizer.json by the `tokenizers`
    library alone: no torch, no transformers, so a reader process loads it in milliseconds.
    It is the same fast tokenizer sentence-transformers wraps, so counts and offsets match.
    """

    def __init__(self, path: str | os.PathLike[str]):
        from tokenizers import Tokenizer as _Tokenizer

        tokenizer = _Tokenizer.from_file(str(path))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encoded]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [tuple(o) for o in self._tokenizer.encode(text, add_special_tokens=False).offsets]


@dataclass(frozen=True)
class ChunkPlan:
    """What a reader process needs to chunk what it reads (it crosses a pipe)."""

    tokenizer_file: str
    max_tokens: int
    overlap: int

    @classmethod
    def for_model(cls, model_dir: str | os.PathLike[str] | None, max_tokens: int, overlap: int) -> "ChunkPlan | None":
        """A plan if the embedding model folder has a tokenizer.json, else None (chunk here)."""
        if model_dir is None:
            return None
        path = Path(model_dir) / "tokenizer.json"
        return cls(str(path), max_tokens, overlap) if path.is_file() else None

    def chunker(self) -> "Chunker":
        return Chunker(FileTokenizer(self.tokenizer_file), self.max_tokens, self.overlap)


class Chunker:
    def __init__(self, tokenizer: Tokenizer, max_tokens: int = 200, overlap: int = 40):
        if overlap >= max_tokens:
            raise ValueError("overlap must be smaller than max_tokens")
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.overlap = overlap

    def chunk(self, pages: Sequence[PageText], id_prefix: str) -> list[Chunk]:
        text, starts = document_text(pages)
        chunks: list[Chunk] = []
        for part, (page, start) in enumerate(zip(pages, starts)):
            if page.rows is not None:
                self._chunk_rows(text, start, page, chunks, id_prefix)
                continue
            units = self._units(text, start, start + len(page.text), page.number)
            for unit in units:
                unit.part = part
            for first, last in self._pack(units):
                self._emit(text, units[first : last + 1], chunks, id_prefix, page.label)
        return chunks

    # Tables: whole rows per chunk, the header row repeated at the top of each.
    def _chunk_rows(self, text: str, start: int, page: PageText, chunks: list[Chunk], prefix: str) -> None:
        spans, pos = [], start
        for line in page.text.split("\n"):
            spans.append((pos, pos + len(line)))
            pos += len(line) + 1
        rows = list(page.rows) + [page.rows[-1] if page.rows else 1] * (len(spans) - len(page.rows))
        counts = self.tokenizer.count([text[a:b] for a, b in spans])
        header = page.header
        header_text = text[spans[header][0]:spans[header][1]] if header is not None else ""
        header_tokens = counts[header] + 1 if header is not None else 0
        i = 0
        while i < len(spans):
            # Lines up to the header row (titles, then the header) need no repeated header.
            repeat = header is not None and i > header
            budget = self.max_tokens - (header_tokens if repeat else 0)
            j, total = i, counts[i]
            while j + 1 < len(spans) and total + counts[j + 1] + 1 <= budget:
                j += 1
                total += counts[j] + 1
            self._emit_rows(text, spans[i:j + 1], rows[i:j + 1], header_text if repeat else "", page, chunks, prefix)
            i = j + 1

    def _emit_rows(self, text, spans, rows, header, page, chunks, prefix) -> None:
        a, b = spans[0][0], spans[-1][1]
        body = (header + "\n" if header else "") + text[a:b]
        tokens = self.tokenizer.count([body])[0]
        if tokens > self.max_tokens and len(spans) > 1:
            half = len(spans) // 2  # joining changed the count: split rather than truncate
            self._emit_rows(text, spans[:half], rows[:half], header, page, chunks, prefix)
            self._emit_rows(text, spans[half:], rows[half:], header, page, chunks, prefix)
            return
        first, last = min(rows), max(rows)
        where = f"row {first}" if first == last else f"rows {first}–{last}"
        unit = f"{page.label}, {where}" if page.label else where
        if tokens > self.max_tokens:  # one row longer than a chunk: windows of it, no header
            for window in self._windows(text, a, b, page.number, self.max_tokens - 8):
                self._emit(text, [window], chunks, prefix, unit)
            return
        index = len(chunks)
        chunks.append(Chunk(id=f"{prefix}-{index:05d}", index=index, text=body, page_start=page.number,
                            page_end=page.number, char_start=a, char_end=b, tokens=tokens, unit=unit))

    # Units: paragraphs, refined into sentences and token windows only where too long.
    def _units(self, text: str, start: int, end: int, page: int | None) -> list[_Unit]:
        out: list[_Unit] = []
        paragraphs = split_spans(text, _PARAGRAPH, start, end)
        counts = self.tokenizer.count([text[a:b] for a, b in paragraphs])
        for (a, b), n in zip(paragraphs, counts):
            if n <= self.max_tokens:
                out.append(_Unit(a, b, n, page))
                continue
            sentences = split_spans(text, _SENTENCE_END, a, b)
            sentence_counts = self.tokenizer.count([text[x:y] for x, y in sentences])
            for (x, y), m in zip(sentences, sentence_counts):
                if m <= self.max_tokens:
                    out.append(_Unit(x, y, m, page))
                else:
                    out.extend(self._windows(text, x, y, page))
        return out

    def _windows(self, text: str, start: int, end: int, page: int | None, size: int = 0) -> list[_Unit]:
        offsets = self.tokenizer.offsets(text[start:end])
        size = size or self.max_tokens
        out = []
        for i in range(0, len(offsets), size):
            window = offsets[i : i + size]
            out.append(_Unit(start + window[0][0], start + window[-1][1], len(window), page))
        return out

    def _pack(self, units: list[_Unit]) -> list[tuple[int, int]]:
        """Greedy packing with overlap; returns (first, last) unit indexes per chunk."""
        spans: list[tuple[int, int]] = []
        i = 0
        while i < len(units):
            total, j = units[i].tokens, i
            while (
                j + 1 < len(units)
                and units[j + 1].part == units[i].part
                and total + units[j + 1].tokens <= self.max_tokens
            ):
                j += 1
                total += units[j].tokens
            spans.append((i, j))
            if j + 1 >= len(units):
                break
            # Start the next chunk with trailing units worth at most `overlap` tokens,
            # but always move forward, and never carry overlap across a page break.
            nxt, carried = j + 1, 0
            if units[j + 1].part == units[j].part:
                while nxt - 1 > i and carried + units[nxt - 1].tokens <= self.overlap:
                    nxt -= 1
                    carried += units[nxt].tokens
            i = nxt
        return spans

    def _emit(self, text: str, units: list[_Unit], chunks: list[Chunk], prefix: str, label: str | None = None) -> None:
        start, end = units[0].start, units[-1].end
        body = text[start:end]
        tokens = self.tokenizer.count([body])[0]
        if tokens > self.max_tokens and len(units) > 1:
            half = len(units) // 2  # joining changed the count: split rather than truncate
            self._emit(text, units[:half], chunks, prefix, label)
            self._emit(text, units[half:], chunks, prefix, label)
            return
        if tokens > self.max_tokens:
            # Re-tokenizing a cut can add a piece or two: cut with a margin.
            for window in self._windows(text, start, end, units[0].page, self.max_tokens - 8):
                self._emit(text, [window], chunks, prefix, label)  # one unit, recounted exactly
            return
        index = len(chunks)
        chunks.append(
            Chunk(
                id=f"{prefix}-{index:05d}",
                index=index,
                text=body,
                page_start=units[0].page,
                page_end=units[-1].page,
                char_start=start,
                char_end=end,
                tokens=tokens,
                unit=label,
            )
        )
