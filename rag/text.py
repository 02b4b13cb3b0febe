"""Text pieces every stage splits the same way: the chunker cuts chunks at sentences, the
answer stage checks claims sentence by sentence."""

from __future__ import annotations

import re


def split_spans(text: str, pattern: re.Pattern, start: int, end: int) -> list[tuple[int, int]]:
    """Non-blank pieces of text[start:end] between matches of pattern, as absolute offsets."""
    out, pos = [], start
    for match in pattern.finditer(text, start, end):
        out.append((pos, match.start()))
        pos = match.end()
    out.append((pos, end))
    trimmed = []
    for a, b in out:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            trimmed.append((a, b))
    return trimmed
