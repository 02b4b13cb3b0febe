"""Summarize one indexed document: the extractive summary at once, then the model's.

`summarize()` is a generator, like answering: it yields the extractive `Summary` first
(always available, in well under a second), then, unless asked not to, `PartProgress`
events and the model summary's text as it is decoded, and last the complete `Summary`.
A model summary is cached by (document hash, model, length): asking again is instant,
and a changed file (indexed again: a new hash) is summarized afresh.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import errors
from ..index.catalog import ChunkRow, DocumentRow
from ..llm import ChatModel
from . import extractive
from .mapreduce import ModelSummary, PartProgress, summarize_with_model
from .sentences import document_sentences, source

CACHE_VERSION = 1  # bump when the prompts change: old summaries are then written again


@dataclass
class Summary:
    document: str
    length: str
    extractive: list[dict]  # [{"text", "source"}], in document order
    summary: str | None = None  # the model's; None when not asked for (or stopped)
    sources: list[dict] = field(default_factory=list)  # what the summary's [n] markers cite
    claims: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    coverage: float = 0.0  # share of the document's tenths the extractive summary quotes
    cached: bool = False
    stopped: bool = False
    warnings: list[str] = field(default_factory=list)
    final: bool = False  # False for the extractive summary yielded first

    @property
    def supported(self) -> bool | None:
        from ..answer import verdict

        return verdict.supported({"claims": self.claims, "claims_checked": self.summary is not None
                                  and not self.stopped})

    def to_json(self) -> dict:
        return {"document": self.document, "length": self.length, "extractive": self.extractive,
                "summary": self.summary, "sources": self.sources, "claims": self.claims,
                "supported": self.supported, "coverage": round(self.coverage, 3), "cached": self.cached,
                "stopped": self.stopped, "warnings": self.warnings, "timings": self.timings}


def extractive_summary(doc: DocumentRow, chunks: Sequence[ChunkRow], vectors, length: str = "short") -> Summary:
    started = time.perf_counter()
    sentences = document_sentences(chunks)
    chosen = extractive.choose(chunks, sentences, vectors, length)
    items = [{"text": s.quoted, "source": source(chunks, s)} for s in chosen]
    ms = round((time.perf_counter() - started) * 1000, 1)
    return Summary(doc.path, length, items, timings={"extractive_ms": ms},
                   coverage=extractive.coverage(chunks, chosen), warnings=_warnings(doc))


def summarize(doc: DocumentRow, chunks: Sequence[ChunkRow], vectors, length: str = "short",
              model: ChatModel | None = None, embed: Callable[[Sequence[str]], np.ndarray] | None = None,
              cache_dir: Path | None = None, should_stop: Callable[[], bool] | None = None,
              fetch_ms: float = 0.0) -> Iterator[Summary | PartProgress | str]:
    """Yields the extractive Summary, then (with a model) progress and text, then the final
    Summary (final=True)."""
    result = extractive_summary(doc, chunks, vectors, length)
    result.timings["read_ms"] = round(fetch_ms, 1)
    yield copy.copy(result)  # a snapshot: the one completed below is another object
    if model is not None:
        key = cache_key(doc, model, length)
        cached = _load(cache_dir, key)
        if cached is not None:
            result.summary, result.sources, result.claims = cached["summary"], cached["sources"], cached["claims"]
            result.cached = True
            result.timings["model"] = cached.get("timings", {})
            yield result.summary
        else:
            done: ModelSummary | None = None
            for event in summarize_with_model(chunks, model, embed, length, should_stop):
                if isinstance(event, ModelSummary):
                    done = event
                else:
                    yield event
            assert done is not None
            result.stopped = done.stopped
            result.timings["model"] = done.timings
            if done.stopped:
                result.summary = None  # a half-written summary is no summary; the extract stands
            else:
                result.summary, result.sources, result.claims = done.text, done.sources, done.claims
                _store(cache_dir, key, {"summary": done.text, "sources": done.sources, "claims": done.claims,
                                        "timings": done.timings})
    result.final = True
    yield result


def cache_key(doc: DocumentRow, model: ChatModel, length: str) -> str:
    """(document hash, model, length): the model by its file (path, size, time) or server."""
    info = model.info
    where = {k: info.get(k) for k in ("path", "endpoint", "endpoint_model", "model") if info.get(k)}
    path = info.get("path")
    if path and os.path.exists(path):
        st = os.stat(path)
        where["file"] = [st.st_size, st.st_mtime_ns]
    raw = json.dumps([CACHE_VERSION, doc.content_hash, where, length], sort_keys=True)
    # Named by the document's hash first, so forgetting the document forgets its summaries.
    return f"{doc.content_hash}-{hashlib.sha256(raw.encode()).hexdigest()[:32]}"


def forget_cached(cache_dir: Path, content_hash: str | None) -> int:
    """Delete the cached summaries of a document (it was removed from the index)."""
    if not content_hash or not cache_dir.is_dir():
        return 0
    gone = 0
    for entry in cache_dir.glob(f"{content_hash}-*.json"):
        entry.unlink(missing_ok=True)
        gone += 1
    return gone


def _load(cache_dir: Path | None, key: str) -> dict | None:
    if cache_dir is None:
        return None
    try:
        return json.loads((cache_dir / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # none yet, or a damaged entry: summarized again and rewritten


def _store(cache_dir: Path | None, key: str, data: dict) -> None:
    if cache_dir is None:
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f"{key}.json.tmp"
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, cache_dir / f"{key}.json")  # a reader never sees half an entry


def _warnings(doc: DocumentRow) -> list[str]:
    """What the reader should know: the summary is of the document as indexed."""
    try:
        st = os.stat(doc.path)
    except OSError:
        if doc.collection.startswith("team:"):
            return []
        return [f"{doc.path} is no longer on disk; this is a summary of it as it was indexed."]
    if doc.size is not None and (st.st_size != doc.size or (doc.mtime_ns and st.st_mtime_ns != doc.mtime_ns)):
        return [f"{Path(doc.path).name} changed since it was indexed; index it again to summarize the new version."]
    return []


def check_ready(doc: DocumentRow | None, path: str, chunks: Sequence[ChunkRow] | None = None) -> None:
    """Raise, for the user, when a document cannot be summarized or compared."""
    if doc is None:
        raise errors.EnclaveError(f"{path} is not indexed. Add it to a collection first (enclave-cli index PATH).")
    if doc.state != "indexed":
        if doc.state in ("skipped", "failed"):
            raise errors.EnclaveError(f"{Path(doc.path).name} was {doc.state} when indexed"
                                      + (f" ({doc.reason})" if doc.reason else "") + "; it has no text to summarize.")
        raise errors.EnclaveError(f"{Path(doc.path).name} is still being indexed; try again when indexing ends.")
    if chunks is not None and not chunks:
        raise errors.EnclaveError(f"{Path(doc.path).name} holds no text (it is empty, or only images that OCR could not read).")
