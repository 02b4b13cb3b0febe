"""Keeping the data folder sound: verify, doctor."""

from __future__ import annotations

import sys

from ..errors import EnclaveError
from .common import add_command, data_folder, emit, open_engine


def register(sub) -> None:
    p = add_command(sub, "verify", cmd_verify, "check the index against the vector store (and repair it)")
    p.add_argument("--repair", action="store_true", help="re-embed missing vectors, delete orphans, rebuild FTS")
    p.add_argument("--local-only", action="store_true", help="skip the team collections")

    p = add_command(sub, "doctor", cmd_doctor, "check the data folder at start-up depth; offer a rebuild")
    p.add_argument("--rebuild", action="store_true", help="move a damaged vector store aside and re-index")
    p.add_argument("--yes", action="store_true", help="do not ask before rebuilding")


def cmd_verify(args) -> int:
    report = open_engine(args).verify(repair=args.repair, team=False if args.local_only else None)
    lines = [f"{'consistent' if report['consistent'] else 'INCONSISTENT'}"
             f" (FTS {'ok' if report['fts_consistent'] else 'out of step'})"]
    for c in report["collections"]:
        lines.append(f"  {c['collection']}: {c['chunks']} chunks, {c['vectors']} vectors, "
                     f"{c['missing_vectors']} missing, {c['orphan_vectors']} orphans")
    emit(args, report, "\n".join(lines))
    if report.get("team_error"):
        print(f"enclave-cli: {report['team_error']}", file=sys.stderr)
        return 1
    if not report["consistent"]:
        print("enclave-cli: the index is inconsistent; run enclave-cli verify --repair", file=sys.stderr)
        return 1
    return 0


def cmd_doctor(args) -> int:
    from .. import health

    data_dir = data_folder(args)
    problems = health.check(data_dir)
    found = {part: text for part, text in problems.items() if text}
    if found.get("store") and args.rebuild:
        if not args.yes:
            answer = input("The damaged vector store will be moved aside (not deleted) and every document "
                           "in the catalog indexed again. Go ahead? [y/N] ")
            if answer.strip().lower() not in {"y", "yes"}:
                raise EnclaveError("Nothing was changed.")
        from ..engine import Engine

        report = Engine(data_dir).rebuild_store()
        found.pop("store")
        problems["rebuilt"] = report.to_json()
    emit(args, problems, "\n".join(f"{part}: {text}" for part, text in found.items()) or "healthy")
    if found:
        hint = " (run enclave-cli doctor --rebuild)" if "store" in found else ""
        print(f"enclave-cli: the data folder has problems{hint}", file=sys.stderr)
        return 1
    return 0
