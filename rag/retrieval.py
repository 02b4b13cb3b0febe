"""Hybrid retrieval: vector top-k and FTS5 BM25 top-k, fused by reciprocal rank fusion.

RRF (Cormack et al., 2009) scores a chunk by sum(1 / (RRF_K + rank)) over the two lists. It
needs no calibration between cosine similarities and BM25 scores, which live on unrelated
scales, and it rewards chunks that both methods find. Each hit keeps its raw cosine
similarity and BM25 score as well, for refusal decisions downstream.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from .catalog import Catalog
from .embedding import Embedder
from .store import VectorStore
from .types import Hit

RRF_K = 60
CANDIDATES = 4  # each method proposes CANDIDATES * k chunks before fusion

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his how i if in into is it its "
    "me my not of on or our she so than that the their them then there these they this to "
    "was we were what when where which who whom why will with you your do does did can "
    "could would should may might also about after before over under".split()
)


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression that ORs the question's content words, each quoted."""
    words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
    if not words:
        words = _WORD.findall(text.lower())
    unique = list(dict.fromkeys(words))[:64]
    if not unique:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in unique)


class Retriever:
    def __init__(self, catalog: Catalog, store: VectorStore, embedder: Embedder):
        self.catalog = catalog
        self.store = store
        self.embedder = embedder


    def keyword(self, query: str, collection: str, k: int) -> list[tuple[str, float]]:
        match = fts_query(query)
        if match is None:
            return []
        return self.catalog.keyword_search(collection, match, k)

    def search(self, query: str, collection: str = "default", k: int = 5) -> list[Hit]:
        row = self.catalog.collection(collection)
        if row is None:
            return []
        store_name = row["store_name"]
        query_vector = self.embedder.embed([query])[0]
        vector_hits = self.store.query(store_name, query_vector, CANDIDATES * k)
        keyword_hits = self.keyword(query, collection, CANDIDATES * k)
        hits = fuse(self.catalog, vector_hits, keyword_hits, k)
        # A chunk only BM25 found still gets its cosine similarity: refusal reads it.
        missing = [h for h in hits if h.vector_score is None]
        if missing:
            vectors = self.store.vectors(store_name, [h.chunk_id for h in missing])
            for h in missing:
                if h.chunk_id in vectors:
                    h.vector_score = float(np.dot(query_vector, vectors[h.chunk_id]))
        return hits


def fuse(
    catalog: Catalog,
    vector_hits: Sequence[tuple[str, float]],
    keyword_hits: Sequence[tuple[str, float]],
    k: int,
) -> list[Hit]:
    scores: dict[str, float] = {}
    for ranked in (vector_hits, keyword_hits):
        for rank, (chunk_id, _) in enumerate(ranked, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    cosine = dict(vector_hits)
    bm25 = dict(keyword_hits)
    # The catalog is the source of truth: vectors it does not list are never returned.
    rows = catalog.chunks_by_id(list(scores))
    ranked = sorted((cid for cid in scores if cid in rows), key=lambda c: (-scores[c], c))
    hits = []
    for chunk_id in ranked[:k]:
        row = rows[chunk_id]
        hits.append(
            Hit(
                chunk_id=chunk_id,
                path=row.path,
                page=row.page_start,
                text=row.text,
                score=scores[chunk_id],
                vector_score=cosine.get(chunk_id),
                keyword_score=bm25.get(chunk_id),
                page_end=row.page_end,
                char_start=row.char_start,
                char_end=row.char_end,
                collection=row.collection,
                unit=row.unit,
            )
        )
    return hits
