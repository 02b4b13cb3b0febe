"""A document's sentences, once each and in order, from its stored chunks.

Chunks overlap (the chunker repeats a few tokens, and a table's chunks repeat its header
row), so a sentence may be stored twice, or cut at a chunk's edge. Each sentence here is
kept once, in its longest stored form, with the chunk and offsets that cite it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..answer.evidence import split_sentences
from ..index.catalog import ChunkRow
from ..text import split_spans

_NEWLINE = re.compile(r"\n")

_ROWS = re.compile(r"rows?\s+(\d+)\s*[\u2013-]\s*(\d+)")


@dataclass
class Sentence:
    text: str
    chunk: int  # index into the document's chunks
    start: int  # offsets into that chunk's text
    end: int
    at: int  # offset in the document's text: the order of the document
    unit: str | None = None  # the citation unit of this one sentence ("sheet 'Q3', row 7")

    @property
    def key(self) -> str:
        return " ".join(self.text.split())

    @property
    def quoted(self) -> str:
        """The sentence as shown and quoted: hyphenated line breaks joined (the verbatim
        text stays in `text`, for the viewer to find in its chunk)."""
        return join_hyphenated(self.text)


_LINE_END_HYPHEN = re.compile(r"(?<=\S)-[ \t]*\r?\n[ \t]*(?=\S)")


def join_hyphenated(text: str) -> str:
    """A sentence as quoted: a word a PDF broke at a line end with a hyphen ("docu-\\nment")
    made whole again. Only between lowercase letters: "Anglo-\\nSaxon" or "COVID-\\n19" keep
    their hyphen (the line break alone goes), and a dash at a line end between words stays."""

    def join(match: re.Match) -> str:
        before, after = text[match.start() - 1], text[match.end()]
        return "" if before.islower() and after.islower() else "-"

    return _LINE_END_HYPHEN.sub(join, text)


def is_table(chunk: ChunkRow) -> bool:
    return bool(chunk.unit and "row" in chunk.unit)


def document_sentences(chunks: Sequence[ChunkRow]) -> list[Sentence]:
    """The sentences of the document (a table's rows, one each), in document order."""
    found: list[Sentence] = []
    for i, chunk in enumerate(chunks):
        text = chunk.text
        # A table chunk starts with the repeated header row, which the document's text
        # does not hold there: offsets shift by its length, and the repeat is dropped.
        shift = max(0, len(text) - (chunk.char_end - chunk.char_start))
        if is_table(chunk):
            spans = _line_spans(text)
        else:
            spans = split_sentences(text)
        rows = _row_numbers(chunk, [s for s in spans if s[0] >= shift]) if is_table(chunk) else {}
        for a, b in spans:
            if a < shift:
                continue
            unit = rows.get((a, b), chunk.unit)
            found.append(Sentence(text[a:b], i, a, b, chunk.char_start + a - shift, unit))
    found.sort(key=lambda s: (s.at, -(s.end - s.start)))
    kept: list[Sentence] = []
    for s in found:
        if kept and s.at < kept[-1].at + (kept[-1].end - kept[-1].start):
            # Overlaps the last one kept: the same sentence from the chunk before or after;
            # the longer one is the whole sentence, the other was cut at a chunk's edge.
            if s.end - s.start > kept[-1].end - kept[-1].start:
                kept[-1] = s
            continue
        kept.append(s)
    return kept


def _line_spans(text: str) -> list[tuple[int, int]]:
    return split_spans(text, _NEWLINE, 0, len(text))


def _row_numbers(chunk: ChunkRow, spans: list[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """Each line of a table chunk as its own row ("sheet 'Q3', row 7"), where the chunk's
    unit names as many rows as it holds lines (else the lines cannot be told apart, and
    each keeps the chunk's unit)."""
    match = _ROWS.search(chunk.unit or "")
    if not match:
        return {}
    first, last = int(match.group(1)), int(match.group(2))
    if last - first + 1 != len(spans):
        return {}
    prefix = chunk.unit[: match.start()]
    return {span: f"{prefix}row {first + n}" for n, span in enumerate(spans)}


def source(chunks: Sequence[ChunkRow], s: Sentence) -> dict:
    """Where a sentence is, in the shape `ask --json` gives its sources (path, page, unit,
    chunk_id), with the sentence's place in the chunk for the viewer to highlight."""
    chunk = chunks[s.chunk]
    return {
        "path": chunk.path,
        "page": chunk.page_start,
        "page_end": chunk.page_end,
        "unit": s.unit,
        "chunk_id": chunk.id,
        "char_start": chunk.char_start,
        "text": chunk.text,  # the chunk, as answers' sources carry it: the viewer finds the passage in it
        "support": {"start": s.start, "end": s.end, "text": s.text},
    }
