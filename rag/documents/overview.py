"""The model's overview of a comparison: a few bullets over the differences found, each
citing the differences it stands on, and through them the passages of both documents."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import PurePath

import numpy as np

from ..answer import evidence as ev
from ..answer.citations import best_support, cited_numbers
from ..answer.prompting import neutralize
from ..llm import ChatModel
from ..types import Hit
from .compare import Comparison
from .mapreduce import CHARS_PER_TOKEN, PROMPT_OVERHEAD, _generate

OVERVIEW_TOKENS = 220
SYSTEM = (
    "You describe how a document changed between two versions, A and B. From the numbered "
    "differences, write 3 to 5 short bullet points on the most important changes. Use only what "
    "the differences say. End every bullet with the numbers of the differences it comes from, like [2]."
)


def _items(c: Comparison) -> list[tuple[str, list[dict]]]:
    """Each difference as the model reads it, with the sources it has on each side."""
    out = []
    for ch in c.changed:
        out.append((f"Changed. A said: {ch['before']['text']}\nB says: {ch['after']['text']}",
                    [ch["before"]["source"], ch["after"]["source"]]))
    for r in c.removed:
        out.append((f"Removed from B (only in A): {r['text']}", [r["source"]]))
    for a in c.added:
        out.append((f"Added in B: {a['text']}", [a["source"]]))
    for m in c.moved:
        out.append((f"Moved: {m['before']['text']}", [m["before"]["source"], m["after"]["source"]]))
    return out


def write_overview(c: Comparison, model: ChatModel, embed: Callable[[Sequence[str]], np.ndarray] | None,
                   should_stop: Callable[[], bool] | None = None) -> Iterator[str]:
    """Streams the overview's text and fills c.overview, c.sources, c.claims."""
    started = time.perf_counter()
    stop = should_stop or (lambda: False)
    items = _items(c)
    budget = int((model.context_size - PROMPT_OVERHEAD - OVERVIEW_TOKENS) * CHARS_PER_TOKEN)
    kept, used = [], 0
    for text, sources in items:  # changes first: they say most about a revision
        if used + len(text) > budget:
            break
        kept.append((text, sources))
        used += len(text) + 40
    if not kept:
        return
    blocks = [f"<difference id=\"{i + 1}\">\n{neutralize(t)}\n</difference>" for i, (t, _) in enumerate(kept)]
    gen = _generate(SYSTEM, blocks, model, OVERVIEW_TOKENS, 0.0, stop, stream=True)
    while True:
        try:
            yield next(gen)
        except StopIteration as done:
            text = (done.value or "").strip()
            break
    c.stopped = stop()
    hits = [Hit(f"difference-{i + 1}", f"{PurePath(c.a).name} / {PurePath(c.b).name}", None, t, 1.0)
            for i, (t, _) in enumerate(kept)]
    cited = cited_numbers(text, len(kept))
    c.overview = text
    c.sources = [{"n": n, "text": kept[n - 1][0], "sides": kept[n - 1][1]} for n in range(1, len(kept) + 1)
                 if n in cited]
    if not c.stopped and text:
        c.claims = [cl.to_json() for cl in ev.check_claims(text, "What changed between the two documents?", hits,
                                                           embed, cited_numbers, best_support)]
    c.timings["overview_ms"] = round((time.perf_counter() - started) * 1000, 1)
