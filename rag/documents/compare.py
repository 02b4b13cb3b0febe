"""Compare two indexed documents sentence by sentence, each difference cited in both.

Two versions of one text (most sentences in common, whatever the formats: a PDF against
its DOCX revision) are diffed with `difflib` over their sentences. Two different texts
(two contracts) are first aligned section by section with the chunk vectors indexing
stored, and each aligned pair is diffed the same way; a section with no counterpart is
added or removed whole. A sentence that left one place and appears unchanged in another
was moved, not removed and added.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..index.catalog import ChunkRow
from .sentences import Sentence, document_sentences, join_hyphenated, source

CHANGED = 0.5  # word-level likeness above which a replaced sentence was edited, not swapped
SAME_TEXT = 0.3  # share of sentences in common above which two documents are versions of one text
SECTION_MATCH = 0.75  # cosine of two chunks' vectors above which they are the same section


@dataclass
class Side:
    """One document as the comparison reads it."""

    path: str
    chunks: Sequence[ChunkRow]
    vectors: Mapping[str, np.ndarray]
    content_hash: str | None = None
    sentences: list[Sentence] = field(default_factory=list)

    def __post_init__(self):
        if not self.sentences:
            self.sentences = document_sentences(self.chunks)

    def item(self, s: Sentence) -> dict:
        return {"text": s.quoted, "source": source(self.chunks, s)}


@dataclass
class Comparison:
    a: str
    b: str
    same: bool
    added: list[dict]
    removed: list[dict]
    changed: list[dict]
    moved: list[dict]
    mode: str  # "versions" (difflib over the whole text) or "sections" (aligned by embeddings)
    overview: str | None = None
    sources: list[dict] = field(default_factory=list)  # what the overview's [n] markers cite
    claims: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    stopped: bool = False
    final: bool = False

    @property
    def differences(self) -> int:
        return len(self.added) + len(self.removed) + len(self.changed) + len(self.moved)

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "same": self.same, "mode": self.mode, "added": self.added,
                "removed": self.removed, "changed": self.changed, "moved": self.moved,
                "overview": self.overview, "sources": self.sources, "claims": self.claims,
                "stopped": self.stopped, "timings": self.timings}


_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                         "\u2014": "-", "\u00a0": " "})


def normal(text: str) -> str:
    """A sentence as compared: whitespace, a PDF's hyphenated line breaks and the quote
    marks one format curls and another keeps straight do not count."""
    return " ".join(join_hyphenated(text).translate(_QUOTES).split())


def _key(text: str) -> str:
    """What two sentences must share to be the same: their words, case kept. A stray quote
    mark or comma (a sentence cut before or after its closing quote) is no change."""
    return " ".join(re.findall(r"\w+", normal(text)))


def compare_sides(a: Side, b: Side) -> Comparison:
    started = time.perf_counter()
    if a.content_hash and a.content_hash == b.content_hash:
        return Comparison(a.path, b.path, True, [], [], [], [], "versions",
                          timings={"compare_ms": round((time.perf_counter() - started) * 1000, 1)})
    na = [_key(s.text) for s in a.sentences]
    nb = [_key(s.text) for s in b.sentences]
    common = sum(m.size for m in difflib.SequenceMatcher(None, na, nb, autojunk=False).get_matching_blocks())
    versions = common >= SAME_TEXT * max(1, min(len(na), len(nb)))
    added: list[tuple[Sentence, None]] = []
    removed: list[Sentence] = []
    changed: list[tuple[Sentence, Sentence]] = []
    if versions:
        _diff(a.sentences, b.sentences, na, nb, added, removed, changed)
    else:
        for sa, sb in _align_sections(a, b):
            xa = [_key(s.text) for s in sa]
            xb = [_key(s.text) for s in sb]
            _diff(sa, sb, xa, xb, added, removed, changed)
    # Moved: the same sentence gone from one place and found in another.
    found = {_key(s.text): s for s, _ in added}
    moved = []
    for s in list(removed):
        twin = found.pop(_key(s.text), None)
        if twin is not None:
            removed.remove(s)
            moved.append((s, twin))
    moved_b = {id(t) for _, t in moved}
    added_b = [s for s, _ in added if id(s) not in moved_b]
    result = Comparison(
        a.path, b.path, False,
        added=[b.item(s) for s in sorted(added_b, key=lambda s: s.at)],
        removed=[a.item(s) for s in sorted(removed, key=lambda s: s.at)],
        changed=[{"before": a.item(x), "after": b.item(y)} for x, y in changed],
        moved=[{"before": a.item(x), "after": b.item(y)} for x, y in moved],
        mode="versions" if versions else "sections",
    )
    result.same = result.differences == 0
    result.timings["compare_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _diff(sa, sb, na, nb, added, removed, changed) -> None:
    matcher = difflib.SequenceMatcher(None, na, nb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if op == "delete":
            removed.extend(sa[i1:i2])
        elif op == "insert":
            added.extend((s, None) for s in sb[j1:j2])
        else:  # replace: pair each old sentence with its edited form, in order
            j = j1
            for i in range(i1, i2):
                best, best_ratio = None, CHANGED
                for k in range(j, j2):
                    ratio = _likeness(na[i], nb[k])
                    if ratio >= best_ratio:
                        best, best_ratio = k, ratio
                if best is None:
                    removed.append(sa[i])
                    continue
                added.extend((s, None) for s in sb[j:best])
                changed.append((sa[i], sb[best]))
                j = best + 1
            added.extend((s, None) for s in sb[j:j2])


def _likeness(x: str, y: str) -> float:
    return difflib.SequenceMatcher(None, x.split(), y.split(), autojunk=False).ratio()


def _align_sections(a: Side, b: Side) -> list[tuple[list[Sentence], list[Sentence]]]:
    """Pairs of sentence runs to diff: chunks matched by their vectors (each chunk's best
    match on the other side, both ways), in order; a chunk with no match stands against
    nothing, so its sentences are added or removed whole."""
    va, vb = _matrix(a), _matrix(b)
    pairs: dict[int, int] = {}
    if va is not None and vb is not None and len(va) and len(vb):
        sim = va @ vb.T
        best_b, best_a = sim.argmax(axis=1), sim.argmax(axis=0)
        last = -1
        for i, j in enumerate(best_b):
            # Mutual best, above the bar, and in order: a section list, not a shuffle.
            if best_a[j] == i and sim[i, j] >= SECTION_MATCH and j > last:
                pairs[i] = int(j)
                last = int(j)
    by_a = _by_chunk(a.sentences)
    by_b = _by_chunk(b.sentences)
    out = []
    matched_b = set(pairs.values())
    for i in range(len(a.chunks)):
        out.append((by_a.get(i, []), by_b.get(pairs[i], []) if i in pairs else []))
    for j in range(len(b.chunks)):
        if j not in matched_b:
            out.append(([], by_b.get(j, [])))
    return out


def _by_chunk(sentences: Sequence[Sentence]) -> dict[int, list[Sentence]]:
    out: dict[int, list[Sentence]] = {}
    for s in sentences:
        out.setdefault(s.chunk, []).append(s)
    return out


def _matrix(side: Side) -> np.ndarray | None:
    rows = [side.vectors.get(c.id) for c in side.chunks]
    if not rows or any(r is None for r in rows):
        return None
    m = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1, norms)
