"""What every group of subcommands shares: the common options, the engine, output."""

from __future__ import annotations

import argparse
import json
import sys


def add_common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # On subcommands the defaults are suppressed so they never overwrite a value given before
    # the subcommand name.
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--data-dir", default=default, help="data folder (default: $ENCLAVE_DATA_DIR or the user data folder)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False, help="print JSON")


def add_command(sub, name: str, run, help: str) -> argparse.ArgumentParser:
    """A subcommand with the common options, bound to the function that runs it."""
    p = sub.add_parser(name, help=help)
    add_common(p, suppress=True)
    p.set_defaults(run=run)
    return p


def add_collections(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", action="append", default=None, metavar="NAME",
                   help="a collection to search (repeat for several, local and team:NAME together; default: default)")


def open_engine(args):
    from ..engine import Engine  # keeps `enclave-cli --help` instant

    engine = Engine(args.data_dir)
    if getattr(args, "collections_named", False):
        engine.check_collections(args.collection)
    return engine


def data_folder(args):
    from ..config import resolve_data_dir

    return resolve_data_dir(args.data_dir)


def emit(args, data, human: str) -> None:
    if args.json:
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print(human)
