"""Fit the answerability model of rag/answer/evidence.py on the public SQuAD 2.0 set, plot its curve.

    python benchmarks/fit_answerability.py                      # index, read evidence, fit (~10 min on 2 cores)
    python benchmarks/fit_answerability.py --features benchmarks/results/answerability_features.json  # refit only
    python benchmarks/fit_answerability.py --cache /tmp/squad-evidence.json   # read once (~10 min), then seconds

With --cache, the retrieval and sentence similarities of every question are kept in that
file (written on the first run), and the features are recomputed from it by the code of
rag/answer/evidence.py as it is now: change or add a feature there and refit in seconds.

Indexes the articles through the normal pipeline (as `enclave-cli eval` does), reads the
evidence of every question with `rag.answer.evidence.gather` over the first EVIDENCE_K chunks,
fits a logistic regression (plain numpy, Newton's method, a little L2, deterministic) of
"the question is answerable" on the FEATURES, and prints the coefficients to paste into
rag/answer/evidence.py, the probability cut that refuses at most 10% of answerable questions, the
same for the old single best-cosine threshold, a leave-one-article-out check, and how often
the quote holds the gold answer. Writes the curve PNG and a JSON of the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.answer import evidence  # noqa: E402
from rag.evaluation import normalize_answer  # noqa: E402

SQUAD = ROOT.parent / "shared" / "eval" / "squad2-dev-public.json"
RESULTS = ROOT / "benchmarks" / "results"
BUDGET = 0.10  # at most this share of answerable questions refused


@contextmanager
def _indexed_squad(squad: Path):
    """The public articles indexed through the normal pipeline (as `enclave-cli eval` does)
    in a throwaway data folder: yields (engine, questions)."""
    from rag.engine import Engine
    from rag.evaluation import prepare

    with tempfile.TemporaryDirectory(prefix="enclave-fit-") as tmp:
        tmp = Path(tmp)
        (tmp / "docs").mkdir()
        questions = prepare(squad, tmp / "docs")
        engine = Engine(tmp / "data")
        try:
            engine.index_all([tmp / "docs"], collection="squad-eval")
            yield engine, questions
        finally:
            engine.close()


def read_features(squad: Path) -> list[dict]:
    rows = []
    with _indexed_squad(squad) as (engine, questions):
        for i, q in enumerate(questions):
            hits = engine.search(q.text, "squad-eval", evidence.EVIDENCE_K)
            ev = evidence.gather(q.text, hits, engine.embedder.embed)
            golds = [normalize_answer(a) for a in q.answers]
            top = sorted(ev.sentences, key=lambda s: -s.similarity)[:12]
            rows.append({
                "id": q.id,
                "article": Path(q.path).stem,
                "impossible": q.impossible,
                "features": {k: round(v, 6) for k, v in ev.features.items()},
                # candidates for the quote: similarity, coverage, holds a gold answer
                "sentences": [[round(s.similarity, 6), round(s.coverage, 6),
                               any(g and g in normalize_answer(s.text) for g in golds)] for s in top],
            })
            if (i + 1) % 100 == 0:
                print(f"evidence: {i + 1}/{len(questions)}", file=sys.stderr, flush=True)
    return rows


def read_evidence(squad: Path) -> dict:
    """The expensive part, once: index the articles, retrieve and embed the sentences of
    every question's chunks, and keep all that feature experiments need, so new features
    are computed and refitted in seconds (`--cache`). Per question: its text, gold answers,
    the hits (text, offsets, fused/cosine/BM25 scores, rank in the vector and in the keyword
    candidate lists, whether it overlaps the gold paragraph) and every sentence's offsets
    and cosine to the question. Also every chunk's text, for document frequencies."""
    from rag.answer.retrieval import Retriever

    out: dict = {"evidence_k": evidence.EVIDENCE_K, "questions": []}
    with _indexed_squad(squad) as (engine, questions):
        out["chunks"] = [r[0] for r in engine.catalog.db.execute(
            "SELECT c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
            "WHERE d.collection = 'squad-eval' ORDER BY d.path, c.idx")]
        index = engine._index_for("squad-eval")
        retriever = Retriever(index, engine.embedder)
        k = evidence.EVIDENCE_K
        for i, q in enumerate(questions):
            hits = engine.search(q.text, "squad-eval", k)
            # The candidate lists the fusion read, for ranks (the same calls as search).
            qv = engine.embedder.embed([q.text])[0]
            vector_hits, keyword_hits = retriever.candidates(q.text, "squad-eval", k, qv)
            by_vector = [c for c, _ in vector_hits]
            by_keyword = [c for c, _ in keyword_hits]
            ev = evidence.gather(q.text, hits, engine.embedder.embed)
            out["questions"].append({
                "id": q.id, "article": Path(q.path).stem, "impossible": q.impossible,
                "question": q.text, "answers": q.answers,
                "hits": [{"text": h.text, "path": Path(h.path).stem, "char_start": h.char_start,
                          "char_end": h.char_end, "score": h.score, "vector_score": h.vector_score,
                          "keyword_score": h.keyword_score,
                          "vector_rank": by_vector.index(h.chunk_id) + 1 if h.chunk_id in by_vector else None,
                          "keyword_rank": by_keyword.index(h.chunk_id) + 1 if h.chunk_id in by_keyword else None,
                          "gold": h.path == q.path and h.char_start < q.span[1] and h.char_end > q.span[0]}
                         for h in hits],
                "sentences": [[s.hit, s.start, s.end, round(s.similarity, 6)] for s in ev.sentences],
                "features": {k2: round(v, 6) for k2, v in ev.features.items()},
            })
            if (i + 1) % 100 == 0:
                print(f"evidence: {i + 1}/{len(questions)}", file=sys.stderr, flush=True)
    return out


def load_cache(path: Path, squad: Path = SQUAD) -> dict:
    """The cache of `read_evidence` at `path`, read (and written) once."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(read_evidence(squad)) + "\n")
    return json.loads(path.read_text())


def cached_hits(question: dict, suffix: str = "") -> list:
    """A cached question's hits as `Hit`s (`suffix` is added to the article's name, so a
    prompt built from them names a file)."""
    from rag.types import Hit

    return [Hit(chunk_id=str(n), path=h["path"] + suffix, page=None, text=h["text"], score=h["score"],
                vector_score=h["vector_score"], keyword_score=h["keyword_score"],
                char_start=h["char_start"], char_end=h["char_end"]) for n, h in enumerate(question["hits"])]


def rows_from_cache(cache: dict) -> list[dict]:
    """The rows `read_features` gives, computed from a cache of `read_evidence` by the code
    rag/answer/evidence.py runs (its features as they are now): seconds instead of minutes."""
    from rag.evaluation import normalize_answer

    rows = []
    for q in cache["questions"]:
        hits = cached_hits(q)
        sentences = [evidence.Sentence(i, a, b, hits[i].text[a:b], sim) for i, a, b, sim in q["sentences"]]
        terms = evidence.question_terms(q["question"])
        for s in sentences:
            s.coverage = evidence.coverage(terms, s.text)
        k = cache["evidence_k"]
        features = evidence._features(hits[:k], [s for s in sentences if s.hit < k], terms,
                                      range(min(k, len(hits))), q["question"])
        golds = [normalize_answer(a) for a in q["answers"]]
        top = sorted(sentences, key=lambda s: -s.similarity)[:12]
        rows.append({
            "id": q["id"], "article": q["article"], "impossible": q["impossible"],
            "features": {name: round(v, 6) for name, v in features.items()},
            "sentences": [[round(s.similarity, 6), round(s.coverage, 6),
                           any(g and g in normalize_answer(s.text) for g in golds)] for s in top],
        })
    return rows


def fit(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 50) -> np.ndarray:
    """Logistic regression by Newton's method on standardized features; returns
    [intercept, coefficients...] on the raw features."""
    mean, std = X.mean(0), X.std(0)
    std[std == 0] = 1.0
    Z = np.hstack([np.ones((len(X), 1)), (X - mean) / std])
    w = np.zeros(Z.shape[1])
    penalty = np.eye(len(w)) * l2
    penalty[0, 0] = 0.0  # the intercept is not shrunk
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-Z @ w))
        gradient = Z.T @ (p - y) + penalty @ w
        hessian = (Z * (p * (1 - p))[:, None]).T @ Z + penalty
        w -= np.linalg.solve(hessian, gradient)
    coefficients = w[1:] / std
    return np.concatenate([[w[0] - float(coefficients @ mean)], coefficients])


def scores(rows: list[dict], weights: np.ndarray) -> np.ndarray:
    X = np.array([[r["features"][f] for f in evidence.FEATURES] for r in rows])
    return 1.0 / (1.0 + np.exp(-(weights[0] + X @ weights[1:])))


def curve(values: np.ndarray, impossible: np.ndarray, steps: int = 201) -> list[dict]:
    out = []
    for t in np.linspace(values.min(), values.max() + 1e-9, steps):
        out.append({"threshold": float(t),
                    "unanswerable_refused": float((values[impossible] < t).mean()),
                    "answerable_refused": float((values[~impossible] < t).mean())})
    return out


def choose(points: list[dict], budget: float = BUDGET) -> dict:
    allowed = [c for c in points if c["answerable_refused"] <= budget]
    return max(allowed, key=lambda c: (c["unanswerable_refused"], c["threshold"]))


def rates(values, impossible, t) -> dict:
    return {"threshold": round(float(t), 4),
            "unanswerable_refused": round(float((values[impossible] < t).mean()), 4),
            "answerable_refused": round(float((values[~impossible] < t).mean()), 4)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--squad", type=Path, default=SQUAD)
    parser.add_argument("--features", type=Path, help="reuse features written by an earlier run")
    parser.add_argument("--cache", type=Path,
                        help="retrieval and sentence similarities of every question: read once, "
                             "then features are recomputed from it by rag/answer/evidence.py in seconds")
    parser.add_argument("--png", type=Path, default=RESULTS / "refusal_curve.png")
    parser.add_argument("--out", type=Path, default=RESULTS / "answerability_fit.json")
    args = parser.parse_args()

    if args.cache:
        rows = rows_from_cache(load_cache(args.cache, args.squad))
        (args.features or RESULTS / "answerability_features.json").write_text(json.dumps(rows) + "\n")
    elif args.features and args.features.exists():
        rows = json.loads(args.features.read_text())
    else:
        rows = read_features(args.squad)
        path = args.features or RESULTS / "answerability_features.json"
        path.write_text(json.dumps(rows) + "\n")
    impossible = np.array([r["impossible"] for r in rows])
    X = np.array([[r["features"][f] for f in evidence.FEATURES] for r in rows])
    y = (~impossible).astype(float)

    weights = np.round(fit(X, y), 4)  # rounded as written in rag/answer/evidence.py
    p = scores(rows, weights)
    p_curve = curve(p, impossible)
    chosen = choose(p_curve)
    cut = np.floor(chosen["threshold"] * 100) / 100  # two decimals, never refusing more
    cosine = X[:, evidence.FEATURES.index("chunk_similarity")]
    c_curve = curve(cosine, impossible)
    c_chosen = choose(c_curve)

    # Leave one article out: fit on one, choose the cut on it, measure on the other.
    held_out, pooled = {}, np.zeros(len(rows))
    for article in sorted({r["article"] for r in rows}):
        train = [r for r in rows if r["article"] != article]
        test = [r for r in rows if r["article"] == article]
        ti = np.array([r["impossible"] for r in train])
        tw = fit(np.array([[r["features"][f] for f in evidence.FEATURES] for r in train]), (~ti).astype(float))
        t_cut = choose(curve(scores(train, tw), ti))["threshold"]
        hi = np.array([r["impossible"] for r in test])
        held_out[article] = rates(scores(test, tw), hi, t_cut)
        pooled[[r["article"] == article for r in rows]] = scores(test, tw)
    # The same held-out probabilities, every question scored by the model fitted without its
    # article, cut where at most 10% of the answerable are refused: how well the model ranks
    # questions it never saw (the cut fitted in one article does not carry to the other).
    held_out["pooled"] = rates(pooled, impossible, choose(curve(pooled, impossible, 401))["threshold"])

    # Signals read but left out of the model: what adding them would give, in-sample and held out.
    tried = {}
    for extra in ("question_negated", "coverage", "agreement"):
        names = list(evidence.FEATURES) + [extra]
        Xe = np.array([[r["features"][f] for f in names] for r in rows])
        we = fit(Xe, y)
        pe = 1.0 / (1.0 + np.exp(-(we[0] + Xe @ we[1:])))
        held = np.zeros(len(rows))
        for article in sorted({r["article"] for r in rows}):
            test = np.array([r["article"] == article for r in rows])
            wa = fit(Xe[~test], y[~test])
            held[test] = 1.0 / (1.0 + np.exp(-(wa[0] + Xe[test] @ wa[1:])))
        tried[f"with_{extra}"] = {"weight": round(float(we[-1]), 4), **rates(pe, impossible, choose(curve(pe, impossible))["threshold"]),
                                  "held_out_pooled": rates(held, impossible, choose(curve(held, impossible, 401))["threshold"])}

    # The quote: how often the chosen sentence holds a gold answer (answerable questions).
    quote = {}
    for weight in (0.0, 0.25, 0.5, 1.0):  # rag/answer/evidence.py uses 0.5
        hits = [max(r["sentences"], key=lambda s: s[0] + weight * s[1])[2] for r in rows
                if not r["impossible"] and r["sentences"]]
        quote[str(weight)] = round(sum(hits) / len(hits), 4)

    report = {
        "questions": len(rows), "answerable": int((~impossible).sum()),
        "features": list(evidence.FEATURES),
        "intercept": float(weights[0]),
        "coefficients": {f: float(w) for f, w in zip(evidence.FEATURES, weights[1:])},
        "min_probability": float(cut),
        "at_min_probability": rates(p, impossible, cut),
        "old_best_cosine": rates(cosine, impossible, c_chosen["threshold"]),
        "leave_one_article_out": held_out,
        "tried": tried,
        "quote_holds_gold_by_coverage_weight": quote,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    _plot(p_curve, c_curve, rates(p, impossible, cut), report["old_best_cosine"], args.png)
    return 0


def _plot(p_curve, c_curve, chosen, old, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    ax.plot([c["answerable_refused"] for c in p_curve], [c["unanswerable_refused"] for c in p_curve],
            label="evidence model (" + ", ".join(evidence.FEATURES) + ")")
    ax.plot([c["answerable_refused"] for c in c_curve], [c["unanswerable_refused"] for c in c_curve],
            label="best chunk cosine alone (before)")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.axvline(BUDGET, color="red", linestyle="--", linewidth=0.8, label="10% of answerable refused")
    ax.scatter([chosen["answerable_refused"]], [chosen["unanswerable_refused"]], color="black", zorder=3,
               label=f"chosen: P < {chosen['threshold']:.2f} refuses")
    ax.scatter([old["answerable_refused"]], [old["unanswerable_refused"]], color="grey", zorder=3,
               label=f"before: cosine < {old['threshold']:.2f}")
    ax.set_xlabel("answerable questions refused (share)")
    ax.set_ylabel("unanswerable questions refused (share)")
    ax.set_title("Refusal trade-off on SQuAD 2.0 dev (public articles)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
