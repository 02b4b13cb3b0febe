"""The keyword-query grammar both indexes read: a question's content words, and the FTS5
MATCH expression the local catalog runs (the team catalog builds its tsquery from the same
words)."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his how i if in into is it its "
    "me my not of on or our she so than that the their them then there these they this to "
    "was we were what when where which who whom why will with you your do does did can "
    "could would should may might also about after before over under".split()
)


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression that ORs the question's content words, each quoted."""
    unique = query_words(text)
    if not unique:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in unique)


def query_words(text: str) -> list[str]:
    """The question's content words (all its words when it has no other), in order, once."""
    words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
    if not words:
        words = _WORD.findall(text.lower())
    return list(dict.fromkeys(words))[:64]
