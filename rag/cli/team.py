"""Team collections: team (a member's view), team-admin (the catalog's owner)."""

from __future__ import annotations

import os

from ..errors import EnclaveError
from .common import add_command, add_common, emit, open_engine


def register(sub) -> None:
    add_command(sub, "team", cmd_team, "the team's servers: test the connection, list the collections you may see")

    p = add_command(sub, "team-admin", cmd_team_admin, "administer the team catalog (as the role that owns it)")
    p.add_argument("--admin-dsn", default=os.environ.get("ENCLAVE_TEAM_ADMIN_DSN"),
                   help="the owner's PostgreSQL connection string (default: $ENCLAVE_TEAM_ADMIN_DSN)")
    p.add_argument("--ca-file", default="", help="the CA that signed the PostgreSQL server's certificate")
    admin = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions = {
        "migrate": admin.add_parser("migrate", help="create or update the team database's tables, policies and member "
                                               "role; embed the vectors chunks lack (resumable)"),
        "audit": admin.add_parser("audit", help="every document write and grant: who, when, what"),
        "create": admin.add_parser("create", help="create a team collection"),
        "grant": admin.add_parser("grant", help="let a role (a person or a group) see a collection, or add to it"),
        "revoke": admin.add_parser("revoke", help="take a collection away from a role"),
    }
    for name, a in actions.items():
        add_common(a, suppress=True)
        if name not in ("migrate", "audit"):
            a.add_argument("name")
        if name in ("grant", "revoke"):
            a.add_argument("role")
    actions["grant"].add_argument("--write", action="store_true", help="the role may also add and remove documents")
    actions["migrate"].add_argument("--batch", type=int, default=256, help="chunks embedded per committed batch")
    actions["audit"].add_argument("--since", default=None,
                                  help="only rows from this time on (ISO 8601, e.g. 2026-12-01 or 2026-12-01T09:00Z)")


def cmd_team(args) -> int:
    engine = open_engine(args)
    info = engine.team_status()
    replica = ""
    if "replica" in info:
        replica = f", replica {info['replica']}" if info["replica"] else ", replica unreachable (searches use the database)"
    human = (f"database {info['catalog']}{replica}: reached\n"
             + ("\n".join(f"  {name}" for name in info["collections"]) or "  (no team collection granted to you)"))
    emit(args, info, human)
    return 0


def cmd_team_admin(args) -> int:
    from ..index import team

    if not args.admin_dsn:
        raise EnclaveError("Give the owner's connection string with --admin-dsn or ENCLAVE_TEAM_ADMIN_DSN.")
    db = team.connect_catalog(args.admin_dsn, args.ca_file)
    try:
        if args.action == "migrate":
            data = {"schema": team.migrate(db)}
            data["vectors_rebuilt"] = _rebuild_vectors(args, db)
            human = f"team database at schema {data['schema']}" + "".join(
                f"\n  team:{name}: {n} vectors embedded" for name, n in data["vectors_rebuilt"].items())
        elif args.action == "audit":
            data = team.audit(db, _since(args.since))
            human = "\n".join(f"{r['at']}  {r['role']:<16} {r['action']:<8} {r['collection']}"
                              + (f"  {r['path']}" if r["path"] else "")
                              + (f"  ({r['chunks']} chunks)" if r["chunks"] is not None else "")
                              + (f"  {r['detail']}" if r["detail"] else "") for r in data) or "no audit rows"
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
    emit(args, data, human)
    return 0


def _since(text: str | None):
    from datetime import datetime

    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise EnclaveError(f"--since {text!r} is not a time: use ISO 8601, e.g. 2026-12-01 or 2026-12-01T09:00Z.") from exc


def _rebuild_vectors(args, db) -> dict[str, int]:
    """Embed every chunk that has no vector (a database at the schema before pgvector, or an
    interrupted run) with the model its collection recorded; committed batch by batch, so a
    second run resumes. The model is this Enclave's own: its name must be the recorded one."""
    from ..index import team

    todo = {name: (model, n) for name, (model, n) in team.missing_vectors(db).items() if n}
    if not todo:
        return {}
    from ..config import Settings
    from ..embedding import SentenceEmbedder
    from .common import data_folder

    settings = Settings.load(data_folder(args))
    embedder = SentenceEmbedder(settings.embedding_model_path(), batch_size=settings.embed_batch_size)
    done: dict[str, int] = {}
    for name, (model, total) in todo.items():
        if model != embedder.name:
            raise EnclaveError(
                f"Team collection 'team:{name}' was embedded with {model}; this Enclave embeds with "
                f"{embedder.name}. Set embedding_model in the administrator's settings to {model} and run "
                "team-admin migrate again (the chunks done so far are kept).")
        with _Progress(f"team:{name}", total) as step:
            done[name] = team.rebuild_vectors(db, name, embedder.embed, batch=args.batch, progress=step)
    return done


class _Progress:
    """A bar on an interactive stderr; a line every tenth of the way otherwise (logs)."""

    def __init__(self, what: str, total: int):
        self.what, self.total, self.done, self._shown = what, total, 0, 0
        self._bar = None

    def __enter__(self):
        import sys

        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn(f"embedding {self.what}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("embed", total=self.total)
        return self.step

    def step(self, n: int) -> None:
        import sys

        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self.done * 10 // self.total > self._shown or self.done >= self.total:
            self._shown = self.done * 10 // self.total
            print(f"embedding {self.what}: {self.done}/{self.total} chunks", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False
