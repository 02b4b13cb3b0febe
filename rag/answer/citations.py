"""Find which sources an answer cites, and the passage of a source that supports it.

`cited_numbers` reads the bracketed citations the system prompt asks for ([1], [1, 2],
[1][3], [2-4]); `best_support` picks the sentence (or pair of adjacent sentences) of a
source that shares the most weighted words with the answer, so the window can highlight
it. Both are plain Python: lexical overlap with a light stemmer and a stopword list.
"""

from __future__ import annotations

import math
import re

from ..text import split_spans

_CITATION = re.compile(
    r"\[\s*(?:(?:sources?|src|ref)\.?\s*)?"
    r"(\d{1,4}(?:\s*(?:,|;|&|and|-|\u2013)\s*(?:(?:sources?|src)\.?\s*)?\d{1,4})*)\s*\]",
    re.IGNORECASE,
)
_NUMBER_OR_RANGE = re.compile(r"(\d{1,4})(?:\s*[-\u2013]\s*(\d{1,4}))?")
_MAX_RANGE = 50


def cited_numbers(answer_text: str, n_sources: int | None = None) -> list[int]:
    """Source numbers cited in `answer_text`, in order of first citation, without repeats.

    Understands [1], [1, 2], [1;2], [1][3], [2-4] and [Source 2]. With `n_sources`, numbers
    outside 1..n_sources are ignored (a model sometimes invents [7] with 3 sources); 0 is
    never a source number.
    """
    seen: dict[int, None] = {}
    for match in _CITATION.finditer(answer_text):
        for part in _NUMBER_OR_RANGE.finditer(match.group(1)):
            first = int(part.group(1))
            last = int(part.group(2)) if part.group(2) else first
            if last < first or last - first > _MAX_RANGE:
                numbers = [first, last] if part.group(2) else [first]
            else:
                numbers = list(range(first, last + 1))
            for number in numbers:
                if number >= 1 and (n_sources is None or number <= n_sources):
                    seen.setdefault(number, None)
    return list(seen)


# -- lexical support -----------------------------------------------------------------

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to
    too under until up very was we were what when where which while who whom why will
    with would you your yours yourself yourselves according source sources document
    documents said says say
    """.split()
)

_WORD = re.compile(r"\w+(?:[.,]\d+)*", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*\n|\n(?=\s*(?:[-*\u2022]|\d+[.)])\s)")
# (suffix, replacement), first match wins; a stem keeps at least 3 letters.
_SUFFIXES = (
    ("ational", "ate"), ("izations", "ize"), ("ization", "ize"), ("ations", "ate"),
    ("ation", "ate"), ("ments", ""), ("ment", ""), ("ingly", ""), ("ings", ""),
    ("ing", ""), ("edly", ""), ("ies", "y"), ("ied", "y"), ("ed", ""), ("es", "e"),
    ("ly", ""), ("s", ""),
)  # fmt: skip


def stem(word: str) -> str:
    """A light suffix-stripping stemmer: the same word family maps to the same key
    ("located", "locations", "locate" -> "locat"). Numbers are kept as they are."""
    word = word.lower()
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) <= 3 or word[0].isdigit():
        return word
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                break
            word = word[: -len(suffix)] + replacement
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]  # "planned" -> "plann" -> "plan"
    return word


def content_stems(text: str) -> list[str]:
    """Stems of the words of `text` that carry meaning (stopwords and citations dropped)."""
    text = _CITATION.sub(" ", text)
    return [
        stem(w)
        for w in _WORD.findall(text)
        if w.lower() not in STOPWORDS and (len(w) > 1 or w.isdigit())
    ]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of `text`, whitespace trimmed, none empty."""
    return split_spans(text, _SENTENCE_END, 0, len(text))


# -- numbers ---------------------------------------------------------------------------

# A number as written: digits with thousands separators or decimals, joined by "/" into one
# figure ("142/88"), an ordinal or decade suffix, a unit written on ("20mg" is 20); a
# comparison sign is a token of its own.
_NUMBER_TOKEN = re.compile(
    r"[<>\u2264\u2265]|\d[\d,.]*(?:/\d[\d,.]*)*(?:(?:st|nd|rd|th|s)(?![^\W\d_]))?|[^\W\d_]+|[.;!?\n]",
    re.IGNORECASE)
# Number words as digits; not "one", which is as often no number ("one of the reasons").
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split()) if w != "_"}
# Words (or signs) that make the number after them a target or a limit, not a value: "target
# <130/80 mmHg" does not say that the blood pressure was 130/80.
_QUALIFIERS = frozenset(
    "< > \u2264 \u2265 target targets goal goals normal reference range limit limits threshold recommended "
    "maximum minimum max min ideal".split())
_QUALIFIER_REACH = 3  # tokens before a number that can qualify it


def _figure(token: str) -> str:
    """One written number in a normal form: "1,000" and "1000", "3.50" and "3.5", "10th" and "10"."""
    token = re.sub(r"(?:st|nd|rd|th|s)$", "", token.lower()).rstrip(".,")
    parts = []
    for part in token.split("/"):
        part = re.sub(r",(?=\d{3}\b)", "", part)
        if re.fullmatch(r"\d+", part):
            part = str(int(part))
        elif re.fullmatch(r"\d+\.\d+", part):
            part = part.rstrip("0").rstrip(".")
        parts.append(part)
    return "/".join(parts)


def stated_numbers(text: str) -> dict[str, bool]:
    """The numbers `text` states, normalized, each with whether it is stated as a target or a
    limit ("target <130/80") rather than as a value. Citation marks are not numbers."""
    tokens = _NUMBER_TOKEN.findall(_CITATION.sub(" ", text))
    out: dict[str, bool] = {}
    for i, token in enumerate(tokens):
        lower = token.lower()
        if token[0].isdigit():
            number = _figure(token)
        elif lower in _NUMBER_WORDS:
            number = _NUMBER_WORDS[lower]
        else:
            continue
        before = tokens[max(0, i - _QUALIFIER_REACH):i]
        before = before[max((j + 1 for j, t in enumerate(before) if t in ".;!?\n"), default=0):]  # this sentence
        qualified = any(t.lower() in _QUALIFIERS for t in before)
        out[number] = out.get(number, True) and qualified  # stated once as a value: a value
    return out


def numbers_agree(claim: str, passage: str, heading: str = "") -> bool:
    """Whether every number of `claim` is stated in `passage`, as a value where the claim
    states a value: "The blood pressure was 130/80" is not supported by a passage that says
    142/88 and gives 130/80 as the target. `heading`: the line above the passage; a column
    of a table read by OCR ("Normal Range" over "120/80 mmHg ...") is qualified by it. True
    for a claim without numbers."""
    stated = stated_numbers(passage)
    if heading and len(heading.split()) <= 4 and any(w.lower() in _QUALIFIERS for w in heading.split()):
        stated = dict.fromkeys(stated, True)
    # A claim that speaks of a target or a limit anywhere may take one from the passage.
    speaks_of_limits = any(t.lower() in _QUALIFIERS for t in _NUMBER_TOKEN.findall(claim))
    for number in stated_numbers(claim):
        if number not in stated or (stated[number] and not speaks_of_limits):
            return False
    return True


def line_above(text: str, start: int) -> str:
    """The last non-blank line of `text` before offset `start`."""
    for line in reversed(text[:start].splitlines()):
        if line.strip():
            return line.strip()
    return ""


def best_support(answer_text: str, source_text: str) -> tuple[int, int, str]:
    """The passage of `source_text` that best supports `answer_text`.

    Returns (start, end, passage) with `passage == source_text[start:end]`: a sentence, or
    two adjacent sentences when together they cover clearly more of the answer. Words are
    compared by stem, stopwords ignored, words rare in the source weigh more. Returns
    (0, 0, "") when no sentence shares a content word with the answer.
    """
    spans = sentence_spans(source_text)
    answer = set(content_stems(answer_text))
    if not spans or not answer:
        return (0, 0, "")
    stems = [set(content_stems(source_text[a:b])) for a, b in spans]
    # Inverse sentence frequency: a word found in every sentence tells little.
    frequency: dict[str, int] = {}
    for words in stems:
        for word in words:
            frequency[word] = frequency.get(word, 0) + 1
    n = len(spans)
    weight = {w: math.log(1.0 + n / f) for w, f in frequency.items()}

    def score(words: set[str]) -> float:
        shared = words & answer
        if not shared:
            return 0.0
        covered = sum(weight[w] for w in shared)
        # Prefer concise passages: dampen by passage length.
        return covered / (1.0 + 0.15 * math.sqrt(len(words)))

    best_score, best = 0.0, None
    for i, words in enumerate(stems):
        s = score(words)
        if s > best_score:
            best_score, best = s, (spans[i][0], spans[i][1])
    if best is None:
        return (0, 0, "")
    for i in range(n - 1):  # two adjacent sentences, if clearly better
        s = score(stems[i] | stems[i + 1])
        if s > best_score * 1.25:
            best_score, best = s, (spans[i][0], spans[i + 1][1])
    start, end = best
    return (start, end, source_text[start:end])
