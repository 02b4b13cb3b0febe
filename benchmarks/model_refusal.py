"""How well a model's lean towards refusing tells unanswerable questions, and the cut for it.

    python benchmarks/model_refusal.py --cache /tmp/squad-evidence.json --model "$(benchmarks/eval_model.sh)" -n 0   # all 626, ~70 min here
    python benchmarks/model_refusal.py --cache /tmp/squad-evidence.json -n 200      # the bundled model

The answer pipeline reads, after the model has read its prompt, the probability the model
gives to opening its answer with the refusal sentence (`StreamStats.refusal_probability`,
free: the logits are there). This script asks a balanced sample of the public SQuAD 2.0
questions through `Answerer` itself (the same retrieval as `fit_answerability.py --cache`,
the same sentence excerpts, three sources, one answer token) with the evidence cut off so
that every question reaches the model, and records P (the evidence model) and the model's
refusal probability. Then, with the evidence cut of rag/answer/evidence.py fixed, it chooses on
one half of the sample the lowest refusal cut for the model that refuses at most 10% of
the answerable questions, and reports what that cut does on the other half and on all;
and the same for both cuts chosen together.
Writes benchmarks/results/model_refusal_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fit_answerability import cached_hits, load_cache  # noqa: E402
from rag.answer import evidence  # noqa: E402

BUDGET = 0.10


def ask_all(cache: dict, model_path: Path, n: int, seed: int, threads: int | None,
            keep: Path | None = None) -> list[dict]:
    from rag.answer.pipeline import Answer, Answerer
    from rag.config import default_embedding_model
    from rag.embedding import SentenceEmbedder
    from rag.llm.llama import InProcessModel

    questions = cache["questions"]
    rng = np.random.default_rng(seed)
    unanswerable = [i for i, q in enumerate(questions) if q["impossible"]]
    answerable = [i for i, q in enumerate(questions) if not q["impossible"]]
    chosen = (range(len(questions)) if n <= 0 else
              sorted(list(rng.permutation(unanswerable)[: n // 2]) + list(rng.permutation(answerable)[: n // 2])))
    embedder = SentenceEmbedder(default_embedding_model())
    model = InProcessModel(model_path, n_ctx=2048, n_threads=threads)
    rows, started = [], time.perf_counter()
    try:
        for done, i in enumerate(chosen, 1):
            q = questions[i]
            hits = cached_hits(q, ".txt")
            # min_probability 0: every question reaches the model; the cut is applied below.
            answerer = Answerer(lambda query, k, hits=hits: hits[:k], model, embedder.embed,
                                min_probability=0.0, answer_tokens=1, refuse_at=None)
            answer = next(e for e in answerer.ask(q["question"], k=3) if isinstance(e, Answer))
            rows.append({"id": q["id"], "impossible": q["impossible"],
                         "probability": answer.evidence["probability"],
                         "model_refusal_probability": answer.evidence["model_refusal_probability"],
                         "prompt_tokens": answer.timings.get("prompt_tokens")})
            if done % 10 == 0:
                if keep:  # a long run keeps what it has
                    keep.write_text(json.dumps(rows) + "\n")
                print(f"{done}/{len(chosen)} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        model.close()
    return rows


def refused(rows: list[dict], min_p: float, cut: float | None) -> np.ndarray:
    return np.array([r["probability"] < min_p or (cut is not None and r["model_refusal_probability"] >= cut)
                     for r in rows])


def rates(rows: list[dict], min_p: float, cut: float | None) -> dict:
    impossible = np.array([r["impossible"] for r in rows])
    flags = refused(rows, min_p, cut)
    return {"questions": len(rows), "min_probability": min_p, "cut": cut,
            "unanswerable_refused": round(float(flags[impossible].mean()), 4),
            "answerable_refused": round(float(flags[~impossible].mean()), 4)}


def choose_cut(rows: list[dict], min_p: float) -> float | None:
    """The lowest cut (two decimals) that keeps the answerable refused at most BUDGET."""
    best = None
    for cut in np.round(np.arange(1.0, 0.0, -0.01), 2):
        if rates(rows, min_p, float(cut))["answerable_refused"] > BUDGET:
            break
        best = float(cut)
    return best


def choose_pair(rows: list[dict]) -> tuple[float, float | None]:
    """Both cuts at once: the evidence cut and the model's refusal cut (two decimals each)
    that refuse the most unanswerable questions at most BUDGET of the answerable; ties go to
    the higher cuts (fewer refusals of either kind)."""
    best = (-1.0, 0.0, 0.0)
    for min_p in np.round(np.arange(0.50, 0.09, -0.01), 2):
        cut = choose_cut(rows, float(min_p))
        if cut is None:
            continue
        got = rates(rows, float(min_p), cut)["unanswerable_refused"]
        if got > best[0]:
            best = (got, float(min_p), cut)
    return best[1], best[2]


def auc(rows: list[dict]) -> float:
    """P(an unanswerable question gets a higher refusal probability than an answerable one)."""
    u = np.array([r["model_refusal_probability"] for r in rows if r["impossible"]])
    a = np.array([r["model_refusal_probability"] for r in rows if not r["impossible"]])
    return round(float((u[:, None] > a[None, :]).mean() + 0.5 * (u[:, None] == a[None, :]).mean()), 4)


def main() -> int:
    from rag.llm.bundled import default_model_path

    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, required=True, help="as fit_answerability.py --cache (built if missing)")
    parser.add_argument("--model", type=Path, default=None, help="a GGUF (default: the bundled model)")
    parser.add_argument("-n", type=int, default=160, help="questions, half of them unanswerable; 0: all")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rows", type=Path, help="reuse rows written by an earlier run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model_path = args.model or default_model_path()

    if args.rows and args.rows.exists():
        rows = json.loads(args.rows.read_text())
    else:
        rows = ask_all(load_cache(args.cache), model_path, args.n, args.seed, args.threads, args.rows)
        if args.rows:
            args.rows.write_text(json.dumps(rows) + "\n")

    min_p = evidence.DEFAULT_MIN_PROBABILITY
    fit_half, check_half = rows[0::2], rows[1::2]
    cut = choose_cut(fit_half, min_p)
    all_cut = choose_cut(rows, min_p)
    pair, all_pair = choose_pair(fit_half), choose_pair(rows)
    report = {
        "model": Path(model_path).name,
        "questions": len(rows),
        "min_probability": min_p,
        "refusal_probability_auc": auc(rows),
        "refusal_probability_median": {
            "unanswerable": round(float(np.median([r["model_refusal_probability"] for r in rows if r["impossible"]])), 4),
            "answerable": round(float(np.median([r["model_refusal_probability"] for r in rows if not r["impossible"]])), 4),
        },
        "evidence_alone": rates(rows, min_p, None),
        # chosen on one half, measured on the other
        "cut_from_first_half": cut,
        "first_half": rates(fit_half, min_p, cut),
        "second_half": rates(check_half, min_p, cut),
        # chosen and measured on all
        "cut_from_all": all_cut,
        "all": rates(rows, min_p, all_cut),
        "at_default_cut": rates(rows, min_p, evidence.MODEL_REFUSAL_PROBABILITY),
        # both cuts chosen on the first half, measured on the second (and both on all)
        "both_cuts_from_first_half": pair,
        "both_first_half": rates(fit_half, *pair),
        "both_second_half": rates(check_half, *pair),
        "both_cuts_from_all": all_pair,
        "both_all": rates(rows, *all_pair),
        "default_cut": evidence.MODEL_REFUSAL_PROBABILITY,
        "prompt_tokens_p50": float(np.median([r["prompt_tokens"] for r in rows if r["prompt_tokens"]])),
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"model_refusal_{Path(model_path).stem}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
