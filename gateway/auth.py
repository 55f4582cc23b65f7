"""Logins, roles, sessions and API tokens: who may do what, kept in the gateway's
database. The HTTP side (the permission each route needs, cookies, CSRF) is
gateway/api/logins.py.

Two tables decide every request:
- ROLES: what each role may do, as a set of permissions;
- ROUTES: the permission each route needs, by (method, path template).
One app-level dependency (`Auth.authorize`) enforces ROUTES, so the routes themselves
carry no decorators; a route missing from ROUTES is refused to everyone (default deny).

Who is asking:
- a browser: a session cookie (`siaga_session`) from POST /api/v1/login. A session
  lives `session_lifetime` seconds after its last request (sliding). Every POST, PUT,
  PATCH or DELETE it makes must carry the session's CSRF token in `X-CSRF-Token`.
- another system: `Authorization: Bearer TOKEN`, a token from `siaga token create`.
  Tokens need no CSRF token: a browser never sends them by itself.

Passwords are kept as scrypt hashes (per-user random salt); session ids and API tokens
only as SHA-256 hashes (they are long random strings, so a fast hash is enough).
"""

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from .errors import (
    BadCredentials,
    BadRequest,
    Conflict,
    NotFound,
    Throttled,
)

PERMISSIONS = ("view", "dispatch", "lock", "users", "device", "units")
ROLES = {
    "viewer": frozenset({"view"}),  # sees the map
    "dispatcher": frozenset({"view", "dispatch"}),  # assigns, releases, sets statuses
    "technician": frozenset({"view", "device", "units"}),  # device health, registry, settings
    "supervisor": frozenset(PERMISSIONS),  # also locks statuses and manages users
}

SESSION_LIFETIME = 12 * 3600.0  # a dispatch shift; the gateway's `session_lifetime` setting
LOGIN_FAILURES_ALLOWED = 5  # failed logins in a row for one name before it is throttled
ADDRESS_FAILURES_ALLOWED = 20  # failed logins from one client address, whatever the names
LOGIN_THROTTLE_S = 60.0
# Password checks at once (16 MiB and ~35 ms each), on a pool of as many threads; more:
# 429 at once. On the request threads instead, every thread that ever checked one would
# keep its own 16 MiB (glibc's per-thread arenas): a login flood grew the gateway by 500 MB.
HASH_SLOTS = 2
THROTTLE_ENTRIES = 10_000  # names and addresses remembered; the oldest are forgotten past it
MIN_PASSWORD = 8
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # 16 MiB and some 35 ms a hash


class Principal(NamedTuple):
    """Who a request comes from: a user (`via` "session") or an API token ("token")."""

    name: str
    role: str
    via: str
    csrf: str | None = None

    @property
    def permissions(self):
        return ROLES[self.role]


# passwords
def _b64(raw):
    return base64.b64encode(raw).decode()


def hash_password(password):
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def check_password(password, stored):
    """Constant-time comparison against a stored hash."""
    _, n, r, p, salt, digest = stored.split("$")
    want = base64.b64decode(digest)
    got = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(want)
    )
    return hmac.compare_digest(got, want)


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))  # unknown names cost as much as known ones


def _sha256(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def check_role(role):
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}; {role!r} is not")
    return role


def check_new_password(password):
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"a password needs at least {MIN_PASSWORD} characters")
    return password


# users, tokens and sessions in the gateway's database (tables of migration m006).
# `db` is a store's transaction (writes: inside Store.atomic()) or its reader().
def _one(db, sql, params):
    return db.execute(sql, params).fetchone()


def add_user(db, name, role, password, now=None):
    if not NAME.match(name):
        raise BadRequest(f"{name!r} is not a user name: lower-case letters, digits, '.', '_', '-'")
    check_role(role)
    if _one(db, "select 1 from users where name = ?", [name]):
        raise Conflict(f"user {name!r} exists", "exists")
    db.execute(
        "insert into users (name, role, password_hash, created_at) values (?, ?, ?, ?)",
        [name, role, hash_password(check_new_password(password)), now or time.time()],
    )
    return user(db, name)


def set_password(db, name, password):
    if not db.execute(
        "update users set password_hash = ? where name = ?",
        [hash_password(check_new_password(password)), name],
    ).rowcount:
        raise NotFound(f"no user {name!r}")
    db.execute('delete from sessions where "user" = ?', [name])


def user(db, name):
    row = _one(db, "select name, role, created_at, disabled_at from users where name = ?", [name])
    if row is None:
        raise NotFound(f"no user {name!r}")
    return dict(zip(("name", "role", "created_at", "disabled_at"), row, strict=True))


def users(db):
    rows = db.execute("select name, role, created_at, disabled_at from users order by name").fetchall()
    return [dict(zip(("name", "role", "created_at", "disabled_at"), r, strict=True)) for r in rows]


def disable_user(db, name, now=None):
    """The user can no longer log in, and their sessions end at once."""
    user(db, name)
    db.execute(
        "update users set disabled_at = coalesce(disabled_at, ?) where name = ?", [now or time.time(), name]
    )
    db.execute('delete from sessions where "user" = ?', [name])
    return user(db, name)


def create_token(db, role, name=None, now=None):
    """A new API token: (token, row). The token is shown once; only its hash is kept."""
    check_role(role)
    token = "siaga_" + secrets.token_urlsafe(32)
    name = name or f"{role}-token"
    (ident,) = db.execute(
        "insert into api_tokens (name, role, token_hash, created_at) values (?, ?, ?, ?) returning id",
        [name, role, _sha256(token), now or time.time()],
    ).fetchall()[0]
    return token, {"id": ident, "name": name, "role": role}


def tokens(db):
    rows = db.execute("select id, name, role, created_at, revoked_at from api_tokens order by id").fetchall()
    return [dict(zip(("id", "name", "role", "created_at", "revoked_at"), r, strict=True)) for r in rows]


def revoke_token(db, ident, now=None):
    """Revoke the token with this id, or every token with this name; how many were revoked."""
    column = "id" if str(ident).isdigit() else "name"
    return db.execute(
        f"update api_tokens set revoked_at = ? where {column} = ? and revoked_at is null",
        [now or time.time(), int(ident) if column == "id" else ident],
    ).rowcount


def token_principal(db, token):
    row = _one(
        db, "select name, role from api_tokens where token_hash = ? and revoked_at is null", [_sha256(token)]
    )
    return Principal(row[0], row[1], "token") if row and row[1] in ROLES else None


def new_session(db, name, lifetime, now):
    """(session id for the cookie, CSRF token); expired sessions are swept here."""
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    db.execute("delete from sessions where expires_at < ?", [now])
    db.execute(
        'insert into sessions (id_hash, "user", csrf, created_at, expires_at) values (?, ?, ?, ?, ?)',
        [_sha256(sid), name, csrf, now, now + lifetime],
    )
    return sid, csrf


def session(db, sid, now):
    """(Principal, expires_at) of a live session of an enabled user, or None."""
    row = _one(
        db,
        'select u.name, u.role, s.csrf, s.expires_at from sessions s join users u on u.name = s."user"'
        " where s.id_hash = ? and s.expires_at > ? and u.disabled_at is null",
        [_sha256(sid), now],
    )
    return (Principal(row[0], row[1], "session", row[2]), row[3]) if row and row[1] in ROLES else None


class Logins:
    """Who a login, a token or a session is: passwords checked under the throttle and on
    a bounded pool of threads of their own, sessions that slide, tokens by hash."""

    def __init__(self, store, lifetime=SESSION_LIFETIME, clock=time.time):
        self.store = store
        self.reader = store.reader()
        self.lifetime = float(lifetime)
        self.clock = clock
        self.throttle = Throttle(clock)
        self.hashing = threading.BoundedSemaphore(HASH_SLOTS)
        self.hasher = ThreadPoolExecutor(HASH_SLOTS, thread_name_prefix="siaga-password")

    def by_token(self, token):
        return token_principal(self.reader, token)

    def by_session(self, sid, extend=True):
        """The Principal of a live session, or None; `extend` slides it (seldom written)."""
        now = self.clock()
        found = session(self.reader, sid, now)
        if found is None:
            return None
        principal, expires = found
        if extend and now + self.lifetime - expires > min(60.0, self.lifetime / 4):
            with self.store.atomic() as db:
                db.execute(
                    "update sessions set expires_at = ? where id_hash = ?",
                    [now + self.lifetime, _sha256(sid)],
                )
        return principal

    async def login(self, name, password, address=""):
        """(Principal, session id, CSRF token), or BadCredentials / Throttled. At most
        LOGIN_FAILURES_ALLOWED guesses count for a name, and ADDRESS_FAILURES_ALLOWED
        for a client address, within LOGIN_THROTTLE_S: each attempt is booked before its
        password is checked, so guesses sent at once count as much as guesses in a row.
        The check runs on a pool of HASH_SLOTS threads of its own, at most that many at
        once; a refused attempt costs no thread at all, so a flood of them cannot grow
        the gateway (each thread that ever ran scrypt would keep its 16 MiB)."""
        keys = ("name:" + name, "address:" + address)
        self.throttle.book(keys, (LOGIN_FAILURES_ALLOWED, ADDRESS_FAILURES_ALLOWED), name)
        found = None  # not checked: counts for nothing
        try:
            if not self.hashing.acquire(blocking=False):
                raise Throttled("the gateway is busy checking other logins; try again in a moment")
            try:
                loop = asyncio.get_running_loop()
                found = await loop.run_in_executor(self.hasher, self._check, name, password)
            finally:
                self.hashing.release()
        finally:
            self.throttle.settle(keys, None if found is None else bool(found))
        if not found:
            raise BadCredentials("wrong user name or password, or the user is disabled")
        return found

    def _check(self, name, password):
        """On a password thread: (Principal, sid, csrf) of a new session, or False."""
        row = _one(self.reader, "select role, password_hash, disabled_at from users where name = ?", [name])
        good = check_password(password, row[1] if row else _DUMMY_HASH)
        if not (good and row[2] is None and row[0] in ROLES):
            return False
        with self.store.atomic() as db:
            sid, csrf = new_session(db, name, self.lifetime, self.clock())
        return Principal(name, row[0], "session", csrf), sid, csrf

    def logout(self, sid):
        with self.store.atomic() as db:
            db.execute("delete from sessions where id_hash = ?", [_sha256(sid)])


class Throttle:
    """Failed logins per key (a name, a client address): (failures, attempts under way,
    time of the last failure). Booking and settling happen under one lock, so attempts
    made at once cannot all pass a check that each alone would pass."""

    def __init__(self, clock):
        self.clock = clock
        self.lock = threading.Lock()
        self.entries = {}

    def book(self, keys, allowed, name):
        now = self.clock()
        with self.lock:
            for key, most in zip(keys, allowed, strict=True):
                failures, pending, last = self.entries.get(key, (0, 0, 0.0))
                if now - last >= LOGIN_THROTTLE_S:
                    failures = 0  # a throttle that ran out starts over
                if failures + pending >= most:
                    wait = max(1.0, last + LOGIN_THROTTLE_S - now) if failures >= most else 1.0
                    what = f"for {name[:64]!r}" if key.startswith("name:") else "from this address"
                    raise Throttled(f"too many logins tried {what}; try again in {wait:.0f} s")
            for key in keys:
                failures, pending, last = self.entries.get(key, (0, 0, 0.0))
                if now - last >= LOGIN_THROTTLE_S:
                    failures = 0
                self.entries[key] = (failures, pending + 1, last)
            self._forget_old(now)

    def settle(self, keys, ok):
        """The booked attempt ended: ok True (logged in), False (a failed guess) or None
        (never checked)."""
        now = self.clock()
        with self.lock:
            for key in keys:
                failures, pending, last = self.entries.get(key, (0, 1, 0.0))
                if ok and key.startswith("name:"):
                    failures = 0
                elif ok is False:
                    failures, last = failures + 1, now
                if failures or pending > 1:
                    self.entries[key] = (failures, pending - 1, last)
                else:
                    self.entries.pop(key, None)

    def _forget_old(self, now):
        if len(self.entries) <= THROTTLE_ENTRIES:
            return
        live = {k: v for k, v in self.entries.items() if v[1] or now - v[2] < LOGIN_THROTTLE_S}
        if len(live) > THROTTLE_ENTRIES:  # a flood of fresh names: keep the newest
            live = dict(sorted(live.items(), key=lambda kv: kv[1][2])[-THROTTLE_ENTRIES:])
        self.entries = live


def open_db(data_dir, database_url=None):
    """The gateway's database (`database_url`, by default the setting's environment
    variable; unset: SQLite in `data_dir`, created if need be), so logins and tokens can
    be made before the gateway first runs, and while it runs."""
    from . import config
    from .store import open_store

    url = config.value("database_url") if database_url is None else database_url
    return open_store(data_dir, url, instance="siaga-cli")
