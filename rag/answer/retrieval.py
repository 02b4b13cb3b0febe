"""Hybrid retrieval: vector top-k and FTS5 BM25 top-k, fused by reciprocal rank fusion.

RRF (Cormack et al., 2009) scores a chunk by sum(1 / (RRF_K + rank)) over the two lists. It
needs no calibration between cosine similarities and BM25 scores, which live on unrelated
scales, and it rewards chunks that both methods find. Each hit keeps its raw cosine
similarity and BM25 score as well, for refusal decisions downstream.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from typing import TYPE_CHECKING

from ..embedding import Embedder
from ..types import Hit

if TYPE_CHECKING:
    from ..index import Index

RRF_K = 60
CANDIDATES = 4  # each method proposes CANDIDATES * k chunks before fusion

class Retriever:
    """Vector and keyword candidates from one index, fused; the index may be local or a team's."""

    def __init__(self, index: "Index", embedder: Embedder):
        self.index = index
        self.embedder = embedder

    def candidates(self, query: str, collection: str, k: int, query_vector: np.ndarray):
        """(vector hits, keyword hits), CANDIDATES * k of each, best first."""
        return self.index.candidates(collection, query, query_vector, CANDIDATES * k)

    def finish(self, collection, query_vector, vector_hits, keyword_hits, k: int) -> list[Hit]:
        hits = fuse(self.index, vector_hits, keyword_hits, k)
        self.fill_cosines(collection, query_vector, hits)
        return hits

    def fill_cosines(self, collection: str, query_vector: np.ndarray, hits: Sequence[Hit]) -> None:
        # A chunk only BM25 found still gets its cosine similarity: refusal reads it.
        missing = [h for h in hits if h.vector_score is None]
        if missing:
            vectors = self.index.vectors(collection, [h.chunk_id for h in missing])
            for h in missing:
                if h.chunk_id in vectors:
                    h.vector_score = float(np.dot(query_vector, vectors[h.chunk_id]))

    def search(self, query: str, collection: str = "default", k: int = 5) -> list[Hit]:
        if self.index.collection(collection) is None:
            return []
        query_vector = self.embedder.embed([query])[0]
        vector_hits, keyword_hits = self.candidates(query, collection, k, query_vector)
        return self.finish(collection, query_vector, vector_hits, keyword_hits, k)


def _rrf(lists: Sequence[Sequence[tuple[str, float]]]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ranked in lists:
        for rank, (chunk_id, _) in enumerate(ranked, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    return scores


def _hit(chunk_id: str, row, score: float, cosine: float | None, bm25: float | None) -> Hit:
    return Hit(
        chunk_id=chunk_id,
        path=row.path,
        page=row.page_start,
        text=row.text,
        score=score,
        vector_score=cosine,
        keyword_score=bm25,
        page_end=row.page_end,
        char_start=row.char_start,
        char_end=row.char_end,
        collection=row.collection,
        unit=row.unit,
    )


def fuse(
    index: "Index",
    vector_hits: Sequence[tuple[str, float]],
    keyword_hits: Sequence[tuple[str, float]],
    k: int,
) -> list[Hit]:
    scores = _rrf((vector_hits, keyword_hits))
    cosine = dict(vector_hits)
    bm25 = dict(keyword_hits)
    # The catalog is the source of truth: vectors it does not list are never returned.
    rows = index.chunks_by_id(list(scores))
    ranked = sorted((cid for cid in scores if cid in rows), key=lambda c: (-scores[c], c))
    return [_hit(cid, rows[cid], scores[cid], cosine.get(cid), bm25.get(cid)) for cid in ranked[:k]]


def fuse_ranked(ranked, query_vector: np.ndarray, k: int) -> list[Hit]:
    """One ranked list from several collections: each collection's vector and keyword lists
    enter the same reciprocal rank fusion. `ranked` holds (retriever, collection, vector
    hits, keyword hits) per collection."""
    scores = _rrf([lst for _, _, v, kw in ranked for lst in (v, kw)])
    found: dict[str, tuple] = {}
    for retriever, name, vector_hits, keyword_hits in ranked:
        cosine, bm25 = dict(vector_hits), dict(keyword_hits)
        rows = retriever.index.chunks_by_id(list(cosine.keys() | bm25.keys()))
        for cid, row in rows.items():
            found[cid] = (retriever, name, row, cosine.get(cid), bm25.get(cid))
    order = sorted(found, key=lambda c: (-scores[c], c))[:k]
    hits = []
    for cid in order:
        retriever, name, row, cos, bm = found[cid]
        hit = _hit(cid, row, scores[cid], cos, bm)
        retriever.fill_cosines(name, query_vector, [hit])
        hits.append(hit)
    return hits
