"""The answer pipeline: retrieve, weigh the evidence, quote, prompt, stream, cite, check.

`Answerer.ask()` is a generator. It yields, in order:

1. a `Quote` as soon as the evidence is read (before the model has seen a token): the one
   sentence of the documents that best answers the question, verbatim, with its source;
2. the answer's text pieces as the model decodes them;
3. one `Answer` with the sources it cites, each claim of the answer checked against them,
   and the timings.

When the evidence is too weak (see rag/answer/evidence.py) it refuses without calling the model
and without a quote: a small model given unrelated text improvises, and an invented answer
with a citation is worse than none. A model that says it cannot answer from the sources
counts as a refusal too, and so does one that leans towards saying so: the probability it
gives to opening with the refusal sentence (read from the logits its prompt leaves) reaches
`refuse_at` (see rag/answer/evidence.py, MODEL_REFUSAL_PROBABILITY).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import evidence as ev
from . import verdict
from .citations import best_support, cited_numbers
from .followups import history_for
from ..llm import ChatModel
from ..llm import pace
from .prompting import CANNOT_ANSWER, build_prompt
from ..types import Hit

DEFAULT_MIN_PROBABILITY = ev.DEFAULT_MIN_PROBABILITY
ANSWER_TOKENS = 384
QUOTES = 3  # verbatim sentences kept with every answer (shown when no claim is supported)

REFUSAL_TEXT = "I could not find the answer to this in your documents."

# The model's own way of saying the sources do not hold the answer (its first sentence).
_MODEL_REFUSAL = re.compile(
    r"^\W*(?:i\s+(?:cannot|can't|can\s+not|am\s+unable\s+to|could\s+not|couldn't)\s+(?:answer|find|determine|tell)"
    r"|i\s+(?:do\s+not|don't)\s+know"
    r"|(?:the\s+)?(?:provided\s+|given\s+)?(?:sources?|documents?|text|context)\s+(?:do|does)\s+not\s+"
    r"(?:contain|mention|say|provide|include|specify|state)"
    r"|there\s+is\s+no\s+(?:information|mention)"
    r"|(?:this|that|it)\s+is\s+not\s+(?:mentioned|stated|specified|provided)"
    r"|no\s+(?:information|answer)\b)",
    re.IGNORECASE,
)


def model_refused(text: str) -> bool:
    """True when the answer opens by saying the sources cannot answer the question."""
    plain = re.sub(r"\s*\[[\d,\s-]+\]", "", text).strip()
    return bool(plain) and (CANNOT_ANSWER.lower().rstrip(".") in plain.lower() or bool(_MODEL_REFUSAL.match(plain)))


@dataclass
class Quote:
    """The sentence of the documents that best answers the question, verbatim."""

    text: str
    source: dict  # path, page, chunk_id, char_start, start/end in the chunk, relevance
    ms: float  # from the question to the quote

    def to_json(self) -> dict:
        return {"text": self.text, "source": self.source}


@dataclass
class Answer:
    question: str
    text: str
    refused: bool
    sources: list[dict]
    timings: dict
    model: dict
    uncited: bool = False  # the model cited nothing: sources are those it was given
    evidence: dict = field(default_factory=dict)
    quote: Quote | None = None
    quotes: list[dict] = field(default_factory=list)  # the best verbatim sentences, best first
    claims: list[dict] = field(default_factory=list)
    refused_by: str | None = None  # "evidence" (no model call) or "model"
    claims_checked: bool = False  # False for refusals and stopped answers

    @property
    def supported(self) -> bool | None:
        """The one verdict the CLI and the window show (rag/answer/verdict.py)."""
        return verdict.supported({"refused": self.refused, "claims": self.claims,
                                  "claims_checked": self.claims_checked})

    def to_json(self) -> dict:
        return {
            "answer": self.text,
            "refused": self.refused,
            "refused_by": self.refused_by,
            "uncited": self.uncited,
            "sources": self.sources,
            "timings": self.timings,
            "model": self.model,
            "quote": self.quote.to_json() if self.quote else None,
            "quotes": self.quotes,
            "claims": self.claims,
            "claims_checked": self.claims_checked,
            "supported": self.supported,
            "evidence": self.evidence,
        }


def retrieval_query(question: str, history: Sequence[tuple[str, str]]) -> str:
    """Follow-ups like "and who led it?" carry the previous question's topic into retrieval; a
    question that names its own topic is searched alone (rag/answer/followups.py)."""
    history = history_for(question, history)
    if not history:
        return question
    return f"{history[-1][0]} {question}"


_MARKER = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")
_SOURCE_TAG = re.compile(r"<\s*source\s+id\s*=\s*[\"']?(\d+)[\"']?[^>]*>")


class Answerer:
    def __init__(
        self,
        search: Callable[[str, int], list[Hit]],
        model: ChatModel,
        embed: Callable[[Sequence[str]], np.ndarray],
        min_probability: float = DEFAULT_MIN_PROBABILITY,
        temperature: float = 0.0,
        answer_tokens: int = ANSWER_TOKENS,
        excerpts: bool = True,
        refuse_at: float | None = ev.MODEL_REFUSAL_PROBABILITY,
    ):
        self.search = search
        self.model = model
        self.embed = embed
        self.min_probability = min_probability
        self.temperature = temperature
        self.answer_tokens = answer_tokens
        self.excerpts = excerpts  # the prompt carries the sentences that bear on the question
        self.refuse_at = refuse_at

    def ask(
        self,
        question: str,
        k: int = 5,
        history: Sequence[tuple[str, str]] = (),
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[str | Quote | Answer]:
        started = time.perf_counter()
        # One rule decides whether the conversation takes part: a follow-up ("and who led
        # it?") is searched with the previous question and answered with the earlier turns;
        # any other question is answered exactly as in a new conversation.
        history = history_for(question, history)
        query = retrieval_query(question, history)
        hits = self.search(query, max(k, ev.EVIDENCE_K))
        retrieve_ms = (time.perf_counter() - started) * 1000
        # A follow-up is judged with the previous question and alone, and the better reading
        # counts: one that the rule took for a follow-up but that carries its own topic is not
        # refused for the earlier question's words.
        embed = self.embed if query == question else _remembering(self.embed)
        evidence = ev.gather(query, hits, embed)
        if query != question:
            alone = ev.gather(question, hits, embed)  # embeds only the question: the sentences are known
            if alone.probability > evidence.probability:
                evidence = alone
        evidence_ms = (time.perf_counter() - started) * 1000 - retrieve_ms
        labels = [ev.relevance_label(p, self.min_probability) for p in evidence.source_probability]
        hits = hits[:k]
        timings = {"retrieve_ms": round(retrieve_ms, 1), "evidence_ms": round(evidence_ms, 1),
                   "quote_ms": None, "first_token_ms": None, "total_ms": None, "tokens": 0, "tokens_per_s": None}
        summary = {"probability": round(evidence.probability, 4), "follow_up": bool(history),
                   "features": {name: round(value, 4) for name, value in evidence.features.items()},
                   "min_probability": self.min_probability}
        quotes = [_quote_json(evidence, s, labels) for s in evidence.best(QUOTES)]
        if evidence.probability < self.min_probability:
            text = _refusal(hits)
            yield text
            timings["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
            yield Answer(question, text, True, [_source(i + 1, h, None, False, labels, i) for i, h in enumerate(hits)],
                         timings, self.model.info, uncited=True, evidence=summary, quotes=quotes,
                         refused_by="evidence")
            return

        quote = None
        if quotes:
            timings["quote_ms"] = round((time.perf_counter() - started) * 1000, 1)
            quote = Quote(quotes[0]["text"], quotes[0]["source"], timings["quote_ms"])
            yield quote

        model = self.model
        excerpts = [evidence.excerpt(i) for i in range(len(hits))] if self.excerpts else None
        prompt = build_prompt(
            question, hits, list(history), model.prompt_tokens, model.context_size, self.answer_tokens,
            excerpts=excerpts,
        )
        pieces: list[str] = []
        first = None
        gen_start = time.perf_counter()
        stream = model.stream(prompt.messages, self.answer_tokens, self.temperature, should_stop, self.refuse_at)
        try:
            for piece in stream:
                if first is None:
                    first = time.perf_counter()
                pieces.append(piece)
                yield piece
        finally:
            stream.close()
        end = time.perf_counter()
        # Some models cite with the source's own tag: <source id="2"> means [2].
        text = _SOURCE_TAG.sub(r"[\1]", "".join(pieces)).strip()
        tokens = model.last_stats.generated_tokens
        timings.update(
            first_token_ms=round(((first or end) - started) * 1000, 1),
            total_ms=round((end - started) * 1000, 1),
            tokens=tokens,
            tokens_per_s=round((tokens - 1) / (end - first), 1) if first and tokens > 1 and end > first else None,
        )
        timings["prompt_tokens"] = prompt.prompt_tokens
        pace.record(model, gen_start, first, end)  # what later estimates of model work start from
        timings["prompt_ms"] = round((gen_start - started) * 1000, 1)  # until the model got the prompt
        timings["generate_ms"] = round((end - gen_start) * 1000, 1)
        refused = model_refused(text)
        summary["model_refusal_probability"] = (None if model.last_stats.refusal_probability is None
                                                else round(model.last_stats.refusal_probability, 4))
        summary["model_refuse_at"] = self.refuse_at
        cited = cited_numbers(text, len(prompt.sources))
        uncited = not cited
        chosen = cited or list(range(1, len(prompt.sources) + 1))
        sources = [_source(n, prompt.sources[n - 1], text, not uncited, labels, n - 1) for n in chosen]
        claims = []
        # A stopped answer ends at once: Stop must not wait on a check of half a sentence.
        checked = not refused and not (should_stop and should_stop())
        if checked:
            check_start = time.perf_counter()
            claims = [c.to_json() for c in ev.check_claims(text, question, prompt.sources, self.embed,
                                                           cited_numbers, best_support, evidence)]
            timings["check_ms"] = round((time.perf_counter() - check_start) * 1000, 1)
        yield Answer(question, text, refused, sources, timings, model.info, uncited=uncited,
                     evidence=summary, quote=quote, quotes=quotes, claims=claims,
                     refused_by="model" if refused else None, claims_checked=checked)


def _quote_json(evidence: ev.Evidence, sentence: ev.Sentence, labels: list[str]) -> dict:
    hit = evidence.hits[sentence.hit]
    return {
        "text": sentence.text,
        "source": {
            "n": sentence.hit + 1,  # its rank among the retrieved chunks
            "path": hit.path,
            "page": hit.page,
            "page_end": hit.page_end,
            "chunk_id": hit.chunk_id,
            "char_start": hit.char_start,
            "text": hit.text,
            "support": {"start": sentence.start, "end": sentence.end, "text": sentence.text},
            "relevance": labels[sentence.hit],
        },
    }


def _remembering(embed: Callable[[Sequence[str]], np.ndarray]) -> Callable[[Sequence[str]], np.ndarray]:
    """`embed` that embeds each distinct text once, for evidence read twice over the same hits."""
    seen: dict[str, np.ndarray] = {}

    def run(texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in seen]
        if missing:
            seen.update(zip(missing, embed(missing)))
        return np.array([seen[t] for t in texts], dtype=np.float32)

    return run


def _source(n: int, hit: Hit, answer: str | None, cited: bool, labels: list[str], index: int) -> dict:
    support = None
    if answer:
        start, end, passage = best_support(_MARKER.sub("", answer), hit.text)
        if passage.strip():  # an answer sharing no word with the chunk has nothing to highlight
            support = {"start": start, "end": end, "text": passage}
    return {
        "n": n,
        "path": hit.path,
        "page": hit.page,
        "unit": hit.unit,  # the citation unit when it is not a page: "slide 3", "sheet 'Q3', rows 2–40"
        "page_end": hit.page_end,
        "char_start": hit.char_start,  # where the chunk starts in Engine.document_text(path)
        "chunk_id": hit.chunk_id,
        "text": hit.text,
        "score": round(hit.score, 6),  # fusion score, for tools; the window shows `relevance`
        "relevance": labels[index] if index < len(labels) else "weak",
        "support": support,
        "cited": cited,
    }


def _refusal(hits: Sequence[Hit]) -> str:
    if not hits:
        return REFUSAL_TEXT + " Nothing in the index is close to the question."
    places = []
    for h in hits[:3]:
        name = Path(h.path).name
        places.append(f"{name}, page {h.page}" if h.page else name)
    return REFUSAL_TEXT + " The closest passages are in: " + "; ".join(dict.fromkeys(places)) + "."
