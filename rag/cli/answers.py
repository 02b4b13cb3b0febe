"""Answers: ask, chat, eval."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ..errors import EnclaveError
from .common import add_collections, add_command, data_folder, emit, open_engine


def register(sub) -> None:
    for name, run, text in (("ask", cmd_ask, "answer one question from the documents, with citations"),
                            ("chat", cmd_chat, "an interactive conversation with the documents")):
        p = add_command(sub, name, run, text)
        if name == "ask":
            p.add_argument("question")
        add_collections(p)
        p.add_argument("--model", metavar="PATH", help="a GGUF model file (default: settings, else the bundled one)")
        p.add_argument("-k", type=int, default=None, help="sources to retrieve (default: top_k from settings)")

    p = add_command(sub, "eval", cmd_eval, "measure retrieval, answers and refusals on a SQuAD 2.0 file")
    p.add_argument("squad", metavar="SQUAD_JSON")
    p.add_argument("--limit", type=int, default=None, help="answer at most N questions (evenly spread)")
    p.add_argument("--model", metavar="PATH", help="a GGUF model file")
    p.add_argument("--retrieval-only", action="store_true", help="skip answering (fast)")
    p.add_argument("-k", type=int, default=None, help="sources in each prompt (default: top_k from settings)")
    p.add_argument("--answer-tokens", type=int, default=None, help="longest answer in tokens (default 384)")
    p.add_argument("--plot", metavar="PNG", help="write the refusal trade-off curve here")
    p.add_argument("--also-model", metavar="PATH", help="answer the same questions with this GGUF too, side by side")
    p.add_argument("--prompt", choices=("sentences", "chunks"), default=None,
                   help="what each source carries in the prompt (default: settings, sentences)")
    p.add_argument("--records", metavar="JSONL", help="append every question's answer and figures here as it is measured")


def _answer(engine, question, args, history=()):
    """Stream one answer to stdout, the quote first; Ctrl-C stops the model at once and keeps
    what it said."""
    from ..answer.pipeline import Answer, Quote

    stop = {"now": False}
    result = None
    age, asked = _process_age_s(), time.perf_counter()
    events = engine.ask(question, args.collection, args.k, history, should_stop=lambda: stop["now"])
    try:
        for event in events:
            if isinstance(event, Answer):
                result = event
            elif isinstance(event, Quote):
                if not args.json:
                    print(f"\u201c{' '.join(event.text.split())}\u201d \u2014 {_place(event.source)}\n")
            elif not args.json:
                sys.stdout.write(event)
                sys.stdout.flush()
    except KeyboardInterrupt:
        stop["now"] = True
        for event in events:  # the generator sees should_stop and finishes cleanly
            if isinstance(event, Answer):
                result = event
        if not args.json:
            sys.stdout.write(" [stopped]")
    if result is not None and age is not None and result.timings.get("prompt_ms") is not None:
        # From this process's start until the model was handed the prompt (a cold start's cost).
        waited = time.perf_counter() - asked - (result.timings["total_ms"] - result.timings["prompt_ms"]) / 1000
        result.timings["process_to_prompt_ms"] = round((age + waited) * 1000, 1)
    return result


def _place(source: dict) -> str:
    name = Path(source["path"]).name
    where = f"{name}, page {source['page']}" if source.get("page") else name
    return f"{where}, {source['unit']}" if source.get("unit") else where


def _process_age_s() -> float | None:
    """Seconds since this process started (Linux; None elsewhere)."""
    try:
        with open("/proc/self/stat") as handle:
            start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _print_sources(answer) -> None:
    print()
    unsupported = [c for c in answer.claims if not c["supported"]]
    if answer.supported is False:  # the verdict the window shows too
        print("(no source supports this answer; what the documents say:)")
        for quote in answer.quotes:
            print(f"    \u201c{' '.join(quote['text'].split())}\u201d \u2014 {_place(quote['source'])}")
    elif unsupported:
        for claim in unsupported:
            print(f"(no source supports: \u201c{claim['text']}\u201d)")
    if answer.uncited and not answer.refused:
        print("(the answer cites no source; these are the sources it was given)")
    for s in answer.sources:
        page = (f", page {s['page']}" if s["page"] else "") + (f", {s['unit']}" if s.get("unit") else "")
        print(f"[{s['n']}] {s['path']}{page} ({s.get('relevance', '?')} match)")
        if s.get("support"):
            print(f"    \u201c{' '.join(s['support']['text'].split())[:200]}\u201d")


def cmd_ask(args) -> int:
    engine = open_engine(args)
    if args.model:
        engine.use_model(args.model)
    answer = _answer(engine, args.question, args)
    if args.json:
        emit(args, answer.to_json(), "")
    else:
        _print_sources(answer)
    return 0


def cmd_chat(args) -> int:
    engine = open_engine(args)
    if args.model:
        engine.use_model(args.model)
    print(f"Enclave chat on {', '.join(args.collection)}: ask a question, Ctrl-D to leave, Ctrl-C stops an answer.",
          file=sys.stderr)
    info = engine.load_model()
    print(f"model: {info['path']} ({'GPU' if info['gpu_layers'] else 'CPU'})", file=sys.stderr)
    history: list[tuple[str, str]] = []
    while True:
        try:
            question = input("\n> ").strip()
        except EOFError:
            print(file=sys.stderr)
            return 0
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return 0
        if not question:
            continue
        answer = _answer(engine, question, args, history)
        if args.json:
            emit(args, answer.to_json(), "")
        else:
            _print_sources(answer)
        if not answer.refused:
            history = (history + [(question, answer.text)])[-4:]


def cmd_eval(args) -> int:
    from .. import evaluation

    if not Path(args.squad).is_file():
        raise EnclaveError(f"No such file: {args.squad}")
    if args.limit is not None and args.limit < 1:
        raise EnclaveError("--limit must be at least 1")
    if args.answer_tokens is not None and not 1 <= args.answer_tokens <= 4096:
        raise EnclaveError("--answer-tokens must be between 1 and 4096")
    from ..config import Settings
    from ..engine import Engine
    import tempfile

    with tempfile.TemporaryDirectory(prefix="enclave-eval-data-") as tmp:
        # The user's settings (model, threshold, top-k) apply; the eval's index stays private.
        settings = Settings.load(data_folder(args))
        if args.prompt:
            settings.prompt_excerpts = args.prompt == "sentences"
        engine = Engine(tmp, settings=settings)
        if args.model:
            engine.use_model(args.model)

        def progress(done, total):
            if sys.stderr.isatty():
                print(f"\reval: {done}/{total}", end="", file=sys.stderr, flush=True)
            elif done % 25 == 0 or done == total:  # a log line now and then, e.g. under nohup
                print(f"eval: {done}/{total}", file=sys.stderr, flush=True)

        def record(item: dict) -> None:
            with open(args.records, "a", encoding="utf-8") as out:
                out.write(json.dumps(item, ensure_ascii=False) + "\n")

        try:
            report = evaluation.run(Path(args.squad), engine, args.limit, not args.retrieval_only, progress,
                                    k=args.k, answer_tokens=args.answer_tokens,
                                    also_model=Path(args.also_model).expanduser() if args.also_model else None,
                                    on_record=record if args.records else None)
        finally:
            engine.close()
    curve = evaluation.threshold_curve(report["evidence"], signal="probability")
    chosen = evaluation.choose_threshold(curve)
    report["refusal"]["suggested_threshold"] = chosen
    # What each signal alone achieves within the same 10% budget on answerable questions.
    report["refusal"]["signals"] = {
        signal: evaluation.choose_threshold(evaluation.threshold_curve(report["evidence"], signal=signal))
        for signal in ("probability", "strength")
    }
    if args.plot:
        evaluation.plot_curve(curve, chosen, Path(args.plot))
    report.pop("evidence")  # per-question signals: used for the curve, too long to print
    report.pop("records")  # written as they came with --records
    if "compare" in report:
        report["compare"].pop("records")
    if args.json:
        emit(args, report, "")
    else:
        _print_eval(report, chosen)
    return 0


def _print_eval(report: dict, chosen: dict) -> None:
    r, f, q = report["retrieval"], report["refusal"], report["quote"]
    print(f"questions {report['questions']} ({report['answerable']} answerable), "
          f"{report['sources_per_prompt']} sources, prompt of {report['prompt']}")
    print(f"retrieval  recall@1 {r['recall_at_1']}  recall@5 {r['recall_at_5']}  MRR {r['mrr']}")
    d, o = f["decision"], f["old_cosine_threshold"]
    print(f"decision   P < {d['min_probability']} refuses {d['unanswerable_refused']} of unanswerable, "
          f"{d['answerable_refused']} of answerable (old cosine < {o['threshold']}: "
          f"{o['unanswerable_refused']} / {o['answerable_refused']}; suggested P {chosen['threshold']})")
    print(f"quote      holds the gold answer {q['contains_gold']}")
    columns = [report] + ([report["compare"]] if "compare" in report else [])
    if report.get("answers", {}).get("f1") is None:
        return
    names = [Path((c["model"] or {}).get("path") or "?").name[:34] for c in columns]
    print(f"{'':34} " + " ".join(f"{n:>34}" for n in names))
    rows = [
        ("answer F1", lambda c: c["answers"]["f1"]),
        ("exact match", lambda c: c["answers"]["exact_match"]),
        ("gold contained in answer", lambda c: c["answers"]["contained"]),
        ("unanswerable refused", lambda c: c["refusal"]["unanswerable_refused"]),
        ("answerable refused", lambda c: c["refusal"]["answerable_refused"]),
        ("  of which by the model (unans.)", lambda c: c["refusal"]["unanswerable_refused_by_model"]),
        ("  of which by the model (ans.)", lambda c: c["refusal"]["answerable_refused_by_model"]),
        ("claims supported", lambda c: c["claims"]["supported"]),
        ("answers with no supported claim", lambda c: c["claims"]["answers_without_support"]),
        ("tokens per answer (mean)", lambda c: c["generation"]["tokens_mean"]),
        ("answers ended at the token cap", lambda c: c["generation"]["ended_at_cap"]),
        ("answers ended repeating", lambda c: c["generation"]["ended_repeating"]),
        ("first token p50 ms", lambda c: c["timings"]["first_token_ms_p50"]),
        ("first token p95 ms", lambda c: c["timings"]["first_token_ms_p95"]),
        ("quote shown p50 ms", lambda c: c["timings"]["quote_ms_p50"]),
        ("quote shown p95 ms", lambda c: c["timings"]["quote_ms_p95"]),
        ("prompt tokens p50", lambda c: c["timings"]["prompt_tokens_p50"]),
    ]
    for label, get in rows:
        print(f"{label:34} " + " ".join(f"{str(get(c)):>34}" for c in columns))
