"""The extractive summary: sentences of the document itself, verbatim, chosen for coverage.

The document is cut into as many stretches of equal length as the summary has sentences,
so every part of it is represented in proportion to its length. In each stretch the
sentence chosen sits in the chunk most central to that stretch (by the chunk vectors
indexing stored) and least like the chunks already chosen (maximal marginal relevance),
and carries the words that stretch uses most. Nothing is embedded: the cost is reading
the chunks and one vector fetch, linear in the document's length.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from ..answer.citations import _WORD, STOPWORDS, stem
from ..answer.evidence import LABEL, STATEMENT, sentence_kind
from ..index.catalog import ChunkRow
from .sentences import Sentence, is_table

LENGTHS = ("short", "long")
REDUNDANCY = 0.7  # weight of the likeness to what was already chosen (MMR's 1 - lambda)
SAME_WORDS = 0.9  # a sentence sharing this share of its words with a chosen one repeats it
WORD_REDUNDANCY = 0.5  # below that, shared words only weigh against it: every stretch gets a line
MIN_WORDS, MAX_WORDS = 5, 60  # shorter says little; longer is a run-on line of a bad PDF


def budget(n_chunks: int, length: str) -> int:
    """Sentences in the summary: grows with the square root of the document's length, so a
    300-page report gets more lines than a memo but still a page, not a chapter."""
    if length not in LENGTHS:
        raise ValueError(f"length must be one of {LENGTHS}")
    root = math.sqrt(max(n_chunks, 1))
    if length == "short":
        return int(min(10, max(3, round(1.2 * root))))
    return int(min(30, max(6, round(3 * root))))


def choose(chunks: Sequence[ChunkRow], sentences: Sequence[Sentence], vectors: Mapping[str, np.ndarray],
           length: str = "short") -> list[Sentence]:
    """The summary's sentences, in document order."""
    kinds = {id(s): _kind(s.text) for s in sentences if len(s.text.split()) >= 2}
    candidates = [s for s in sentences if _worth_quoting(s, chunks, kinds)]
    if not candidates:  # a document of headings and labels only: quote what there is
        candidates = [s for s in sentences if kinds.get(id(s), LABEL) != LABEL] or list(sentences)
    if not candidates:
        return []
    n = min(budget(len(chunks), length), len(candidates))
    first, last = candidates[0].at, candidates[-1].at + 1
    width = (last - first) / n
    stretches: list[list[Sentence]] = [[] for _ in range(n)]
    for s in candidates:
        stretches[min(n - 1, int((s.at - first) / width))].append(s)

    unit = _unit_vectors(chunks, vectors)
    stems = {id(s): _stems(s.text) for s in candidates}
    # Words that appear in every part of the document say little about any one part.
    spread = Counter(w for part in stretches for w in {w for s in part for w in stems[id(s)]})
    chosen: list[Sentence] = []
    chosen_vectors: list[np.ndarray] = []
    for part in stretches:
        if not part:
            continue  # an empty stretch (a run of headings): its share goes unused
        counts = Counter(w for s in part for w in stems[id(s)])
        idf = {w: math.log(1 + n / spread[w]) for w in counts}
        centre = _centre([unit[s.chunk] for s in part if unit[s.chunk] is not None])
        best, best_score = None, -math.inf
        for s in part:
            words = stems[id(s)]
            repeat = max((_overlap(words, stems[id(c)]) for c in chosen), default=0.0)
            if repeat >= SAME_WORDS:
                continue
            lexical = sum(counts[w] * idf[w] for w in words) / (len(part) * (1 + math.sqrt(len(words))))
            score = lexical - WORD_REDUNDANCY * repeat
            v = unit[s.chunk]
            if v is not None and centre is not None:
                seen = max((float(v @ c) for c in chosen_vectors), default=0.0)
                score += float(v @ centre) - REDUNDANCY * max(seen, 0.0)
            if kinds.get(id(s)) == STATEMENT:
                score += 0.2
            if score > best_score:
                best, best_score = s, score
        if best is not None:
            chosen.append(best)
            if unit[best.chunk] is not None:
                chosen_vectors.append(unit[best.chunk])
    return sorted(chosen, key=lambda s: s.at)


def _worth_quoting(s: Sentence, chunks: Sequence[ChunkRow], kinds: dict[int, str]) -> bool:
    words = len(s.text.split())
    if is_table(chunks[s.chunk]):
        # A row of cells says something; a title line (one cell) or the header (names
        # alone) does not. A sheet of one column falls back to any line that is no label.
        return words >= 2 and "|" in s.text and (any(ch.isdigit() for ch in s.text) or kinds.get(id(s)) != LABEL)
    return MIN_WORDS <= words <= MAX_WORDS and kinds.get(id(s)) == STATEMENT


def _kind(text: str) -> str:
    """sentence_kind, with its commonest answer first: a sentence that ends as one, is no
    heading and is not in capitals is a statement (the full test costs 0.2 ms a sentence)."""
    plain = text.rstrip()
    if plain[-1:] in ".!?" and not plain.startswith("#") and not plain.isupper() and ":" not in plain:
        return STATEMENT
    return sentence_kind(text)


_stem = functools.lru_cache(maxsize=1 << 16)(stem)  # a document repeats its words


def _stems(text: str) -> set[str]:
    """content_stems as a set, memoized per word."""
    return {_stem(w) for w in _WORD.findall(text) if (len(w) > 1 or w.isdigit()) and w.lower() not in STOPWORDS}


def _unit_vectors(chunks: Sequence[ChunkRow], vectors: Mapping[str, np.ndarray]) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for c in chunks:
        v = vectors.get(c.id)
        if v is None:
            out.append(None)  # a vector the store lost (verify --repair restores it): words alone
            continue
        v = np.asarray(v, dtype=np.float32)
        norm = float(np.linalg.norm(v))
        out.append(v / norm if norm else None)
    return out


def _centre(rows: list[np.ndarray]) -> np.ndarray | None:
    if not rows:
        return None
    c = np.mean(rows, axis=0)
    norm = float(np.linalg.norm(c))
    return c / norm if norm else None


def _overlap(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def coverage(chunks: Sequence[ChunkRow], chosen: Sequence[Sentence], stretches: int = 10) -> float:
    """Share of the document's tenths (by text offset) that the summary quotes from: 1.0
    when every part is represented."""
    if not chunks or not chosen:
        return 0.0
    end = max(c.char_end for c in chunks) or 1
    return len({min(stretches - 1, s.at * stretches // end) for s in chosen}) / stretches
