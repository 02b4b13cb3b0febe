"""Documents: index, search, docs, remove."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import EnclaveError
from .common import add_collections, add_command, emit, open_engine


def register(sub) -> None:
    p = add_command(sub, "index", cmd_index, "index files and folders (incremental)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--collection", default="default", help="a local collection, or team:NAME on the team's servers")
    p.add_argument("--password-file", metavar="F", help="a file with one PDF password per line, tried in order")

    p = add_command(sub, "search", cmd_search, "hybrid search over indexed documents")
    p.add_argument("question")
    p.add_argument("-k", type=int, default=None, help="number of sources (default: top_k from settings)")
    add_collections(p)

    p = add_command(sub, "docs", cmd_docs, "list documents and their state")
    p.add_argument("--collection", default=None)

    p = add_command(sub, "remove", cmd_remove, "forget documents (a folder forgets everything under it)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--collection", default=None)


def cmd_index(args) -> int:
    from ..types import IndexReport

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
    engine = open_engine(args)
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
    emit(args, data, human)
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
    engine = open_engine(args)
    hits = engine.search(args.question, args.collection, args.k)
    labels = engine.relevance(args.question, hits)
    # The fusion score only orders the hits and means nothing to a reader: people get the
    # rank and the word the answers' source cards use; --json keeps the score for tools.
    data = [dict(h.to_json(), rank=n, relevance=label) for n, (h, label) in enumerate(zip(hits, labels), 1)]
    lines = []
    for n, (h, label) in enumerate(zip(hits, labels), 1):
        page = (f" p.{h.page}" if h.page else "") + (f" ({h.unit})" if h.unit else "")
        snippet = " ".join(h.text.split())[:160]
        lines.append(f"[{n}] {h.path}{page}  ({label} match)\n    {snippet}")
    emit(args, data, "\n".join(lines) or "no results")
    return 0


def cmd_docs(args) -> int:
    docs = open_engine(args).documents(args.collection)
    data = [d.to_json() for d in docs]
    lines = [
        f"{d.state:9} {d.chunks:6} chunks {str(d.pages or '-'):>5} pages  {d.path}"
        + (f"  ({d.reason})" if d.reason else "")
        for d in docs
    ]
    emit(args, data, "\n".join(lines) or "no documents")
    return 0


def cmd_remove(args) -> int:
    forgotten = open_engine(args).remove(args.paths, args.collection)
    if not forgotten:
        raise EnclaveError("None of the given paths is in the index.")
    emit(args, {"removed": forgotten}, "\n".join(f"removed {p}" for p in forgotten))
    return 0
