"""The answer pipeline: retrieve, decide whether the evidence can answer, prompt, stream, cite.

`Answerer.ask()` is a generator: it yields the answer's text pieces as the model decodes
them, then one `Answer` with the sources it cites, the supporting passage in each, and the
timings. When the best evidence is too weak it refuses without calling the model: a small
model given unrelated text improvises, and an invented answer with a citation is worse
than none.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .citations import best_support, cited_numbers
from .llm import ChatModel
from .prompting import build_prompt
from .types import Hit

# Refusal: the best vector hit's cosine similarity to the question must reach this.
# Chosen on ../shared/eval/squad2-dev-public.json with `enclave-cli eval --plot` as the
# highest threshold that refuses at most 10% of answerable questions (see README, Results).
DEFAULT_REFUSAL_THRESHOLD = 0.39
ANSWER_TOKENS = 384

REFUSAL_TEXT = "I could not find the answer to this in your documents."


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

    def to_json(self) -> dict:
        return {
            "answer": self.text,
            "refused": self.refused,
            "uncited": self.uncited,
            "sources": self.sources,
            "timings": self.timings,
            "model": self.model,
        }


def evidence_strength(hits: Sequence[Hit]) -> float:
    """The best cosine similarity among the retrieved chunks (0 when none)."""
    scores = [h.vector_score for h in hits if h.vector_score is not None]
    return max(scores, default=0.0)


def retrieval_query(question: str, history: Sequence[tuple[str, str]]) -> str:
    """Follow-ups like "and who led it?" carry the previous question's topic into retrieval."""
    if not history:
        return question
    return f"{history[-1][0]} {question}"


_MARKER = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")


class Answerer:
    def __init__(
        self,
        search: Callable[[str, int], list[Hit]],
        model: ChatModel,
        threshold: float = DEFAULT_REFUSAL_THRESHOLD,
        temperature: float = 0.0,
        answer_tokens: int = ANSWER_TOKENS,
    ):
        self.search = search
        self.model = model
        self.threshold = threshold
        self.temperature = temperature
        self.answer_tokens = answer_tokens

    def ask(
        self,
        question: str,
        k: int = 5,
        history: Sequence[tuple[str, str]] = (),
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[str | Answer]:
        started = time.perf_counter()
        hits = self.search(retrieval_query(question, history), k)
        retrieve_ms = (time.perf_counter() - started) * 1000
        strength = evidence_strength(hits)
        timings = {"retrieve_ms": round(retrieve_ms, 1), "first_token_ms": None, "total_ms": None,
                   "tokens": 0, "tokens_per_s": None}
        if strength < self.threshold:
            text = _refusal(hits)
            yield text
            timings["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
            yield Answer(question, text, True, [_source(i + 1, h, None, False) for i, h in enumerate(hits)],
                         timings, self.model.info, uncited=True, evidence={"strength": strength})
            return

        model = self.model
        prompt = build_prompt(
            question, hits, list(history), model.prompt_tokens, model.context_size, self.answer_tokens,
        )
        pieces: list[str] = []
        first = None
        gen_start = time.perf_counter()
        stream = model.stream(prompt.messages, self.answer_tokens, self.temperature, should_stop)
        try:
            for piece in stream:
                if first is None:
                    first = time.perf_counter()
                pieces.append(piece)
                yield piece
        finally:
            stream.close()
        end = time.perf_counter()
        text = "".join(pieces).strip()
        tokens = model.last_stats.generated_tokens
        timings.update(
            first_token_ms=round(((first or end) - started) * 1000, 1),
            total_ms=round((end - started) * 1000, 1),
            tokens=tokens,
            tokens_per_s=round((tokens - 1) / (end - first), 1) if first and tokens > 1 and end > first else None,
        )
        timings["prompt_tokens"] = prompt.prompt_tokens
        timings["prompt_ms"] = round((gen_start - started) * 1000, 1)  # until the model got the prompt
        timings["generate_ms"] = round((end - gen_start) * 1000, 1)
        cited = cited_numbers(text, len(prompt.sources))
        uncited = not cited
        chosen = cited or list(range(1, len(prompt.sources) + 1))
        sources = [
            _source(n, prompt.sources[n - 1], text, not uncited) for n in chosen
        ]
        yield Answer(question, text, False, sources, timings, model.info, uncited=uncited,
                     evidence={"strength": strength})


def _source(n: int, hit: Hit, answer: str | None, cited: bool) -> dict:
    support = None
    if answer:
        start, end, passage = best_support(_MARKER.sub("", answer), hit.text)
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
        "score": round(hit.score, 6),
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
