"""Whole documents: summarize one, compare two (rag/documents/)."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import add_command, emit, open_engine


def register(sub) -> None:
    p = add_command(sub, "summarize", cmd_summarize, "summarize an indexed document, every line cited")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--length", choices=("short", "long"), default="short")
    p.add_argument("--collection", default=None, help="the collection that holds it (default: any local one)")
    p.add_argument("--extractive-only", action="store_true",
                   help="only the document's own sentences, chosen to cover it (no model; under a second)")

    p = add_command(sub, "compare", cmd_compare, "what changed between two indexed documents, cited in both")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--collection", default=None, help="the collection that holds them (default: any local one)")
    p.add_argument("--no-overview", action="store_true", help="the differences only, without the model's overview")


def _place(source: dict) -> str:
    name = Path(source["path"]).name
    where = f"{name}, page {source['page']}" if source.get("page") else name
    return f"{where}, {source['unit']}" if source.get("unit") else where


def _progress(event) -> None:
    if not sys.stderr.isatty():
        return
    eta = f" (about {event.estimate_s:.0f} s left)" if event.estimate_s else ""
    print(f"\r{event.message}{eta}\033[K", end="", file=sys.stderr, flush=True)


def cmd_summarize(args) -> int:
    from ..documents.mapreduce import PartProgress
    from ..documents.summary import Summary

    engine = open_engine(args)
    try:
        result = None
        printed = False
        for event in engine.summarize(args.path, args.length, args.collection, use_model=not args.extractive_only):
            if isinstance(event, Summary):
                if not event.final and not args.json:
                    print("In its own words:")
                    for item in event.extractive:
                        print(f"  \u201c{' '.join(item['text'].split())}\u201d \u2014 {_place(item['source'])}")
                    if not args.extractive_only:
                        print("\nSummary:")
                result = event
            elif isinstance(event, PartProgress):
                _progress(event)
            elif not args.json:
                if not printed and sys.stderr.isatty():
                    print("\r\033[K", end="", file=sys.stderr)
                printed = True
                print(event, end="", flush=True)
        assert result is not None
        if args.json:
            data = result.to_json()
            emit(args, data, "")
        else:
            if result.summary is not None:
                print()
                for s in result.sources:
                    print(f"  [{s['n']}] {_place(s)}")
                for claim in result.claims:
                    if not claim["supported"]:
                        print(f"(no source supports: \u201c{claim['text']}\u201d)")
            elif result.stopped:
                print("(stopped; the sentences above are the document's own)")
            for warning in result.warnings:
                print(f"note: {warning}", file=sys.stderr)
    finally:
        engine.close()
    return 0


def cmd_compare(args) -> int:
    from ..documents.compare import Comparison

    engine = open_engine(args)
    try:
        result = None
        for event in engine.compare(args.a, args.b, args.collection, use_model=not args.no_overview):
            if isinstance(event, Comparison):
                if not event.final and not args.json:
                    _print_differences(event)
                    if not args.no_overview and not event.same:
                        print("\nOverview:")
                result = event
            elif not args.json:
                print(event, end="", flush=True)
        assert result is not None
        if args.json:
            emit(args, result.to_json(), "")
        elif result.overview is not None:
            print()
    finally:
        engine.close()
    return 0


def _print_differences(c) -> None:
    if c.same:
        print(f"{Path(c.a).name} and {Path(c.b).name} say the same.")
        return
    for item in c.changed:
        print(f"changed  {_place(item['before']['source'])} -> {_place(item['after']['source'])}")
        print(f"   - {' '.join(item['before']['text'].split())}")
        print(f"   + {' '.join(item['after']['text'].split())}")
    for item in c.removed:
        print(f"removed  {_place(item['source'])}: {' '.join(item['text'].split())}")
    for item in c.added:
        print(f"added    {_place(item['source'])}: {' '.join(item['text'].split())}")
    for item in c.moved:
        print(f"moved    {_place(item['before']['source'])} -> {_place(item['after']['source'])}: "
              f"{' '.join(item['before']['text'].split())}")
