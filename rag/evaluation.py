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
import string
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .answer import evidence as ev
from .answer.pipeline import Answer
from .ingest.chunking import document_text
from .engine import Engine
from .ingest.loaders import load

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


def contains(prediction: str, truth: str) -> float:
    """1 when the normalized gold answer appears in the normalized prediction: a sentence
    that holds the answer is a right answer for a reader, though its F1 is low."""
    gold = normalize_answer(truth)
    return float(bool(gold) and f" {gold} " in f" {normalize_answer(prediction)} ")


# The refusal rule before the evidence model: the best chunk's cosine below this.
OLD_COSINE_THRESHOLD = 0.39


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
    also_model: Path | None = None,
    on_record: Callable[[dict], None] | None = None,
) -> dict:
    """Index the articles into a private data folder, then ask; returns the report dict.

    `k` (sources in each prompt) and `answer_tokens` default to the engine's settings;
    fewer sources and a shorter answer make a CPU run of every question much faster.
    With `also_model`, the same questions are answered again by that GGUF and its figures
    go to report["compare"], side by side with the first model's. `on_record` receives each
    question's record as soon as it is measured (a long CPU run can be stopped and summed up)."""
    with tempfile.TemporaryDirectory(prefix="enclave-eval-") as tmp:
        tmp = Path(tmp)
        (tmp / "docs").mkdir()
        questions = prepare(squad_file, tmp / "docs")
        own = engine is None
        engine = engine or Engine(tmp / "data")
        try:
            engine.index_all([tmp / "docs"], collection="squad-eval")
            report = _measure(engine, questions, limit, answer, progress, k, answer_tokens, on_record)
            if also_model is not None and answer:
                engine.use_model(also_model)
                other = _measure(engine, questions, limit, answer, progress, k, answer_tokens, on_record)
                report["compare"] = {key: other[key] for key in
                                     ("model", "answers", "refusal", "quote", "claims", "generation", "timings",
                                      "records")}
            return report
        finally:
            if own:
                engine.close()


def _measure(engine, questions, limit, answer, progress, k=None, answer_tokens=None, on_record=None) -> dict:
    chosen = questions if limit is None else _spread(questions, limit)
    ranks, signals, records = [], [], []
    min_p = engine.settings.answer_min_probability
    for i, q in enumerate(chosen):
        hits = engine.search(q.text, "squad-eval", RETRIEVE_K)
        rank = gold_rank(q, hits) if not q.impossible else None
        if not q.impossible:
            ranks.append(rank)
        evidence = ev.gather(q.text, hits[: ev.EVIDENCE_K], engine.embedder.embed)
        best = evidence.best(1)
        record = {
            "id": q.id,
            "impossible": q.impossible,
            "gold_rank": rank,
            "probability": round(evidence.probability, 4),
            "features": {name: round(v, 4) for name, v in evidence.features.items()},
            "quote": best[0].text if best else "",
            "quote_contains_gold": max((contains(best[0].text, a) for a in q.answers), default=0.0) if best else 0.0,
        }
        signals.append({"impossible": q.impossible, "probability": evidence.probability,
                        "strength": evidence.features["chunk_similarity"]})
        if answer:
            result = _final(engine.ask(q.text, "squad-eval", k=k, answer_tokens=answer_tokens))
            prediction = "" if result.refused else answer_only(result.text)
            record.update(
                refused=result.refused, refused_by=result.refused_by, answer=result.text,
                first_token_ms=result.timings.get("first_token_ms"), quote_ms=result.timings.get("quote_ms"),
                total_ms=result.timings.get("total_ms"), prompt_tokens=result.timings.get("prompt_tokens"),
                claims=[{"supported": c["supported"], "score": c["score"]} for c in result.claims],
                model_refusal_probability=(result.evidence or {}).get("model_refusal_probability"),
                # tokens the model generated, and why it stopped ("length": the cap, "repeated")
                tokens=result.timings.get("tokens") or 0,
                finish=engine.chat_model.last_stats.finish if result.refused_by != "evidence" else None,
            )
            if not q.impossible:
                record.update(
                    f1=max(f1_score(prediction, a) for a in q.answers),
                    exact_match=max(exact_match(prediction, a) for a in q.answers),
                    contained=max(contains(prediction, a) for a in q.answers),
                )
        records.append(record)
        if on_record:
            on_record(dict(record, model=Path((engine.chat_model.info or {}).get("path") or "").name if answer else None))
        if progress:
            progress(i + 1, len(chosen))
    found = [r for r in ranks if r is not None]
    answerable = [r for r in records if not r["impossible"]]
    unanswerable = [r for r in records if r["impossible"]]
    report = {
        "retrieval": {
            "recall_at_1": _share([r == 1 for r in found], len(ranks)),
            "recall_at_5": _share([r <= 5 for r in found], len(ranks)),
            "mrr": round(sum(1 / r for r in found) / len(ranks), 4) if ranks else None,
        },
        "questions": len(chosen),
        "answerable": len(answerable),
        "model": engine.chat_model.info if answer else None,
        "sources_per_prompt": k or engine.settings.top_k,
        "answer_tokens": answer_tokens,
        "prompt": "sentences" if engine.settings.prompt_excerpts else "chunks",
        "quote": {
            # how often the one quoted sentence holds a gold answer (answerable questions)
            "contains_gold": _mean([r["quote_contains_gold"] for r in answerable]),
        },
        "evidence": signals,
        "records": records,
    }
    report["refusal"] = {
        # the evidence decision alone, before any model: the new rule and the old one
        "decision": {
            "min_probability": min_p,
            "unanswerable_refused": _mean([r["probability"] < min_p for r in unanswerable]),
            "answerable_refused": _mean([r["probability"] < min_p for r in answerable]),
        },
        "old_cosine_threshold": {
            "threshold": OLD_COSINE_THRESHOLD,
            "unanswerable_refused": _mean([r["features"]["chunk_similarity"] < OLD_COSINE_THRESHOLD for r in unanswerable]),
            "answerable_refused": _mean([r["features"]["chunk_similarity"] < OLD_COSINE_THRESHOLD for r in answerable]),
        },
        "threshold": min_p,
    }
    if answer:
        figures = _answer_figures(records, answerable, unanswerable)
        report["refusal"].update(figures.pop("refusal_answers"))  # what the user saw: either rule
        report["refusal"].update(figures.pop("refusal_model"))
        report.update(figures)
    else:
        report["answers"] = {"f1": None, "exact_match": None, "contained": None}
        report["claims"] = {}
        report["timings"] = {}
        report["refusal"].update(unanswerable_refused=None, answerable_refused=None)
    return report


def _answer_figures(records, answerable, unanswerable) -> dict:
    """Answers, refusals (the decision plus the model's own), claims and timings."""
    answered = [r for r in records if not r["refused"]]
    generated = [r for r in records if r.get("refused_by") != "evidence"]
    claims = [c for r in answered for c in r["claims"]]
    with_claims = [r for r in answered if r["claims"]]
    first = [r["first_token_ms"] for r in answered if r.get("first_token_ms") is not None]
    quote = [r["quote_ms"] for r in records if r.get("quote_ms") is not None]
    return {
        "answers": {
            "f1": _mean([r["f1"] for r in answerable]),
            "exact_match": _mean([r["exact_match"] for r in answerable]),
            "contained": _mean([r["contained"] for r in answerable]),
            # the same over the answerable questions the assistant did answer
            "f1_answered": _mean([r["f1"] for r in answerable if not r["refused"]]),
            "contained_answered": _mean([r["contained"] for r in answerable if not r["refused"]]),
        },
        "refusal_model": {
            "unanswerable_refused_by_model": _mean([r["refused_by"] == "model" for r in unanswerable]),
            "answerable_refused_by_model": _mean([r["refused_by"] == "model" for r in answerable]),
        },
        "claims": {
            "claims": len(claims),
            "supported": _mean([c["supported"] for c in claims]),
            "answers_fully_supported": _mean([all(c["supported"] for c in r["claims"]) for r in with_claims]),
            "answers_without_support": _mean([not any(c["supported"] for c in r["claims"]) for r in with_claims]),
            "supported_answerable": _mean([c["supported"] for r in answered if not r["impossible"] for c in r["claims"]]),
            "supported_unanswerable": _mean([c["supported"] for r in answered if r["impossible"] for c in r["claims"]]),
        },
        "generation": {  # the answers the model wrote (evidence refusals call no model)
            "tokens_mean": _mean([r["tokens"] for r in generated]),
            "tokens_p50": percentile([r["tokens"] for r in generated], 0.5),
            "ended_at_cap": _mean([r.get("finish") == "length" for r in generated]),
            "ended_repeating": _mean([r.get("finish") == "repeated" for r in generated]),
        },
        "timings": {
            "first_token_ms_p50": percentile(first, 0.5),
            "first_token_ms_p95": percentile(first, 0.95),
            "quote_ms_p50": percentile(quote, 0.5),
            "quote_ms_p95": percentile(quote, 0.95),
            "total_ms_p50": percentile([r["total_ms"] for r in records], 0.5),
            "prompt_tokens_p50": percentile([r["prompt_tokens"] for r in answered if r.get("prompt_tokens")], 0.5),
        },
    } | {"refusal_answers": {
        "unanswerable_refused": _mean([r["refused"] for r in unanswerable]),
        "answerable_refused": _mean([r["refused"] for r in answerable]),
    }}


def _mean(values) -> float | None:
    values = [float(v) for v in values]
    return round(sum(values) / len(values), 4) if values else None


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


def plot_curve(curve: list[dict], chosen: dict, path: Path, label: str = "evidence model probability") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    ax.plot([c["answerable_refused"] for c in curve], [c["unanswerable_refused"] for c in curve],
            label=label)
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
