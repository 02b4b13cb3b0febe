"""The model's summary: map over groups of chunks sized to its context, reduce until one
prompt holds what is left, stream the last step.

Every note carries the chunk ids it cites, from the map through each reduce, so the final
bullets cite the document's own chunks and are claim-checked against them as answers are.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..answer import evidence as ev
from ..answer.citations import best_support, cited_numbers, content_stems
from ..answer.prompting import format_source
from ..index.catalog import ChunkRow
from ..llm import ChatModel
from ..llm.pace import Pace, pace_of, record as record_pace
from ..types import Hit

CHARS_PER_TOKEN = 3.0  # a cautious guess to plan groups; each prompt is then counted exactly
PROMPT_OVERHEAD = 160  # tokens of instructions and chat template around the sources
OUT_TOKENS = {"short": (128, 220), "long": (220, 420)}  # (each map or reduce step, the final one)
CHECK_QUESTION = "Summarize the document."

MAP_SYSTEM = (
    "You summarize a document for its reader. From the numbered sources, write {n} short "
    "bullet points with the most important facts, in the order the sources give them. Use only "
    "what the sources say. End every bullet with the number of the source it comes from, like [2]."
)
REDUCE_SYSTEM = (
    "You combine notes on parts of one document into its summary. Write {n} short bullet points "
    "with the most important facts, in the order of the notes, without repeating yourself. Use only "
    "what the notes say. End every bullet with the numbers of the notes it comes from, like [1, 3]."
)


@dataclass
class Note:
    """A bullet of a map or reduce step, and the chunks it stands on."""

    text: str
    chunk_ids: list[str]


@dataclass
class PartProgress:
    """Where a model summary is: "reading part 3 of 12", with the time it expects to need."""

    stage: str  # "map", "reduce" or "final"
    part: int
    parts: int
    message: str
    estimate_s: float | None = None  # seconds left, as far as it can tell

    def to_json(self) -> dict:
        return {"stage": self.stage, "part": self.part, "parts": self.parts, "message": self.message,
                "estimate_s": None if self.estimate_s is None else round(self.estimate_s, 1)}


@dataclass
class ModelSummary:
    text: str
    sources: list[dict]
    claims: list[dict]
    stopped: bool = False
    parts: int = 0
    timings: dict = field(default_factory=dict)


def hit_of(chunk: ChunkRow) -> Hit:
    return Hit(chunk.id, chunk.path, chunk.page_start, chunk.text, 1.0, page_end=chunk.page_end,
               char_start=chunk.char_start, char_end=chunk.char_end, collection=chunk.collection, unit=chunk.unit)


def plan_groups(sizes: Sequence[int], budget_chars: int) -> list[list[int]]:
    """Consecutive runs of items whose sizes add up to at most `budget_chars` (an item larger
    than that goes alone: the prompt cuts it)."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, size in enumerate(sizes):
        if current and used + size > budget_chars:
            groups.append(current)
            current, used = [], 0
        current.append(i)
        used += size
    if current:
        groups.append(current)
    return groups


def summarize_with_model(chunks: Sequence[ChunkRow], model: ChatModel, embed: Callable[[Sequence[str]], np.ndarray] | None,
                         length: str = "short", should_stop: Callable[[], bool] | None = None,
                         temperature: float = 0.0) -> Iterator[PartProgress | str | ModelSummary]:
    """Yields PartProgress before each step, the final step's text as it is decoded, then
    the ModelSummary. `should_stop()` is read between steps and between tokens; once true
    the summary ends at once, marked stopped, with whatever was written."""
    started = time.perf_counter()
    step_tokens, final_tokens = OUT_TOKENS[length]
    by_id = {c.id: c for c in chunks}
    room = max(256, model.context_size - PROMPT_OVERHEAD - final_tokens)
    budget_chars = int(room * CHARS_PER_TOKEN)
    groups = plan_groups([len(c.text) + 40 for c in chunks], budget_chars)
    stop = should_stop or (lambda: False)
    timings = {"parts": len(groups)}
    # The model's measured pace on this machine (rag/llm/pace.py) when it has run before;
    # revised from this run's own pace after the first part.
    pace = pace_of(model)
    estimate = _estimate(pace, sum(len(c.text) for c in chunks), len(groups), step_tokens, final_tokens)

    if len(groups) == 1:  # the whole document fits: one streamed step
        yield PartProgress("final", 1, 1, "reading the document", estimate)
        result = yield from _final(list(chunks), None, model, embed, length, stop, temperature, MAP_SYSTEM,
                                   by_id, started, timings)
        result.parts = 1
        yield result
        return

    notes: list[Note] = []
    step_started = time.perf_counter()
    for number, group in enumerate(groups, start=1):
        if stop():
            yield _stopped(notes, timings, started, len(groups))
            return
        elapsed = time.perf_counter() - step_started
        per_part = elapsed / (number - 1) if number > 1 else None
        left = (per_part * (len(groups) - number + 1) + final_tokens / pace.decode_per_s if per_part
                else estimate)
        yield PartProgress("map", number, len(groups), f"reading part {number} of {len(groups)}", left)
        part = [chunks[i] for i in group]
        text = yield from _generate(MAP_SYSTEM.format(n="2 to 4"), [format_source(n + 1, hit_of(c)) for n, c in enumerate(part)],
                                    model, step_tokens, temperature, stop, stream=False)
        notes += _notes(text, [[c.id] for c in part], [c.text for c in part])
    timings["map_ms"] = round((time.perf_counter() - started) * 1000, 1)

    level = 0
    while True:  # reduce until one prompt holds every note
        sizes = [len(n.text) + 20 for n in notes]
        if sum(sizes) <= budget_chars or len(notes) <= 1:
            break
        level += 1
        batches = plan_groups(sizes, budget_chars)
        if len(batches) == 1:
            break
        reduced: list[Note] = []
        for number, batch in enumerate(batches, start=1):
            if stop():
                yield _stopped(notes, timings, started, len(groups))
                return
            yield PartProgress("reduce", number, len(batches), f"combining notes {number} of {len(batches)}")
            own = [notes[i] for i in batch]
            text = yield from _generate(REDUCE_SYSTEM.format(n="3 to 5"), _note_blocks(own), model, step_tokens,
                                        temperature, stop, stream=False)
            reduced += _notes(text, [n.chunk_ids for n in own], [n.text for n in own])
        if len(reduced) >= len(notes):  # no progress (a model that repeats every note): stop reducing
            notes = reduced
            break
        notes = reduced
    timings["reduce_levels"] = level
    if stop():
        yield _stopped(notes, timings, started, len(groups))
        return
    yield PartProgress("final", 1, 1, "writing the summary", final_tokens / pace.decode_per_s)
    result = yield from _final(None, notes, model, embed, length, stop, temperature, REDUCE_SYSTEM, by_id, started,
                               timings)
    result.parts = len(groups)
    yield result


def _estimate(pace: Pace, chars: int, parts: int, step_tokens: int, final_tokens: int) -> float:
    prompt = chars / CHARS_PER_TOKEN + parts * PROMPT_OVERHEAD
    out = (parts * step_tokens if parts > 1 else 0) + final_tokens
    return pace.seconds(prompt, out)


def _generate(system: str, blocks: list[str], model: ChatModel, max_tokens: int, temperature: float,
              stop: Callable[[], bool], stream: bool) -> Iterator[str]:
    # The task is said again after the sources: a small model follows the last words best.
    task = system.split(". ", 1)[1]
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": "\n\n".join(blocks) + "\n\n" + task}]
    # Counted exactly: a group planned by characters that still overflows loses its tail.
    while len(blocks) > 1 and model.prompt_tokens(messages) + max_tokens > model.context_size:
        blocks = blocks[:-1]
        messages[1]["content"] = "\n\n".join(blocks) + "\n\n" + task
    pieces = []
    started, first = time.perf_counter(), None
    it = model.stream(messages, max_tokens, temperature, stop, None)
    try:
        for piece in it:
            first = first or time.perf_counter()
            pieces.append(piece)
            if stream:
                yield piece
    finally:
        it.close()
    record_pace(model, started, first, time.perf_counter())
    return "".join(pieces)


def _note_blocks(notes: Sequence[Note]) -> list[str]:
    return [f"<note id=\"{i + 1}\">\n{n.text}\n</note>" for i, n in enumerate(notes)]


_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s*")


def _notes(text: str, cited: list[list[str]], texts: Sequence[str]) -> list[Note]:
    """The bullets of a step's output, each with the chunk ids of the sources it cites (a
    bullet citing none stands on all of the step's sources)."""
    out = []
    everything = list(dict.fromkeys(i for ids in cited for i in ids))
    for line in re.split(r"\n+", _untagged(text)):
        plain = _BULLET.sub("", line).strip()
        numbers = cited_numbers(plain, len(cited))
        body = ev._CITE.sub("", plain).strip()
        if len(body.split()) < 3:
            continue
        ids = list(dict.fromkeys(i for n in numbers for i in cited[n - 1]))
        out.append(Note(body, ids or [i for n in closest(body, texts) for i in cited[n - 1]] or everything))
    return out


def closest(text: str, texts: Sequence[str], n: int = 2) -> list[int]:
    """Numbers (1-based) of the `n` texts sharing the most words with `text`: what a bullet
    that cites nothing is checked against (the model cited nothing; its words tell)."""
    words = set(content_stems(text))
    scored = sorted(((len(words & set(content_stems(t))), i + 1) for i, t in enumerate(texts)), reverse=True)
    return [i for score, i in scored[:n] if score > 0]


def _final(chunks, notes, model, embed, length, stop, temperature, system, by_id, started, timings):
    """The streamed last step; its citations are rewritten to the document's chunks."""
    _, final_tokens = OUT_TOKENS[length]
    n = "3 to 5" if length == "short" else "6 to 10"
    if chunks is not None:
        blocks = [format_source(i + 1, hit_of(c)) for i, c in enumerate(chunks)]
        cited = [[c.id] for c in chunks]
        texts = [c.text for c in chunks]
    else:
        blocks = _note_blocks(notes)
        cited = [note.chunk_ids for note in notes]
        texts = [note.text for note in notes]
    first = None
    gen = _generate(system.format(n=n), blocks, model, final_tokens, temperature, stop, stream=True)
    pieces = []
    while True:
        try:
            piece = next(gen)
        except StopIteration as done:
            text = done.value
            break
        first = first or time.perf_counter()
        pieces.append(piece)
        yield piece
    timings["first_token_ms"] = round(((first or time.perf_counter()) - started) * 1000, 1)
    stopped = stop()
    text, sources = _cite_chunks(text.strip(), cited, texts, by_id)
    claims = []
    if not stopped and sources:
        # The same check as answers: each bullet against the chunks it cites.
        hits = [hit_of(by_id[s["chunk_id"]]) for s in sources]
        claims = [c.to_json() for c in ev.check_claims(text, CHECK_QUESTION, hits, embed, cited_numbers, best_support)]
    timings["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return ModelSummary(text, sources, claims, stopped=stopped, timings=timings)


_TAGS = re.compile(r"^[ \t]*</?(?:note|source)\b[^>\n]*>[ \t]*\n?", re.M)


def _untagged(text: str) -> str:
    """The model's text without the <note> and <source> lines a small model copies from its
    prompt (SmolLM2 wrote its whole summary as "<note id=\"11\">" blocks)."""
    return re.sub(r"\n{3,}", "\n\n", _TAGS.sub("", text)).strip()


def _cite_chunks(text: str, cited: list[list[str]], texts: Sequence[str],
                 by_id: dict[str, ChunkRow]) -> tuple[str, list[dict]]:
    """Renumber the text's markers from the step's sources (or notes) to the chunks they
    stand on: [n] in the result is sources[n - 1], one chunk of the document."""
    order: list[str] = []

    def number(chunk_id: str) -> int:
        if chunk_id not in order:
            order.append(chunk_id)
        return order.index(chunk_id) + 1

    lines = []
    for line in _untagged(text).split("\n"):
        numbers = cited_numbers(line, len(cited))
        body = ev._CITE.sub("", line).rstrip()
        if not numbers and len(body.split()) >= 3:
            numbers = closest(body, texts)  # cited by its words, so that it is checked too
        if numbers and body.strip():
            ids = list(dict.fromkeys(i for n in numbers for i in cited[n - 1]))
            marks = sorted({number(i) for i in ids})
            line = f"{body} [{', '.join(map(str, marks))}]"
        lines.append(line)
    sources = []
    for n, chunk_id in enumerate(order, start=1):
        c = by_id[chunk_id]
        sources.append({"n": n, "path": c.path, "page": c.page_start, "page_end": c.page_end, "unit": c.unit,
                        "chunk_id": c.id, "char_start": c.char_start, "text": c.text})
    return "\n".join(lines), sources


def _stopped(notes: list[Note], timings: dict, started: float, parts: int) -> ModelSummary:
    timings["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return ModelSummary("", [], [], stopped=True, parts=parts, timings=timings)
