"""`siaga user ...` and `siaga token ...`: logins and API tokens, made directly in the
gateway's database in its data folder (as `siaga gateway --data/--config` finds it), so
they work before the gateway first runs, and while it runs.

Passwords come from a prompt (asked twice) or SIAGA_PASSWORD, never from a flag.
"""

import getpass
import json
import os
import sys

from . import auth, config
from .centre import local_time
from .errors import SiagaError


def _store(args):
    settings = config.resolve(args)
    return auth.open_db(settings["data"], settings["database_url"])


def _password():
    if os.environ.get("SIAGA_PASSWORD"):
        return os.environ["SIAGA_PASSWORD"]
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SiagaError("the two passwords differ; nothing changed")
    return first


def _when(ts):
    return "-" if ts is None else local_time(ts)  # as `siaga units`: the centre's time


def cmd_user_add(args):
    store = _store(args)
    with store.atomic() as db:
        row = auth.add_user(db, args.name, args.role, _password())
    print(f"user {row['name']} ({row['role']}) added to {store.where}")


def cmd_user_password(args):
    store = _store(args)
    with store.atomic() as db:
        auth.user(db, args.name)
        auth.set_password(db, args.name, _password())
    print(f"password of {args.name} changed; their sessions ended")


def cmd_user_list(args):
    rows = auth.users(_store(args).reader())
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'USER':<20} {'ROLE':<11} {'CREATED':<21} DISABLED")
    for u in rows:
        print(f"{u['name']:<20} {u['role']:<11} {_when(u['created_at']):<21} {_when(u['disabled_at'])}")


def cmd_user_disable(args):
    with _store(args).atomic() as db:
        auth.disable_user(db, args.name)
    print(f"user {args.name} disabled; their sessions ended")


def cmd_token_create(args):
    with _store(args).atomic() as db:
        token, row = auth.create_token(db, args.role, args.name)
    print(token)
    print(
        f"(token {row['id']} {row['name']!r}, role {row['role']}: shown this once; "
        "send it as Authorization: Bearer TOKEN, or set SIAGA_TOKEN for siaga)",
        file=sys.stderr,
    )


def cmd_token_list(args):
    rows = auth.tokens(_store(args).reader())
    print(f"{'ID':>4} {'NAME':<24} {'ROLE':<11} {'CREATED':<21} REVOKED")
    for t in rows:
        created, revoked = _when(t["created_at"]), _when(t["revoked_at"])
        print(f"{t['id']:>4} {t['name']:<24} {t['role']:<11} {created:<21} {revoked}")


def cmd_token_revoke(args):
    with _store(args).atomic() as db:
        n = auth.revoke_token(db, args.token_id)
    if not n:
        raise SiagaError(f"no token {args.token_id!r} that is not revoked already")
    print(f"revoked {n} token{'s' if n > 1 else ''}")


def _data_flags(p):
    p.add_argument("--data", default=None, help="the gateway's data folder [env SIAGA_DATA_DIR, default var]")
    p.add_argument("--config", help="the gateway's TOML settings file (for its data folder)")
    p.add_argument(
        "--database-url",
        default=None,
        help="the gateway's PostgreSQL [env SIAGA_DATABASE_URL; unset: SQLite]",
    )


def add_commands(sub):
    u = sub.add_parser("user", help="logins for the dispatcher's page and the API: add, list, disable")
    us = u.add_subparsers(dest="user_command", required=True)
    a = us.add_parser("add", help="add a login (password from a prompt or SIAGA_PASSWORD)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=list(auth.ROLES))
    p = us.add_parser(
        "password", help="set a user's password (prompt or SIAGA_PASSWORD); ends their sessions"
    )
    p.add_argument("name")
    ls = us.add_parser("list", help="every login with its role")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    d = us.add_parser("disable", help="a user can no longer log in; their sessions end")
    d.add_argument("name")
    for parser, func in (
        (a, cmd_user_add),
        (p, cmd_user_password),
        (ls, cmd_user_list),
        (d, cmd_user_disable),
    ):
        _data_flags(parser)
        parser.set_defaults(func=func)

    t = sub.add_parser(
        "token", help="API tokens for other systems (Authorization: Bearer): create, list, revoke"
    )
    ts = t.add_subparsers(dest="token_command", required=True)
    c = ts.add_parser("create", help="print a new API token, once")
    c.add_argument("--role", required=True, choices=list(auth.ROLES))
    c.add_argument("--name", help="what uses it; recorded as who acted (default ROLE-token)")
    tl = ts.add_parser("list", help="every token: id, name, role, revoked (never the token)")
    r = ts.add_parser("revoke", help="revoke a token by id, or every token of a name")
    r.add_argument("token_id", metavar="ID_OR_NAME")
    for parser, func in ((c, cmd_token_create), (tl, cmd_token_list), (r, cmd_token_revoke)):
        _data_flags(parser)
        parser.set_defaults(func=func)
