"""A summary or a comparison as a message of the conversation, shaped like an answer
(`Answer.to_json()`), so the window shows it, cites it and opens its sources the same way."""

from __future__ import annotations

import difflib
import re
from pathlib import PurePath

from ..answer.citations import cited_numbers
from .compare import Comparison
from .summary import Summary

SHOWN = 30  # differences listed in one message; the rest are counted


def _answer(text: str, sources: list[dict], claims: list[dict], checked: bool, timings: dict) -> dict:
    from ..answer import verdict

    data = {"answer": text, "refused": False, "refused_by": None, "uncited": False, "sources": sources,
            "timings": timings, "model": {}, "quote": None, "quotes": [], "claims": claims,
            "claims_checked": checked, "evidence": {}}
    data["supported"] = verdict.supported(data)
    return data


def _source(n: int, src: dict) -> dict:
    return {"n": n, "path": src["path"], "page": src.get("page"), "unit": src.get("unit"),
            "page_end": src.get("page_end"), "char_start": src.get("char_start", 0), "chunk_id": src["chunk_id"],
            "text": src.get("text") or src.get("support", {}).get("text", ""), "score": 1.0,
            "relevance": "strong", "support": src.get("support"), "cited": True}


def summary_message(summary: Summary) -> dict:
    name = PurePath(summary.document).name
    sources = [dict(s, score=1.0, relevance="strong", support=None, cited=True) for s in summary.sources]
    lines = []
    if summary.summary:
        lines += [f"Summary of {name}:", summary.summary.strip(), ""]
    lines.append(f"In its own words ({name}):" if summary.summary else f"Summary of {name}, in its own words:")
    for item in summary.extractive:
        n = len(sources) + 1
        sources.append(_source(n, item["source"]))
        lines.append(f"- \u201c{' '.join(item['text'].split())}\u201d [{n}]")
    if summary.stopped:
        lines.append("(The model's summary was stopped; these sentences are the document's own.)")
    lines += [f"({w})" for w in summary.warnings]
    return _answer("\n".join(lines), sources, summary.claims, bool(summary.summary) and not summary.stopped,
                   summary.timings)


def comparison_message(c: Comparison) -> dict:
    a, b = PurePath(c.a).name, PurePath(c.b).name
    if c.same:
        return _answer(f"{a} and {b} say the same: no sentence was added, removed or changed.", [], [], False,
                       c.timings)
    sources: list[dict] = []

    def cite(src: dict) -> int:
        sources.append(_source(len(sources) + 1, src))
        return len(sources)

    lines = []
    numbers: list[list[int]] = []  # each difference listed, in the overview's order: its sources
    lines.append(f"What changed from {a} to {b}: {len(c.changed)} changed, {len(c.removed)} removed, "
                 f"{len(c.added)} added, {len(c.moved)} moved.")
    shown = 0
    rows = []
    for ch in c.changed:
        if shown == SHOWN:
            break
        x, y = cite(ch["before"]["source"]), cite(ch["after"]["source"])
        numbers.append([x, y])
        before, after = marked_pair(ch["before"]["text"], ch["after"]["text"])
        rows.append(f"| {before} [{x}] | {after} [{y}] |")
        shown += 1
    if rows:
        # The two sides of each change next to each other, the words that differ in bold:
        # a Markdown table, which the window draws as two columns and an export keeps.
        lines += ["", f"| Before, in {_cell(a)} | After, in {_cell(b)} |", "|---|---|", *rows, ""]
    for label, items in (("Removed", c.removed), ("Added", c.added)):
        for item in items:
            if shown == SHOWN:
                break
            numbers.append([cite(item["source"])])
            lines.append(f"- {label}: \u201c{' '.join(item['text'].split())}\u201d [{numbers[-1][0]}]")
            shown += 1
    for m in c.moved:
        if shown == SHOWN:
            break
        x, y = cite(m["before"]["source"]), cite(m["after"]["source"])
        numbers.append([x, y])
        lines.append(f"- Moved: \u201c{' '.join(m['before']['text'].split())}\u201d [{x}] \u2192 [{y}]")
        shown += 1
    if c.differences > shown:
        lines.append(f"(and {c.differences - shown} more: enclave-cli compare lists them all)")
    if c.overview:
        # The overview cites differences by number: cite their passages in both documents.
        def renumber(match: re.Match) -> str:
            got = [n for d in cited_numbers(match.group(0), len(numbers)) for n in numbers[d - 1]]
            return f" [{', '.join(map(str, got))}]" if got else ""

        lines = [_MARKS.sub(renumber, c.overview.strip()), ""] + lines
    return _answer("\n".join(lines), sources, [], False, c.timings)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: on one line, its own marks escaped (a sheet's row
    holds "|", a sentence "*" or "[3]", which would be a column, emphasis or a citation)."""
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", " ".join(text.split()))


def marked_pair(before: str, after: str) -> tuple[str, str]:
    """The two sentences as table cells, the words that differ between them in bold."""
    x, y = before.split(), after.split()
    out_x, out_y = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, x, y, autojunk=False).get_opcodes():
        for words, lo, hi, out in ((x, i1, i2, out_x), (y, j1, j2, out_y)):
            if hi > lo:
                run = _cell(" ".join(words[lo:hi]))
                out.append(run if op == "equal" else f"**{run}**")
    return " ".join(out_x), " ".join(out_y)


_MARKS = re.compile(r"\s*\[\s*\d+(?:\s*[,;\-\u2013]\s*\d+)*\s*\]")
