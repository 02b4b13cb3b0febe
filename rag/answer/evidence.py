"""Evidence at the level where answers live: the sentences of the retrieved chunks.

One embedding call scores every sentence of the retrieved chunks against the question. From
that come

- the decision whether the documents can answer at all: a small logistic regression over
  five signals (`FEATURES`: how close the best sentence and the best chunk are in meaning,
  whether a name or number of the question is missing from the best passage's chunk, whether
  the question denies what the passage does not, and whether a number of the question, in
  digits or words, is missing from it), fitted on the public SQuAD 2.0 set by
  `benchmarks/fit_answerability.py`, whose coefficients are written below (a question it
  lets through may still be refused by the model's own lean, MODEL_REFUSAL_PROBABILITY);
- the quote: the one sentence that best answers the question, verbatim, shown before the
  model has read its prompt;
- a plain relevance label per source ("strong", "partial", "weak"), from the same model
  applied to that source alone;
- the excerpts the prompt carries: the sentences that bear on the question with their
  neighbours, instead of whole chunks;
- the check of an answer's claims against the sentences of the sources they cite.

Plain numpy and Python: the embedder is the one that indexed the documents.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .citations import (
    STOPWORDS, content_stems, line_above, numbers_agree, sentence_spans, stated_numbers, stem,
)
from ..text import split_spans
from ..types import Hit

# How many retrieved chunks the evidence reads (the prompt may carry fewer).
EVIDENCE_K = 5
# A "sentence" longer than this (a table, a list without full stops) is cut at line breaks.
LONG_SENTENCE = 300

# --- the answerability model --------------------------------------------------------------
# P(the documents answer the question) = sigmoid(INTERCEPT + sum(COEFFICIENTS[f] * x[f])).
# Fitted by `benchmarks/fit_answerability.py` on ../shared/eval/squad2-dev-public.json
# (626 questions, 5 chunks each); rerunning it prints these numbers. In-sample, P < 0.38
# refuses 38.1% of unanswerable and 9.2% of answerable questions (the best cosine alone:
# 17.7% at 9.9%). Held out (each article's questions scored by the model fitted on the
# other), a cut refusing at most 10% of the answerable refuses 22.8% of the unanswerable
# (13.5% for the model before number_mismatch; the best cosine alone 11.1%).
FEATURES = ("sentence_similarity", "chunk_similarity", "missing_name", "negation_mismatch", "number_mismatch")
INTERCEPT = -1.8281
COEFFICIENTS = {
    "sentence_similarity": 1.9726,
    "chunk_similarity": 1.5089,
    "missing_name": -0.6851,
    "negation_mismatch": -3.416,
    "number_mismatch": -1.4482,
}
# Also read, and tried in the fit, but they do not help held out on SQuAD (its unanswerable
# questions are written from the same paragraph): the question itself negated, coverage of
# the question's words by the best passage, and agreement of vector and keyword retrieval
# on the best chunk.
# Answer when P reaches this: the highest cut that refuses at most 10% of the answerable
# questions of the public set (see README, Results, and benchmarks/results/refusal_curve.png).
DEFAULT_MIN_PROBABILITY = 0.38
# A model that gives at least this probability to opening its answer with the refusal
# sentence refuses (rag/llm/base.py, `refuse_at`): chosen by `benchmarks/model_refusal.py`
# on all 626 public questions with the evaluation model (Qwen2.5-Coder-1.5B), the lowest cut
# that, with P < DEFAULT_MIN_PROBABILITY, refuses at most 10% of the answerable: together
# 42.0% of unanswerable at 9.9% of answerable (the evidence alone 38.1% at 9.2%; chosen on
# one half, the other half gets 38.0% at 10.2%). Both cuts chosen together (evidence 0.26,
# model 0.07) reach 49.8% at 9.9%, 41.6% at 8.2% on the half they were not chosen on: a
# setting for models that read as well, not the default, because the bundled 135M model
# never gives the refusal that much (its median is 1.3%) and would only lose refusals.
MODEL_REFUSAL_PROBABILITY = 0.24
STRONG = 0.70  # a source whose own evidence reaches this is a "strong" match

# A claim is supported when its content words are in the sources it cites, or when a
# sentence of those sources says the same in other words.
CLAIM_COVERAGE = 0.6
CLAIM_SIMILARITY = 0.75
# Words that answer a yes/no question without carrying content of their own.
_AFFIRMATIONS = frozenset("yes no true false correct incorrect right wrong indeed".split())
# Words that only announce an answer: "The answer is: 2" says no more than "2".
_ANNOUNCING = frozenset(["answer"])
_NEGATION = frozenset("not never no none nothing nobody neither nor without cannot".split())
_TOKEN = re.compile(r"\w+(?:'\w+)?")
_NEWLINE = re.compile(r"\n")


def probability(features: dict[str, float]) -> float:
    z = INTERCEPT + sum(COEFFICIENTS[name] * features[name] for name in FEATURES)
    return 1.0 / (1.0 + math.exp(-z))


def relevance_label(p: float, min_probability: float = DEFAULT_MIN_PROBABILITY) -> str:
    if p >= STRONG:
        return "strong"
    return "partial" if p >= min_probability else "weak"


# --- sentences and their scores --------------------------------------------------------------


@dataclass
class Sentence:
    hit: int  # index into the hits
    start: int  # offsets into hits[hit].text
    end: int
    text: str
    similarity: float = 0.0  # cosine to the question
    coverage: float = 0.0  # share of the question's content words in this sentence


@dataclass
class Evidence:
    hits: list[Hit]
    sentences: list[Sentence]  # every sentence of the hits read, in hit then text order
    features: dict[str, float]
    probability: float
    source_probability: list[float]  # the same model on each hit alone
    question_vector: np.ndarray | None = None
    vectors: np.ndarray | None = None  # one row per sentence
    embed: Callable[[Sequence[str]], np.ndarray] | None = field(default=None, repr=False)

    def best(self, n: int = 1) -> list[Sentence]:
        """The sentences that best answer the question, best first, one per distinct text.

        Only sentences that say something: a heading, a label, a field name or a title is
        never a quote, however close to the question its words are ("## Adding documents"
        for "How do I add documents?"); a fragment without a clause ranks below a sentence
        that is as close. None when the hits hold nothing but labels."""
        kinds = {id(s): sentence_kind(s.text) for s in self.sentences}
        ranked = sorted((s for s in self.sentences if kinds[id(s)] != LABEL),
                        key=lambda s: -(quote_score(s) - (FRAGMENT_PENALTY if kinds[id(s)] == FRAGMENT else 0.0)))
        out, seen = [], set()
        for s in ranked:
            key = " ".join(s.text.split())
            if key not in seen:
                seen.add(key)
                out.append(s)
            if len(out) == n:
                break
        return out

    def excerpt(self, hit: int, top: int = 1, neighbours: int = 1) -> str | None:
        """The sentences of one hit that bear on the question, with their neighbours, in
        document order; gaps are marked with an ellipsis. None when the hit has no sentence."""
        own = [s for s in self.sentences if s.hit == hit]
        if not own:
            return None
        chosen = sorted(range(len(own)), key=lambda i: -quote_score(own[i]))[:top]
        keep = sorted({j for i in chosen for j in range(i - neighbours, i + neighbours + 1) if 0 <= j < len(own)})
        parts, last = [], None
        for j in keep:
            if last is not None and j != last + 1:
                parts.append("…")
            parts.append(own[j].text)
            last = j
        if keep[0] > 0:
            parts.insert(0, "…")
        if keep[-1] < len(own) - 1:
            parts.append("…")
        return " ".join(parts)


def quote_score(s: Sentence) -> float:
    # Similarity finds the sentence about the question; coverage prefers the one that
    # restates it, which is where an extractive answer usually sits.
    return s.similarity + 0.5 * s.coverage


# What a sentence of the documents is, for the quote: a STATEMENT says something (a clause, or
# a field with its value: "Blood pressure: 142/88 mmHg"); a FRAGMENT has words but no clause
# ("Drag files onto the window"); a LABEL only names something: a heading ("## Adding
# documents"), an all-capitals title ("COMPREHENSIVE MEDICAL REPORT"), a field name alone
# ("Blood Pressure", "Diagnosis:"), a short phrase in title case.
STATEMENT, FRAGMENT, LABEL = "statement", "fragment", "label"
FRAGMENT_PENALTY = 0.1  # a fragment is quoted over a sentence only when clearly closer
# Words that make a clause: forms of the common verbs and auxiliaries.
_CLAUSE = frozenset(
    """is are was were be been being am isn't aren't wasn't weren't has have had hasn't haven't
    do does did doesn't don't didn't can cannot can't could will won't would shall should may
    might must need needs needed includes include included contains contain shows show showed
    says say said means mean meant reads read makes make made gets get got gives give gave takes
    take took lists list listed uses use used""".split()
)


def sentence_kind(text: str) -> str:
    """STATEMENT, FRAGMENT or LABEL (see above), from the words and the form of `text`."""
    plain = " ".join(text.split())
    if re.match(r"#{1,6}\s", plain) or not re.search(r"[^\W\d_]", plain):
        return LABEL  # a Markdown heading ("#P is a class" is none), or no letter at all
    words = _TOKEN.findall(plain)
    letters = [c for c in plain if c.isalpha()]
    field, _, value = plain.partition(":")
    if value.strip() and len(field.split()) <= 5 and (re.search(r"\d", value) or len(value.split()) >= 2):
        return STATEMENT  # a field and its value
    if plain.endswith(":"):
        # A field name or a heading over a list; a longer line leading into one ("a class
        # has a definition like the following:") says little until what follows it.
        return LABEL if len(words) <= 4 else FRAGMENT
    if sum(c.isupper() for c in letters) >= 0.8 * len(letters) and len(letters) >= 4:
        return LABEL  # a title in capitals
    ends = plain[-1] in ".!?\u201d\"')"
    clause = any(w.lower() in _CLAUSE for w in words)
    content = [w for w in words if w.lower() not in STOPWORDS]
    if not ends and not clause:
        if len(words) <= 3 and not re.search(r"\d", plain):
            return LABEL  # "Blood Pressure", "Adding documents"
        if content and sum(w[0].isupper() for w in content) >= 0.8 * len(content):
            return LABEL  # "Models and Speed", "Patient Information"
    if (clause or ends) and len(content) >= 2:
        return STATEMENT
    return FRAGMENT


def split_sentences(text: str) -> list[tuple[int, int]]:
    spans = []
    for a, b in sentence_spans(text):
        if b - a > LONG_SENTENCE:
            spans.extend(_lines(text, a, b))
            continue
        # A heading ("Example document\nBeautiful is better than ugly.") is its own unit: a
        # short whole line without punctuation (not a sentence's start wrapped mid-line, nor
        # one whose last word a PDF hyphenated at the line's end: "The annual docu-").
        lines = _lines(text, a, b)
        if len(lines) > 1 and (a == 0 or text[a - 1] == "\n") and len(text[lines[0][0]:lines[0][1]].split()) <= 6 \
                and not re.search(r"[.!?:;,\-]$", text[lines[0][0]:lines[0][1]]):
            spans.append(lines[0])
            a = lines[1][0]
        spans.append((a, b))
    return spans


def _lines(text: str, a: int, b: int) -> list[tuple[int, int]]:
    return split_spans(text, _NEWLINE, a, b)


def question_terms(question: str) -> set[str]:
    return set(content_stems(question))


def coverage(terms: set[str], text: str) -> float:
    if not terms:
        return 0.0
    return len(terms & set(content_stems(text))) / len(terms)


def gather(question: str, hits: Sequence[Hit], embed: Callable[[Sequence[str]], np.ndarray],
           k: int = EVIDENCE_K) -> Evidence:
    """Read the sentences of the hits with one embedding call and weigh them; the decision
    reads the first `k` hits (as it was fitted), labels and excerpts every hit."""
    hits = list(hits)
    terms = question_terms(question)
    sentences = []
    for i, hit in enumerate(hits):
        for a, b in split_sentences(hit.text):
            sentences.append(Sentence(i, a, b, hit.text[a:b]))
    # Overlapping chunks repeat sentences: embed each distinct text once.
    distinct = list(dict.fromkeys(" ".join(s.text.split()) for s in sentences))
    vectors = embed([question] + distinct) if distinct else embed([question])
    qv, table = vectors[0], dict(zip(distinct, vectors[1:]))
    rows = []
    for s in sentences:
        v = table[" ".join(s.text.split())]
        s.similarity = float(np.dot(qv, v))
        s.coverage = coverage(terms, s.text)
        rows.append(v)
    features = _features(hits[:k], [s for s in sentences if s.hit < k], terms, range(min(k, len(hits))), question)
    per_source = [probability(_features(hits, sentences, terms, [i], question)) for i in range(len(hits))]
    return Evidence(hits, sentences, features, probability(features) if hits else 0.0, per_source, qv,
                    np.array(rows) if rows else None, embed)


def _features(hits: Sequence[Hit], sentences: Sequence[Sentence], terms: set[str], which,
              question: str = "") -> dict[str, float]:
    which = list(which)
    own = [s for s in sentences if s.hit in which]
    best = max(own, key=lambda s: s.similarity, default=None)
    window, chunk_text = "", ""
    if best is not None:
        same = [s for s in own if s.hit == best.hit]
        at = same.index(best)
        window = " ".join(s.text for s in same[max(at - 1, 0): at + 2])  # the best passage
        chunk_text = hits[best.hit].text
    chunk = max((hits[i].vector_score or 0.0 for i in which), default=0.0)
    tokens = _TOKEN.findall(question)
    # Names and numbers: a capitalized word past the first, or a word starting with a digit.
    # "I" is a name only as a numeral after one ("Alexander I"), not in "How do I ...".
    names = {stem(w) for i, w in enumerate(tokens)
             if (i > 0 and w[0].isupper() and (w.split("'")[0] != "I" or tokens[i - 1][0].isupper()))
             or w[0].isdigit()}
    negated = any(_negation(w) for w in tokens)
    return {
        # A number of the question ("three graphs", "in 1970", "the 10th century") that the
        # best passage's chunk does not state: SQuAD's unanswerable questions often change one.
        "number_mismatch": float(bool(_numbers(question) - _numbers(chunk_text))),
        "question_negated": float(negated),
        "sentence_similarity": best.similarity if best else 0.0,
        "chunk_similarity": chunk,
        "missing_name": float(bool(names - set(content_stems(chunk_text)))) if best else 1.0,
        "negation_mismatch": float(negated and not any(_negation(w) for w in _TOKEN.findall(window))),
        "coverage": coverage(terms, window),
        "agreement": _agreement(hits, which),
    }


# Number words as digits; not "one", "first" or "second", which are as often no number at all
# ("name one reason", "the first step").
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero _ two three four five six seven eight nine ten eleven twelve".split()) if w != "_"}
_NUMBER_WORDS.update({w: str(i) for i, w in enumerate(
    "zeroth _ _ third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split()) if w != "_"})


def _numbers(text: str) -> set[str]:
    """The numbers a text states, as digits: "three" and "3", "10th" and "tenth" are one,
    "1970s" is "1970"."""
    out = set()
    for word in re.findall(r"\w+", text.lower()):
        if word[0].isdigit():
            out.add(re.sub(r"(st|nd|rd|th|s)$", "", word))
        elif word in _NUMBER_WORDS:
            out.add(_NUMBER_WORDS[word])
    return out


def _negation(word: str) -> bool:
    word = word.lower()
    return word in _NEGATION or word.endswith("n't")


def _agreement(hits: Sequence[Hit], which: list[int]) -> float:
    """1 when the chunk closest in meaning is also the best keyword match, else 0."""
    if not hits:
        return 0.0
    by_vector = max(range(len(hits)), key=lambda i: hits[i].vector_score if hits[i].vector_score is not None else -2)
    with_keywords = [i for i in range(len(hits)) if hits[i].keyword_score is not None]
    if not with_keywords:
        return 0.0
    by_keyword = max(with_keywords, key=lambda i: hits[i].keyword_score)
    return float(by_vector == by_keyword and by_vector in which)


# --- claims ----------------------------------------------------------------------------------

_CITE = re.compile(r"\s*\[\s*\d+(?:\s*[,;\-\u2013]\s*\d+)*\s*\]")


@dataclass
class Claim:
    text: str  # the sentence without its citation markers
    start: int  # offsets of the sentence in the answer text (markers included)
    end: int
    sources: list[int]  # source numbers it cites (1-based)
    supported: bool
    score: float
    support: dict | None  # {"n", "start", "end", "text"}: the passage in that source's chunk

    def to_json(self) -> dict:
        return {"text": self.text, "sources": self.sources, "supported": self.supported,
                "score": round(self.score, 3), "start": self.start, "end": self.end,
                "support": self.support}


def check_claims(answer: str, question: str, sources: Sequence[Hit],
                 embed: Callable[[Sequence[str]], np.ndarray] | None,
                 cited_numbers: Callable[[str, int], list[int]],
                 best_support: Callable[[str, str], tuple[int, int, str]],
                 known: Evidence | None = None) -> list[Claim]:
    """Split the answer into sentences and check each against the sources it cites (a
    sentence citing nothing against all of them). With `known` (the evidence read for the
    question, whose hits begin with `sources`), the sources' sentence vectors are reused and
    only the claims are embedded."""
    spans = _answer_sentences(answer)
    # A list item's number is no figure of its claim.
    claims_text = [_LEADING_LIST_MARK.sub("", _CITE.sub("", answer[a:b]).strip()) for a, b in spans]
    # "The answer is:" with nothing after it claims nothing ("Yes." and "2." do).
    kept = [i for i, text in enumerate(claims_text) if set(content_stems(text)) - _ANNOUNCING]
    spans, claims_text = [spans[i] for i in kept], [claims_text[i] for i in kept]
    if not spans or not sources:
        return []
    per_source: list[np.ndarray | None] = [None] * len(sources)
    claim_vectors = None
    if embed is not None:
        if known is not None and known.vectors is not None:
            claim_vectors = embed(claims_text)
            for n in range(len(sources)):
                rows = [i for i, s in enumerate(known.sentences) if s.hit == n]
                if rows:
                    per_source[n] = known.vectors[rows]
        else:
            groups = [[hit.text[a:b] for a, b in split_sentences(hit.text)] for hit in sources]
            vectors = embed(claims_text + [t for group in groups for t in group])
            claim_vectors, pos = vectors[: len(claims_text)], len(claims_text)
            for n, group in enumerate(groups):
                if group:
                    per_source[n] = vectors[pos: pos + len(group)]
                pos += len(group)
    claims = []
    for index, ((a, b), text) in enumerate(zip(spans, claims_text)):
        # A sentence without its own marker is covered by the next marker in the same
        # paragraph ("Paris is the capital. It lies on the Seine [1]."); failing that, all.
        cited = cited_numbers(answer[a:b], len(sources)) or \
            _next_cited(answer, spans, index, len(sources), cited_numbers)
        numbers = cited or list(range(1, len(sources) + 1))
        words = [w for w in content_stems(text) if w not in _AFFIRMATIONS | _ANNOUNCING and not w[0].isdigit()]
        # "Yes." or "The answer is: 2" says no more than the question it answers: check the
        # question's words with it.
        check_text = text if words else f"{question} {text}"
        terms = set(content_stems(check_text)) - _AFFIRMATIONS - _ANNOUNCING
        figures = bool(stated_numbers(text))
        best = None
        for n in numbers:
            cov = coverage(terms, sources[n - 1].text)
            sim = 0.0
            if claim_vectors is not None and per_source[n - 1] is not None:
                sim = float(np.max(per_source[n - 1] @ claim_vectors[index]))
            ok = bool(terms) and (cov >= CLAIM_COVERAGE or sim >= CLAIM_SIMILARITY)
            if ok and figures:
                # A number must be the one the source states where it says what the claim
                # says: "130/80" is not supported by "142/88 ... target <130/80", nor "2" by
                # a passage that says 13 (or by a 2 elsewhere in the chunk).
                start, _, passage = best_support(check_text, sources[n - 1].text)
                ok = numbers_agree(text, passage, line_above(sources[n - 1].text, start))
            key = (ok, max(cov, sim))
            if best is None or key > best[0]:
                best = (key, n)
        (supported, score), best_n = best
        start, end, passage = best_support(check_text, sources[best_n - 1].text)
        support = {"n": best_n, "start": start, "end": end, "text": passage} if passage else None
        claims.append(Claim(text, a, b, cited, supported, score, support))
    return claims


def _next_cited(answer, spans, index, n_sources, cited_numbers) -> list[int]:
    for a, b in spans[index + 1:]:
        if "\n\n" in answer[spans[index][1]:a]:
            return []
        numbers = cited_numbers(answer[a:b], n_sources)
        if numbers:
            return numbers
    return []


_LIST_MARK = re.compile(r"\s*(?:\d{1,3}[.)]|[-*\u2022])\s*")
_LEADING_LIST_MARK = re.compile(r"^(?:\d{1,3}[.)]|[-*\u2022])\s+")


def _answer_sentences(answer: str) -> list[tuple[int, int]]:
    """Sentences of an answer with their citation markers kept (a marker after the full stop,
    "... Paris. [1]", belongs to the sentence before it)."""
    spans = sentence_spans(answer)
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        piece = answer[a:b]
        if _LIST_MARK.fullmatch(piece):
            continue  # a list number standing alone ("2.") claims nothing
        if merged and not _CITE.sub("", piece).strip():
            merged[-1] = (merged[-1][0], b)  # a lone marker joins the sentence before
            continue
        lead = re.match(r"(?:\s*\[\s*\d+(?:\s*[,;\-\u2013]\s*\d+)*\s*\])+", piece)
        if merged and lead:
            merged[-1] = (merged[-1][0], a + lead.end())
            a = a + lead.end()
            while a < b and answer[a].isspace():
                a += 1
        if a < b and re.search(r"\w", _CITE.sub("", answer[a:b])):
            merged.append((a, b))
    return merged
