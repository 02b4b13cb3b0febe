"""SQuAD 2.0 evaluation: retrieval, answers and refusals, measured end to end.

Each article becomes a text document (its paragraphs separated by blank lines) indexed
through the normal pipeline. For every question we retrieve, record where the gold
paragraph ranks (a chunk counts when its span overlaps the paragraph), and — for up to
`limit` questions — answer with the real model, scoring token F1 and exact match with
SQuAD's own normalization, and whether the assistant refused.
"""

from __future__ import annotations

import collections
import json
import re
import statistics
import string
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .answer import Answer, evidence_strength
from .chunking import document_text
from .engine import Engine
from .loaders import load

RETRIEVE_K = 10


# --- SQuAD's official normalization and scores ------------------------------------------------


def normalize_answer(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if not pred or not gold:
        return float(pred == gold)
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def answer_only(text: str) -> str:
    """The answer without citation markers, which are not part of SQuAD's answers."""
    return re.sub(r"\s*\[\d+(?:\s*,\s*\d+)*\]", "", text).strip()


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Question:
    id: str
    text: str
    answers: list[str]
    impossible: bool
    path: str
    span: tuple[int, int]  # the gold paragraph's span in the document's text


def prepare(squad_file: Path, folder: Path) -> list[Question]:
    """Write one text file per article and locate each paragraph in its loaded text."""
    data = json.loads(Path(squad_file).read_text(encoding="utf-8"))["data"]
    questions: list[Question] = []
    for article in data:
        name = re.sub(r"[^\w.-]+", "_", article["title"])[:80] or "article"
        path = (folder / f"{name}.txt").resolve()
        paragraphs = [p["context"].strip() for p in article["paragraphs"]]
        path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
        text, _ = document_text(load(path).pages)
        pos = 0
        for paragraph, raw in zip(paragraphs, article["paragraphs"]):
            start = text.find(paragraph[:60], pos)
            start = pos if start < 0 else start
            end = start + len(paragraph)
            pos = end
            for qa in raw["qas"]:
                answers = [a["text"] for a in qa.get("answers", [])]
                questions.append(Question(qa["id"], qa["question"], answers,
                                          bool(qa.get("is_impossible")), str(path), (start, end)))
    return questions


def gold_rank(question: Question, hits) -> int | None:
    for rank, hit in enumerate(hits, start=1):
        if hit.path == question.path and hit.char_start < question.span[1] and hit.char_end > question.span[0]:
            return rank
    return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(
    squad_file: Path,
    engine: Engine | None = None,
    limit: int | None = None,
    answer: bool = True,
    progress: Callable[[int, int], None] | None = None,
    k: int | None = None,
    answer_tokens: int | None = None,
) -> dict:
    """Index the articles into a private data folder, then ask; returns the report dict.

    `k` (sources in each prompt) and `answer_tokens` default to the engine's settings;
    fewer sources and a shorter answer make a CPU run of every question much faster."""
    with tempfile.TemporaryDirectory(prefix="enclave-eval-") as tmp:
        tmp = Path(tmp)
        (tmp / "docs").mkdir()
        questions = prepare(squad_file, tmp / "docs")
        own = engine is None
        engine = engine or Engine(tmp / "data")
        try:
            engine.index_all([tmp / "docs"], collection="squad-eval")
            return _measure(engine, questions, limit, answer, progress, k, answer_tokens)
        finally:
            if own:
                engine.close()


def _measure(engine, questions, limit, answer, progress, k=None, answer_tokens=None) -> dict:
    chosen = questions if limit is None else _spread(questions, limit)
    ranks, strengths = [], []
    answered_f1, answered_em = [], []
    refused_answerable, refused_unanswerable = [], []
    first_token, total = [], []
    for i, q in enumerate(chosen):
        hits = engine.search(q.text, "squad-eval", RETRIEVE_K)
        rank = gold_rank(q, hits) if not q.impossible else None
        if not q.impossible:
            ranks.append(rank)
        top = hits[: engine.settings.top_k]
        strengths.append({
            "impossible": q.impossible,
            "gold_rank": rank,
            "strength": evidence_strength(top),
            # Signals tried beside the cosine similarity (see README, Results):
            "keyword": max((h.keyword_score or 0.0 for h in top), default=0.0),
            "coverage": max((term_coverage(q.text, h.text) for h in top), default=0.0),
            "margin": (top[0].vector_score or 0.0) - (top[1].vector_score or 0.0) if len(top) > 1 else 0.0,
        })
        if answer:
            result = _final(engine.ask(q.text, "squad-eval", k=k, answer_tokens=answer_tokens))
            if result.timings.get("first_token_ms") is not None:
                first_token.append(result.timings["first_token_ms"])
            total.append(result.timings["total_ms"])
            if q.impossible:
                refused_unanswerable.append(result.refused)
            else:
                refused_answerable.append(result.refused)
                prediction = "" if result.refused else answer_only(result.text)
                answered_f1.append(max(f1_score(prediction, a) for a in q.answers))
                answered_em.append(max(exact_match(prediction, a) for a in q.answers))
        if progress:
            progress(i + 1, len(chosen))
    found = [r for r in ranks if r is not None]
    report = {
        "retrieval": {
            "recall_at_1": _share([r == 1 for r in found], len(ranks)),
            "recall_at_5": _share([r <= 5 for r in found], len(ranks)),
            "mrr": round(sum(1 / r for r in found) / len(ranks), 4) if ranks else None,
        },
        "answers": {
            "f1": round(statistics.fmean(answered_f1), 4) if answered_f1 else None,
            "exact_match": round(statistics.fmean(answered_em), 4) if answered_em else None,
        },
        "refusal": {
            "unanswerable_refused": _share(refused_unanswerable, len(refused_unanswerable)),
            "answerable_refused": _share(refused_answerable, len(refused_answerable)),
            "threshold": engine.settings.refusal_threshold,
        },
        "timings": {
            "first_token_ms_p50": percentile(first_token, 0.5),
            "first_token_ms_p95": percentile(first_token, 0.95),
            "total_ms_p50": percentile(total, 0.5),
        },
        "questions": len(chosen),
        "answerable": sum(not q.impossible for q in chosen),
        "model": engine.chat_model.info if answer else None,
        "sources_per_prompt": k or engine.settings.top_k,
        "answer_tokens": answer_tokens,
        "evidence": strengths,
    }
    return report


def _final(events: Iterator) -> Answer:
    result = None
    for event in events:
        if isinstance(event, Answer):
            result = event
    assert result is not None
    return result


def _share(flags: list[bool], n: int) -> float | None:
    return round(sum(bool(f) for f in flags) / n, 4) if n else None


def _spread(questions: list[Question], limit: int) -> list[Question]:
    """An evenly spaced sample, so a small limit still mixes articles and both kinds."""
    if limit >= len(questions):
        return questions
    step = len(questions) / limit
    return [questions[int(i * step)] for i in range(limit)]


# --- the refusal trade-off -------------------------------------------------------------------


def term_coverage(question: str, text: str) -> float:
    """Share of the question's content words that appear in the text."""
    from .retrieval import STOPWORDS

    words = {w for w in re.findall(r"\w+", question.lower()) if w not in STOPWORDS}
    if not words:
        return 0.0
    present = set(re.findall(r"\w+", text.lower()))
    return len(words & present) / len(words)


def threshold_curve(evidence: list[dict], steps: int = 101, signal: str = "strength") -> list[dict]:
    """For each threshold: share of unanswerable refused vs share of answerable refused."""
    answerable = [e[signal] for e in evidence if not e["impossible"]]
    unanswerable = [e[signal] for e in evidence if e["impossible"]]
    curve = []
    lo = min(e[signal] for e in evidence)
    hi = max(e[signal] for e in evidence)
    for i in range(steps):
        t = lo + (hi - lo) * i / (steps - 1)
        curve.append({
            "threshold": round(t, 4),
            "unanswerable_refused": sum(s < t for s in unanswerable) / max(len(unanswerable), 1),
            "answerable_refused": sum(s < t for s in answerable) / max(len(answerable), 1),
        })
    return curve


def choose_threshold(curve: list[dict], max_answerable_refused: float = 0.10) -> dict:
    """The threshold that refuses the most unanswerable questions within the budget."""
    allowed = [c for c in curve if c["answerable_refused"] <= max_answerable_refused]
    return max(allowed, key=lambda c: (c["unanswerable_refused"], -c["threshold"]))


def plot_curve(curve: list[dict], chosen: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    ax.plot([c["answerable_refused"] for c in curve], [c["unanswerable_refused"] for c in curve],
            label="best cosine similarity threshold")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.axvline(0.10, color="red", linestyle="--", linewidth=0.8, label="10% of answerable refused")
    ax.scatter([chosen["answerable_refused"]], [chosen["unanswerable_refused"]], color="black", zorder=3,
               label=f"chosen: {chosen['threshold']:.2f}")
    ax.set_xlabel("answerable questions refused (share)")
    ax.set_ylabel("unanswerable questions refused (share)")
    ax.set_title("Refusal trade-off on SQuAD 2.0 dev (public articles)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
