"""Is a chat message asking for a whole-document task? A rule, never a model call.

"summarize zen.pdf", "give me a summary of the handbook", "what changed between
policy-2024.pdf and policy-2025.docx", "compare A and B": the window and the CLI route
these to summarize or compare instead of top-k answering, which cannot see a whole
document. A named document must be one the caller knows (`names`), else the message is
an ordinary question ("summarize the causes of the war" is one); with no names given, a
target that looks like a file name (it has an extension) is taken. Imports nothing heavy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

_POLITE = r"(?:(?:please|pls|can\s+you|could\s+you|would\s+you|i\s+(?:want|need|would\s+like)(?:\s+you)?\s+to)\s+)*"
_SUMMARIZE = re.compile(
    _POLITE + r"(?:summari[sz]e|sum\s+up|(?:give\s+me\s+|write\s+|make\s+)?an?\s+(?:short\s+|brief\s+|long\s+|detailed\s+)?"
    r"(?:summary|overview|tl;?dr)\s+of|tl;?dr(?:\s+of)?)\s+(?P<a>.+?)[\s?.!]*$",
    re.IGNORECASE)
_COMPARE = [
    re.compile(_POLITE + r"(?:what|which\s+\w+)(?:'s|\s+is|\s+has|\s+have)?\s+(?:changed|different|differs?|"
               r"(?:are\s+)?the\s+(?:differences?|changes))\s+between\s+(?P<a>.+?)\s+and\s+(?P<b>.+?)[\s?.!]*$",
               re.IGNORECASE),
    re.compile(_POLITE + r"(?:compare|diff)\s+(?P<a>.+?)\s+(?:and|with|to|against|vs\.?|versus)\s+(?P<b>.+?)[\s?.!]*$",
               re.IGNORECASE),
    re.compile(_POLITE + r"(?:how|what)\s+(?:does|do|did)\s+(?P<a>.+?)\s+differ\s+from\s+(?P<b>.+?)[\s?.!]*$",
               re.IGNORECASE),
]
_LONG = re.compile(r"\b(?:long|detailed|in\s+detail|full)\b", re.IGNORECASE)
_ARTICLE = re.compile(r"^(?:the|this|that|my|our|document|file)\s+", re.IGNORECASE)


@dataclass(frozen=True)
class DocumentIntent:
    task: str  # "summarize" or "compare"
    targets: tuple[str, ...]  # the documents as matched (paths from `names`), or as written
    length: str = "short"


def document_intent(message: str, names: Sequence[str] | None = None) -> DocumentIntent | None:
    """The task a message asks for, or None for an ordinary question."""
    text = " ".join(message.split())
    for pattern in _COMPARE:
        m = pattern.fullmatch(text)
        if m:
            found = _split_pair(m.group("a"), m.group("b"), names)
            if found:
                return DocumentIntent("compare", found)
    m = _SUMMARIZE.fullmatch(text)
    if m:
        target = m.group("a")
        length = "long" if _LONG.search(text[: m.start("a")] + " " + target) else "short"
        target = re.sub(r"\s+(?:in\s+detail|briefly)$", "", target, flags=re.IGNORECASE)
        found = match_document(target, names)
        if found:
            return DocumentIntent("summarize", (found,), length)
    return None


def _split_pair(a: str, b: str, names: Sequence[str] | None) -> tuple[str, str] | None:
    # "A and B and C" is ambiguous: try every place "and" could split it.
    words = f"{a} and {b}".split(" and ")
    for cut in range(1, len(words)):
        x = match_document(" and ".join(words[:cut]), names)
        y = match_document(" and ".join(words[cut:]), names)
        if x and y and x != y:
            return (x, y)
    x, y = match_document(a, names), match_document(b, names)
    return (x, y) if x and y and x != y else None


def match_document(target: str, names: Sequence[str] | None) -> str | None:
    """The one known document `target` names: its file name, with or without the extension,
    or words of it ("the travel policy" for travel-policy-2025.pdf, when only one fits)."""
    target = _ARTICLE.sub("", target.strip().strip("\"'\u201c\u201d\u2018\u2019`")).strip()
    if not target:
        return None
    if names is None:
        return target if re.search(r"\.[A-Za-z0-9]{2,5}$", target) else None
    lowered = target.lower()
    exact = [n for n in names if PurePath(n).name.lower() == lowered or n.lower() == lowered]
    if exact:
        return exact[0]
    stems = [n for n in names if PurePath(n).stem.lower() == lowered]
    if len(stems) == 1:
        return stems[0]
    words = set(re.findall(r"\w+", lowered)) - {"the", "a", "an", "of", "pdf", "docx", "file", "document"}
    if not words:
        return None
    fits = [n for n in names if words <= set(re.findall(r"[a-z0-9]+", PurePath(n).name.lower()))]
    return fits[0] if len(fits) == 1 else None
