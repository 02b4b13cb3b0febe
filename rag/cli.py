"""enclave-cli: the headless face of the engine (index, search, docs, remove, ask, chat, eval).

Every subcommand takes --data-dir and --json, before or after the subcommand. Results go to
stdout (JSON with --json); progress and errors go to stderr. Exit code 0 on success, 1 for
an error of the environment (missing path, damaged or locked index), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import EnclaveError


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # On subcommands the defaults are suppressed so they never overwrite a value given before
    # the subcommand name.
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--data-dir", default=default, help="data folder (default: $ENCLAVE_DATA_DIR or the user data folder)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False, help="print JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enclave-cli", description="Enclave: private, offline document search and answers.")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="index files and folders (incremental)")
    _common(p, suppress=True)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--collection", default="default", help="a local collection, or team:NAME on the team's servers")
    p.add_argument("--password-file", metavar="F", help="a file with one PDF password per line, tried in order")

    p = sub.add_parser("search", help="hybrid search over indexed documents")
    _common(p, suppress=True)
    p.add_argument("question")
    p.add_argument("-k", type=int, default=None, help="number of sources (default: top_k from settings)")
    _collections(p)

    p = sub.add_parser("docs", help="list documents and their state")
    _common(p, suppress=True)
    p.add_argument("--collection", default=None)

    p = sub.add_parser("remove", help="forget documents (a folder forgets everything under it)")
    _common(p, suppress=True)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--collection", default=None)

    for name, text in (("ask", "answer one question from the documents, with citations"),
                       ("chat", "an interactive conversation with the documents")):
        p = sub.add_parser(name, help=text)
        _common(p, suppress=True)
        if name == "ask":
            p.add_argument("question")
        _collections(p)
        p.add_argument("--model", metavar="PATH", help="a GGUF model file (default: settings, else the bundled one)")
        p.add_argument("-k", type=int, default=None, help="sources to retrieve (default: top_k from settings)")

    p = sub.add_parser("verify", help="check the index against the vector store (and repair it)")
    _common(p, suppress=True)
    p.add_argument("--repair", action="store_true", help="re-embed missing vectors, delete orphans, rebuild FTS")
    p.add_argument("--local-only", action="store_true", help="skip the team collections")

    p = sub.add_parser("team", help="the team's servers: test the connection, list the collections you may see")
    _common(p, suppress=True)

    p = sub.add_parser("team-admin", help="administer the team catalog (as the role that owns it)")
    _common(p, suppress=True)
    p.add_argument("--admin-dsn", default=os.environ.get("ENCLAVE_TEAM_ADMIN_DSN"),
                   help="the owner's PostgreSQL connection string (default: $ENCLAVE_TEAM_ADMIN_DSN)")
    p.add_argument("--ca-file", default="", help="the CA that signed the PostgreSQL server's certificate")
    admin = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions = {
        "migrate": admin.add_parser("migrate", help="create or update the team catalog's tables, policies and member role"),
        "create": admin.add_parser("create", help="create a team collection"),
        "grant": admin.add_parser("grant", help="let a role (a person or a group) see a collection, or add to it"),
        "revoke": admin.add_parser("revoke", help="take a collection away from a role"),
    }
    for name, a in actions.items():
        _common(a, suppress=True)
        if name != "migrate":
            a.add_argument("name")
        if name in ("grant", "revoke"):
            a.add_argument("role")
    actions["grant"].add_argument("--write", action="store_true", help="the role may also add and remove documents")

    p = sub.add_parser("doctor", help="check the data folder at start-up depth; offer a rebuild")
    _common(p, suppress=True)
    p.add_argument("--rebuild", action="store_true", help="move a damaged vector store aside and re-index")
    p.add_argument("--yes", action="store_true", help="do not ask before rebuilding")

    p = sub.add_parser("eval", help="measure retrieval, answers and refusals on a SQuAD 2.0 file")
    _common(p, suppress=True)
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
    return parser


def _collections(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", action="append", default=None, metavar="NAME",
                   help="a collection to search (repeat for several, local and team:NAME together; default: default)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("search", "ask", "chat"):
        args.collection = args.collection or ["default"]
    logging.basicConfig(level=logging.WARNING, format="enclave: %(message)s")
    if getattr(args, "k", None) is not None and not 1 <= args.k <= 100:
        parser.error("-k must be between 1 and 100")
    try:
        return COMMANDS[args.command](args)
    except EnclaveError as exc:
        print(f"enclave-cli: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("enclave-cli: interrupted", file=sys.stderr)
        return 130


def _engine(args):
    from .engine import Engine  # keeps `enclave-cli --help` instant

    return Engine(args.data_dir)


def _emit(args, data, human: str) -> None:
    if args.json:
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print(human)


def cmd_index(args) -> int:
    from .indexer import IndexReport

    passwords: list[str] = []
    if args.password_file:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise EnclaveError(f"Cannot read the password file {args.password_file}: {exc.strerror}.") from exc
        passwords = [line.rstrip("\r\n") for line in text.splitlines() if line.strip()]
    for path in args.paths:
        if not os.path.exists(path):
            raise EnclaveError(f"No such file or folder: {path}")
    engine = _engine(args)
    report = None
    with _progress_bar() as bar:
        for event in engine.index(args.paths, args.collection, passwords):
            if isinstance(event, IndexReport):
                report = event
            else:
                bar(event)
    data = report.to_json()
    human = (
        f"indexed {report.indexed}, unchanged {report.unchanged}, skipped {len(report.skipped)}, "
        f"failed {len(report.failed)}; chunks +{report.chunks_added} -{report.chunks_removed} "
        f"in {report.seconds:.1f} s"
    )
    for item in report.failed:
        human += f"\n  failed  {item['path']}: {item['reason']}"
    for item in report.skipped:
        human += f"\n  skipped {item['path']}: {item['reason']}"
    _emit(args, data, human)
    return 0


class _progress_bar:
    """A rich progress bar on an interactive stderr; silent otherwise (CI, pipes, --json files)."""

    def __enter__(self):
        self._progress = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("indexing"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[chunks]} chunks"), TimeRemainingColumn(),
                TextColumn("{task.fields[current]}"), console=Console(stderr=True), transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("index", total=None, chunks=0, current="")
        return self._update

    def _update(self, event) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, total=event.files_total, completed=event.files_done,
                chunks=event.chunks_done, current=Path(event.current).name[-40:],
            )

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()
        return False


def cmd_search(args) -> int:
    hits = _engine(args).search(args.question, args.collection, args.k)
    data = [h.to_json() for h in hits]
    lines = []
    for n, h in enumerate(hits, 1):
        page = (f" p.{h.page}" if h.page else "") + (f" ({h.unit})" if h.unit else "")
        snippet = " ".join(h.text.split())[:160]
        lines.append(f"[{n}] {h.path}{page}  ({h.score:.4f})\n    {snippet}")
    _emit(args, data, "\n".join(lines) or "no results")
    return 0


def cmd_docs(args) -> int:
    docs = _engine(args).documents(args.collection)
    data = [d.to_json() for d in docs]
    lines = [
        f"{d.state:9} {d.chunks:6} chunks {str(d.pages or '-'):>5} pages  {d.path}"
        + (f"  ({d.reason})" if d.reason else "")
        for d in docs
    ]
    _emit(args, data, "\n".join(lines) or "no documents")
    return 0


def cmd_remove(args) -> int:
    forgotten = _engine(args).remove(args.paths, args.collection)
    if not forgotten:
        raise EnclaveError("None of the given paths is in the index.")
    _emit(args, {"removed": forgotten}, "\n".join(f"removed {p}" for p in forgotten))
    return 0


def _answer(engine, question, args, history=()):
    """Stream one answer to stdout, the quote first; Ctrl-C stops the model at once and keeps
    what it said."""
    from .answer import Answer, Quote

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
    if answer.claims and len(unsupported) == len(answer.claims):
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
    engine = _engine(args)
    if args.model:
        engine.use_model(args.model)
    answer = _answer(engine, args.question, args)
    if args.json:
        _emit(args, answer.to_json(), "")
    else:
        _print_sources(answer)
    return 0


def cmd_chat(args) -> int:
    engine = _engine(args)
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
            _emit(args, answer.to_json(), "")
        else:
            _print_sources(answer)
        if not answer.refused:
            history = (history + [(question, answer.text)])[-4:]


def cmd_eval(args) -> int:
    from . import evaluation

    if not Path(args.squad).is_file():
        raise EnclaveError(f"No such file: {args.squad}")
    if args.limit is not None and args.limit < 1:
        raise EnclaveError("--limit must be at least 1")
    if args.answer_tokens is not None and not 1 <= args.answer_tokens <= 4096:
        raise EnclaveError("--answer-tokens must be between 1 and 4096")
    from .config import Settings
    from .engine import Engine
    import tempfile

    with tempfile.TemporaryDirectory(prefix="enclave-eval-data-") as tmp:
        # The user's settings (model, threshold, top-k) apply; the eval's index stays private.
        settings = Settings.load(_data_dir(args))
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
        _emit(args, report, "")
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
        ("first token p50 ms", lambda c: c["timings"]["first_token_ms_p50"]),
        ("first token p95 ms", lambda c: c["timings"]["first_token_ms_p95"]),
        ("quote shown p50 ms", lambda c: c["timings"]["quote_ms_p50"]),
        ("quote shown p95 ms", lambda c: c["timings"]["quote_ms_p95"]),
        ("prompt tokens p50", lambda c: c["timings"]["prompt_tokens_p50"]),
    ]
    for label, get in rows:
        print(f"{label:34} " + " ".join(f"{str(get(c)):>34}" for c in columns))


def cmd_verify(args) -> int:
    report = _engine(args).verify(repair=args.repair, team=False if args.local_only else None)
    lines = [f"{'consistent' if report['consistent'] else 'INCONSISTENT'}"
             f" (FTS {'ok' if report['fts_consistent'] else 'out of step'})"]
    for c in report["collections"]:
        lines.append(f"  {c['collection']}: {c['chunks']} chunks, {c['vectors']} vectors, "
                     f"{c['missing_vectors']} missing, {c['orphan_vectors']} orphans")
    _emit(args, report, "\n".join(lines))
    if report.get("team_error"):
        print(f"enclave-cli: {report['team_error']}", file=sys.stderr)
        return 1
    if not report["consistent"]:
        print("enclave-cli: the index is inconsistent; run enclave-cli verify --repair", file=sys.stderr)
        return 1
    return 0


def cmd_team(args) -> int:
    engine = _engine(args)
    info = engine.team_status()
    human = (f"catalog {info['catalog']}, vectors {info['vectors']}: reached\n"
             + ("\n".join(f"  {name}" for name in info["collections"]) or "  (no team collection granted to you)"))
    _emit(args, info, human)
    return 0


def cmd_team_admin(args) -> int:
    from .index import team

    if not args.admin_dsn:
        raise EnclaveError("Give the owner's connection string with --admin-dsn or ENCLAVE_TEAM_ADMIN_DSN.")
    db = team.connect_catalog(args.admin_dsn, args.ca_file)
    try:
        if args.action == "migrate":
            data = {"schema": team.migrate(db)}
            human = f"team catalog at schema {data['schema']}"
        elif args.action == "create":
            data = {"collection": "team:" + args.name.removeprefix("team:"),
                    "store_name": team.create_collection(db, args.name)}
            human = f"created {data['collection']} (vectors in {data['store_name']})"
        elif args.action == "grant":
            team.grant(db, args.name, args.role, args.write)
            data = {"collection": args.name, "role": args.role, "write": args.write}
            human = f"{args.role} may {'read and write' if args.write else 'read'} {args.name}"
        else:
            team.revoke(db, args.name, args.role)
            data = {"collection": args.name, "role": args.role, "revoked": True}
            human = f"{args.role} no longer sees {args.name}"
    except Exception as exc:
        import psycopg

        if isinstance(exc, psycopg.Error):
            raise EnclaveError(f"The team catalog refused: {str(exc).strip().splitlines()[0]}") from exc
        raise
    finally:
        db.close()
    _emit(args, data, human)
    return 0


def cmd_doctor(args) -> int:
    from . import health

    data_dir = _data_dir(args)
    problems = health.check(data_dir)
    found = {part: text for part, text in problems.items() if text}
    if found.get("store") and args.rebuild:
        if not args.yes:
            answer = input("The damaged vector store will be moved aside (not deleted) and every document "
                           "in the catalog indexed again. Go ahead? [y/N] ")
            if answer.strip().lower() not in {"y", "yes"}:
                raise EnclaveError("Nothing was changed.")
        from .engine import Engine

        report = Engine(data_dir).rebuild_store()
        found.pop("store")
        problems["rebuilt"] = report.to_json()
    _emit(args, problems, "\n".join(f"{part}: {text}" for part, text in found.items()) or "healthy")
    if found:
        hint = " (run enclave-cli doctor --rebuild)" if "store" in found else ""
        print(f"enclave-cli: the data folder has problems{hint}", file=sys.stderr)
        return 1
    return 0


def _data_dir(args):
    from .config import resolve_data_dir

    return resolve_data_dir(args.data_dir)


COMMANDS = {
    "index": cmd_index, "search": cmd_search, "docs": cmd_docs, "remove": cmd_remove,
    "ask": cmd_ask, "chat": cmd_chat, "eval": cmd_eval, "verify": cmd_verify, "doctor": cmd_doctor,
    "team": cmd_team, "team-admin": cmd_team_admin,
}


if __name__ == "__main__":
    sys.exit(main())
