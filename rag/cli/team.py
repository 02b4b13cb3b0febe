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
        "migrate": admin.add_parser("migrate", help="create or update the team catalog's tables, policies and member role"),
        "create": admin.add_parser("create", help="create a team collection"),
        "grant": admin.add_parser("grant", help="let a role (a person or a group) see a collection, or add to it"),
        "revoke": admin.add_parser("revoke", help="take a collection away from a role"),
    }
    for name, a in actions.items():
        add_common(a, suppress=True)
        if name != "migrate":
            a.add_argument("name")
        if name in ("grant", "revoke"):
            a.add_argument("role")
    actions["grant"].add_argument("--write", action="store_true", help="the role may also add and remove documents")


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
    emit(args, data, human)
    return 0
