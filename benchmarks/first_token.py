"""Time to the quote and to the first token, before and after, side by side on one machine.

    python benchmarks/first_token.py [--model PATH]... [--questions N] [--out JSON]

Indexes the first paragraphs of each public SQuAD article, then for each answerable question
times, alternating which goes first so a busy machine weighs on both alike:

- before: retrieval, then the prompt of whole chunks, to the model's first token (the
  pipeline as it was: no evidence read, no quote);
- after: `Engine.ask` as it is: retrieval, the evidence (one embedding call), the quote,
  the prompt of excerpts, to the first token.

Prints JSON: p50/p95 of each, the quote's time, and prompt tokens, per model (default: the
bundled model; pass `--model "$(benchmarks/eval_model.sh)"` for the evaluation model).
Nothing passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.answer.pipeline import Answer, Quote  # noqa: E402
from rag.evaluation import percentile, prepare  # noqa: E402
from rag.answer.prompting import build_prompt  # noqa: E402

SQUAD = ROOT.parent / "shared" / "eval" / "squad2-dev-public.json"
K = 3


def before(engine, question: str) -> tuple[float, int]:
    started = time.perf_counter()
    hits = engine.search(question, "bench", K)
    model = engine.chat_model
    prompt = build_prompt(question, hits, [], model.prompt_tokens, model.context_size, 64)
    stream = model.stream(prompt.messages, 64)
    try:
        next(stream, None)
    finally:
        stream.close()
    return (time.perf_counter() - started) * 1000, prompt.prompt_tokens


def after(engine, question: str) -> tuple[float | None, float | None, int | None]:
    started = time.perf_counter()
    quote_ms = first_ms = None
    events = engine.ask(question, "bench", K, answer_tokens=64)
    try:
        for event in events:
            if isinstance(event, Quote):
                quote_ms = (time.perf_counter() - started) * 1000
            elif isinstance(event, Answer) or quote_ms is None:
                return quote_ms, None, None  # refused (its text comes without a quote): no model call
            else:
                first_ms = (time.perf_counter() - started) * 1000
                break
    finally:
        events.close()
    return quote_ms, first_ms, engine.chat_model.last_stats.prompt_tokens


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", action="append", default=[], help="a GGUF (repeatable; default: bundled)")
    parser.add_argument("--squad", type=Path, default=SQUAD)
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--paragraphs", type=int, default=12, help="paragraphs of each article to index")
    parser.add_argument("--out")
    args = parser.parse_args()
    from rag.engine import Engine

    squad = json.loads(args.squad.read_text(encoding="utf-8"))
    for article in squad["data"]:
        article["paragraphs"] = article["paragraphs"][: args.paragraphs]
    results = []
    with tempfile.TemporaryDirectory(prefix="enclave-first-token-") as tmp:
        tmp = Path(tmp)
        (tmp / "docs").mkdir()
        small = tmp / "squad.json"
        small.write_text(json.dumps(squad), encoding="utf-8")
        questions = [q for q in prepare(small, tmp / "docs") if not q.impossible]
        step = max(len(questions) // args.questions, 1)
        questions = questions[::step][: args.questions]
        engine = Engine(tmp / "data")
        engine.index_all([tmp / "docs"], collection="bench")
        for model in args.model or [None]:
            engine.use_model(model)
            info = engine.load_model()
            before(engine, "warm-up question")  # the system prompt's cache, as in use
            rows = []
            for i, q in enumerate(questions):
                if i % 2:
                    b, b_tokens = before(engine, q.text)
                    quote_ms, a, a_tokens = after(engine, q.text)
                else:
                    quote_ms, a, a_tokens = after(engine, q.text)
                    b, b_tokens = before(engine, q.text)
                rows.append({"question": q.text, "before_ms": round(b, 1), "before_prompt_tokens": b_tokens,
                             "after_ms": round(a, 1) if a else None, "after_prompt_tokens": a_tokens,
                             "quote_ms": round(quote_ms, 1) if quote_ms else None})
                print(f"{Path(info.get('path') or '?').name}: {i + 1}/{len(questions)}", file=sys.stderr, flush=True)
            answered = [r for r in rows if r["after_ms"] is not None]
            results.append({
                "model": Path(info.get("path") or "?").name,
                "questions": len(rows),
                "answered_after": len(answered),
                "first_token_before_ms": {"p50": percentile([r["before_ms"] for r in rows], 0.5),
                                          "p95": percentile([r["before_ms"] for r in rows], 0.95)},
                "first_token_after_ms": {"p50": percentile([r["after_ms"] for r in answered], 0.5),
                                         "p95": percentile([r["after_ms"] for r in answered], 0.95)},
                # the same questions only, for a like-for-like ratio
                "before_on_answered_ms": {"p50": percentile([r["before_ms"] for r in answered], 0.5)},
                "quote_ms": {"p50": percentile([r["quote_ms"] for r in rows if r["quote_ms"]], 0.5),
                             "p95": percentile([r["quote_ms"] for r in rows if r["quote_ms"]], 0.95)},
                "prompt_tokens_p50": {"before": percentile([r["before_prompt_tokens"] for r in rows], 0.5),
                                      "after": percentile([r["after_prompt_tokens"] for r in answered], 0.5)},
                "rows": rows,
            })
        engine.close()
    text = json.dumps({"benchmark": "first_token", "sources": K, "results": results}, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
