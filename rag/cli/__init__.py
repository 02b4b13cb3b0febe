"""enclave-cli: the headless face of the engine.

Every subcommand takes --data-dir and --json, before or after the subcommand. Results go to
stdout (JSON with --json); progress and errors go to stderr. Exit code 0 on success, 1 for
an error of the environment (missing path, damaged or locked index), 2 for a usage error.

One module per group of subcommands; each has `register(sub)`, which adds its parsers and
binds each to its command. A new group is a new module named in GROUPS.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import EnclaveError
from . import answers, documents, maintenance, models, team, wholedocs
from .common import add_common

GROUPS = (documents, answers, wholedocs, maintenance, team, models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enclave-cli", description="Enclave: private, offline document search and answers.")
    add_common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("search", "ask", "chat"):
        args.collections_named = args.collection is not None  # checked: an unknown one is an error
        args.collection = args.collection or ["default"]
    logging.basicConfig(level=logging.WARNING, format="enclave: %(message)s")
    if getattr(args, "k", None) is not None and not 1 <= args.k <= 100:
        parser.error("-k must be between 1 and 100")
    if getattr(args, "question", None) is not None and not args.question.strip():
        print(f"{parser.prog}: error: the question is empty", file=sys.stderr)  # one line, as usage errors
        return 2
    try:
        return args.run(args)
    except EnclaveError as exc:
        print(f"enclave-cli: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("enclave-cli: interrupted", file=sys.stderr)
        return 130
