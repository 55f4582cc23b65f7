"""Logins over HTTP: the permission each route needs (ROUTES, default deny), enforced
by one app-level dependency (Guard.authorize), the session cookie and its CSRF header,
Bearer tokens, and the login, logout, me and users routes. Who a login, a session or a
token is, and what each role may, is gateway/auth.py.

- a browser: a session cookie (`siaga_session`) from POST /api/v1/login. A session
  lives `session_lifetime` seconds after its last request (sliding). Every POST, PUT,
  PATCH or DELETE it makes must carry the session's CSRF token in `X-CSRF-Token`.
- another system: `Authorization: Bearer TOKEN`, a token from `siaga token create`.
  Tokens need no CSRF token: a browser never sends them by itself.
"""

import hmac
import time
from typing import Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from .. import auth
from ..errors import CsrfRefused, Forbidden, Unauthenticated
from .params import TEXT

PUBLIC = "public"  # anyone, signed in or not
SIGNED_IN = "signed in"  # any principal, whatever its role
UNIT = "/api/v1/units/{unit_id}"
ROUTES = {
    ("GET", "/"): PUBLIC,  # the dispatcher's page; it asks for a login itself
    ("GET", "/api/v1/health"): PUBLIC,
    ("GET", "/api/v1/map-config"): "view",  # the map's tile source and status labels
    ("GET", "/api/v1/map/basemap.pmtiles"): "view",  # the offline basemap (api/basemap.py)
    ("POST", "/api/v1/login"): PUBLIC,
    ("POST", "/api/v1/logout"): SIGNED_IN,
    ("GET", "/api/v1/me"): SIGNED_IN,
    ("GET", "/api/v1/units"): "view",
    ("POST", "/api/v1/units"): "units",
    ("GET", UNIT): "view",  # its `device` part only with the device permission
    ("PUT", UNIT + "/settings"): "units",
    ("DELETE", UNIT + "/settings/{name}"): "units",
    ("POST", UNIT + "/reset-counters"): "units",
    ("POST", UNIT + "/decommission"): "units",
    ("POST", UNIT + "/enable"): "units",
    ("GET", UNIT + "/statuses"): "view",
    ("GET", UNIT + "/track"): "view",
    ("POST", UNIT + "/assign"): "dispatch",
    ("POST", UNIT + "/release"): "dispatch",
    ("POST", UNIT + "/status"): "dispatch",
    ("POST", UNIT + "/clear-emergency"): "dispatch",
    ("POST", UNIT + "/ack-emergency"): "dispatch",
    ("POST", UNIT + "/lock"): "lock",
    ("POST", UNIT + "/unlock"): "lock",
    ("GET", "/api/v1/nearest"): "view",
    ("GET", "/api/v1/assignments"): "view",
    ("GET", "/api/v1/response-times"): "view",
    ("GET", "/api/v1/stream"): "view",
    ("GET", "/api/v1/users"): "users",
    ("POST", "/api/v1/users"): "users",
    ("POST", "/api/v1/users/{name}/disable"): "users",
}
# Served without a login and outside the table: the page's files and the API's docs.
PUBLIC_PREFIXES = ("/static/", "/vendor/", "/web/")
PUBLIC_PATHS = ("/api/v1/openapi.json", "/api/v1/docs", "/docs/oauth2-redirect")  # FastAPI's

COOKIE = "siaga_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def required(method, path):
    """The permission a route needs; None if it is not in the table (refused)."""
    method = "GET" if method == "HEAD" else method
    if method == "GET" and (path.startswith(PUBLIC_PREFIXES) or path in PUBLIC_PATHS):
        return PUBLIC
    return ROUTES.get((method, path))


class Guard:
    """The HTTP side: who a request comes from (auth.Logins), and whether it may (ROUTES)."""

    def __init__(self, store, lifetime=auth.SESSION_LIFETIME, clock=time.time):
        self.logins = auth.Logins(store, lifetime, clock)
        self.store, self.reader = store, self.logins.reader
        self.recheck_s = min(15.0, self.logins.lifetime / 2)  # how often a live stream re-checks its login

    # the app-level dependency
    async def authorize(self, request: Request):
        route = request.scope.get("route")
        path = getattr(route, "path_format", request.url.path)
        need = required(request.method, path)
        if need == PUBLIC:
            return
        principal = await run_in_threadpool(self.identify, request)  # the database: not on the loop
        if principal is None:
            raise Unauthenticated("log in (POST /api/v1/login) or send Authorization: Bearer TOKEN")
        if principal.via == "session" and request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
                raise CsrfRefused(f"{CSRF_HEADER} header missing or wrong: send the csrf of /api/v1/me")
        if need is None:
            raise Forbidden(f"{request.method} {path} is not open to any role")
        if need != SIGNED_IN and need not in principal.permissions:
            raise Forbidden(
                f"{request.method} {path} needs the {need} permission; you are a {principal.role}"
            )
        request.state.principal = principal

    def still_valid(self, request):
        """Whether a long response (the live stream) may go on: its session or token still
        holds. Does not extend the session: an open stream alone keeps no one logged in."""
        return self.identify(request, extend=False) is not None

    def identify(self, request, extend=True):
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return self.logins.by_token(token.strip())
        sid = request.cookies.get(COOKIE)
        return self.logins.by_session(sid, extend) if sid else None

    async def login(self, name, password, address=""):
        return await self.logins.login(name, password, address)

    def logout(self, request):
        sid = request.cookies.get(COOKIE)
        if sid:
            self.logins.logout(sid)


def principal_of(request):
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise Unauthenticated("log in (POST /api/v1/login) or send Authorization: Bearer TOKEN")
    return principal


def acting_user(request: Request) -> str:
    """The name recorded on a dispatcher's action: the authenticated user or token."""
    return principal_of(request).name


def may(request, permission):
    principal = getattr(request.state, "principal", None)
    return principal is not None and permission in principal.permissions


def me_json(principal):
    return {
        "user": principal.name,
        "role": principal.role,
        "permissions": sorted(principal.permissions),
        "csrf": principal.csrf,
    }


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    username: str = Field(max_length=64, pattern=TEXT)
    password: str = Field(max_length=1024)


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(pattern=auth.NAME.pattern, max_length=64)
    role: Literal[tuple(auth.ROLES)]
    password: str = Field(min_length=auth.MIN_PASSWORD, max_length=1024)


def router(guard):
    r = APIRouter(prefix="/api/v1")

    @r.post("/login")
    async def login(body: LoginIn, request: Request, response: Response):
        """Log in: sets the session cookie and returns the CSRF token for later changes."""
        address = request.client.host if request.client else ""
        principal, sid, csrf = await guard.login(body.username, body.password, address)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/")
        return {"user": principal.name, "role": principal.role, "csrf": csrf}

    @r.post("/logout")
    def logout(request: Request, response: Response):
        guard.logout(request)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return {"user": principal_of(request).name, "logged_out": True}

    @r.get("/me")
    def me(request: Request):
        """Who is asking, their role and permissions, and the session's CSRF token."""
        return me_json(principal_of(request))

    @r.get("/users")
    def list_users():
        return auth.users(guard.reader)

    @r.post("/users", status_code=201)
    def create_user(body: UserIn):
        with guard.store.atomic() as db:
            return auth.add_user(db, body.name, body.role, body.password)

    @r.post("/users/{name}/disable")
    def disable(name: str = Path(max_length=64, pattern=auth.NAME.pattern)):
        """The user can no longer log in; their open sessions end."""
        with guard.store.atomic() as db:
            return auth.disable_user(db, name)

    return r
