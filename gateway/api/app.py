"""The HTTP API under /api/v1 (FastAPI; OpenAPI at /api/v1/openapi.json).

Every error leaves as one JSON body: {"error": {"code": ..., "message": ...}}.
"""

import asyncio
import json
import time
from typing import Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from .. import __version__, auth, protocol, store, unit_settings
from ..errors import ApiError, BadRequest, NotFound
from ..pipeline import Action
from . import basemap, dispatch, logins, page, reports
from .limits import BodyLimit
from .openapi import document_errors
from .params import TEXT, UNIT_ID, Availability, Strict, UnitKind, known_query, settings_model


def unit_model(schemes):
    """A registry entry as POST /units takes it; `schemes`: the status schemes' names."""

    class UnitIn(Strict):
        unit_id: str = Field(pattern=protocol.UNIT_ID.pattern)
        kind: UnitKind = "other"
        callsign: str = Field("", max_length=32, pattern=TEXT)
        agency: str = Field("", max_length=64, pattern=TEXT)
        home_name: str | None = Field(None, max_length=100, pattern=TEXT)
        home_lat: float | None = Field(None, ge=-90, le=90)
        home_lon: float | None = Field(None, ge=-180, le=180)
        status_scheme: Literal[tuple(sorted(schemes))] = "default"

    return UnitIn


class SettingsIn(Strict):
    values: settings_model()


def user_of():
    """Who acts: the logged-in user or the API token's name (api/logins.py)."""
    return Depends(logins.acting_user)


def with_registry(row, view):
    """A unit as the API shows it: its registry entry and its view (which says whether it
    is decommissioned: Pipeline.view)."""
    return {
        "unit_id": row["unit_id"],
        "callsign": row.get("callsign"),
        "kind": row.get("kind"),
        "agency": row.get("agency"),
        "status_scheme": row.get("status_scheme") or "default",
        **{k: v for k, v in view.items() if k != "unit_id"},
    }


def with_clock(device, trust):
    """The device with how far the unit's clock is off: its latest telemetry's send time
    against its arrival (telemetry is never queued by the broker, so the gap is the
    clock's, plus a moment's travel). `clock_off` flags more than the tolerance."""
    tele = device and device.get("telemetry")
    if not tele or tele.get("sent") is None:
        return device
    offset = round(tele["sent"] - tele["received_at"], 1)
    return dict(device, clock_offset_s=offset, clock_off=abs(offset) > trust.max_clock_ahead)


def sse(unit):
    return f"event: unit\ndata: {json.dumps(unit)}\n\n"


def allowed_methods(app, scope):
    """The methods some route of `app` takes at the request's path."""
    methods = set()
    for route in app.routes:
        match, _ = route.matches(dict(scope, method="GET"))
        if match != Match.NONE and getattr(route, "methods", None):
            for method in ("GET", "POST", "PUT", "DELETE"):
                if route.matches(dict(scope, method=method))[0] == Match.FULL:
                    methods.add(method)
    return sorted(methods)


def _why(error):
    if error["type"] == "extra_forbidden":
        return "not a field this takes"
    return error["msg"][:200]


def error_body(status, code, message):
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _install_errors(app):
    @app.exception_handler(ApiError)
    async def api_error(request, exc):
        reply = error_body(exc.status, exc.code, exc.message)
        reply.headers.update(getattr(exc, "headers", None) or {})
        return reply

    @app.exception_handler(RequestValidationError)
    async def bad_params(request, exc):
        parts = ["/".join(str(p) for p in e["loc"])[:80] + ": " + _why(e) for e in exc.errors()[:10]]
        return error_body(400, "bad_request", "; ".join(parts))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        reply = error_body(exc.status_code, code, str(exc.detail))
        reply.headers.update(exc.headers or {})
        if exc.status_code == 405:  # every method the path takes, not only its first route's
            reply.headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope))
        return reply


def create_app(gw):
    """`gw` is the running gateway (gateway.service.Gateway)."""
    guard = logins.Guard(gw.store, gw.settings.get("session_lifetime", auth.SESSION_LIFETIME))
    app = FastAPI(
        # every route: logins.ROUTES, default deny; only the query parameters it takes
        dependencies=[Depends(guard.authorize), Depends(known_query)],
        title="Siaga gateway",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    _install_errors(app)
    reader = gw.store.reader()

    def unit_json(row, now=None):
        return with_registry(row, gw.pipeline.view(row["unit_id"], gw.clock() if now is None else now))

    def registered(unit_id):
        row = gw.pipeline.registry.get(unit_id) or gw.store.unit(unit_id)
        if row is None:
            raise NotFound(f"no unit {unit_id!r} is registered")
        return row

    app.include_router(logins.router(guard))
    app.include_router(dispatch.router(gw, registered, unit_json, user_of))
    app.include_router(reports.router(gw, registered, reader))
    app.include_router(basemap.router(gw))

    @app.get("/api/v1/health", responses={503: {"description": "degraded: `problems` says why"}})
    def health():
        """Whether the gateway takes in what units send: 200 ok, or 503 degraded when
        ingest has stalled (nothing committed for `ingest_stall_after` s while messages
        wait), the broker or the database is unreachable; `problems` says which. With
        several gateways on one database: `role` leader or standby, `leader` (who holds
        the lock), `notifications` (the last change seen from the others) and
        `database` (which server answers, and whether it is the primary)."""
        ingest, role = gw.ingest.health(), gw.role()
        problems = ingest["problems"]
        if role["database"].get("reachable") is False:
            problems.append(f"database unreachable: {role['database'].get('error')}")
        try:
            quarantined = store.quarantine_counts(reader)
        except gw.store.faults:
            quarantined = None
        body = {
            "status": "degraded" if problems else "ok",
            "version": __version__,
            **ingest,
            **role,  # leader or standby, who leads, the database, the notifications seen
            "units": len(gw.pipeline.registry),
            "accepted": gw.pipeline.accepted,  # since this start
            "duplicates": gw.pipeline.duplicates,  # since this start: stored before, changed nothing
            "refused": dict(gw.pipeline.refused),  # since this start, by reason
            "quarantined": quarantined,  # kept in quarantine, by reason
        }
        return JSONResponse(body, status_code=503 if problems else 200)

    @app.get("/api/v1/units")
    def units(kind: UnitKind | None = None, availability: Availability | None = None):
        rows = sorted(gw.pipeline.registry.values(), key=lambda r: r["unit_id"])
        out = [unit_json(r) for r in rows if kind in (None, r["kind"])]
        return [u for u in out if availability in (None, u["availability"])]

    UnitIn = unit_model(gw.pipeline.schemes)  # noqa: N806 (a class)

    @app.post("/api/v1/units", status_code=201)
    def register(unit: UnitIn):
        row = gw.store.upsert_unit(unit.model_dump())
        gw.pipeline.refresh_registry()
        return unit_json(row)

    @app.get("/api/v1/units/{unit_id}")
    def unit(request: Request, unit_id: str = UNIT_ID):
        """One unit; with the device permission (technician, supervisor) also its device
        (with how far its clock is off) and the settings last pushed to it."""
        out = unit_json(registered(unit_id))
        if logins.may(request, "device"):
            out["device"] = with_clock(store.device(reader, unit_id), gw.pipeline.trust)
            out["settings_pushed"] = gw.store.last_push(unit_id)
        return out

    def push(unit_id, values, remove=()):
        version, merged = gw.store.push_settings(unit_id, values, remove)
        gw.ingest.send_down(protocol.down_topic(unit_id), protocol.encode_config(version, merged))
        return {"unit_id": unit_id, "version": version, "values": merged}

    @app.put("/api/v1/units/{unit_id}/settings", status_code=202)
    def push_settings(settings: SettingsIn, unit_id: str = UNIT_ID):
        """Push settings to a unit over its downlink: only settings a unit takes, each in
        its range (gateway/unit_settings.py), or 400. The unit is sent the whole set
        pushed so far, keeps it, and reports the version in force (`device.cfg`) at its
        next birth."""
        registered(unit_id)
        values = settings.values.model_dump(exclude_unset=True)
        if not values:
            raise BadRequest("values is empty: name at least one setting")
        return push(unit_id, unit_settings.check(values))

    @app.delete("/api/v1/units/{unit_id}/settings/{name}", status_code=202)
    def remove_setting(unit_id: str = UNIT_ID, name: str = Path(pattern="^[a-z0-9_]{1,64}$")):
        """Take one pushed setting back: the unit returns to its own value for it (its
        config.json, or the firmware's default)."""
        registered(unit_id)
        last = gw.store.last_push(unit_id)
        if last is None or name not in last["values"]:
            raise NotFound(f"{name!r} was not pushed to {unit_id}")
        return push(unit_id, {}, (name,))

    @app.post("/api/v1/units/{unit_id}/reset-counters")
    def reset_counters(user: str = user_of(), unit_id: str = UNIT_ID):
        """Forget which boots and message numbers the unit has used, and its link state:
        its next birth counts whatever boot it names. `siaga unit rotate`, `move` and
        `decommission` do this; for a unit whose counters were forged ahead (boot_jump,
        seq_jump in quarantine) or that was given new hardware."""
        registered(unit_id)
        action_id, _ = gw.ingest.submit(Action(unit_id, "reset_ids", gw.clock(), user))
        return {"action_id": action_id, "unit": unit_json(gw.pipeline.registry[unit_id])}

    @app.get("/api/v1/units/{unit_id}/statuses")
    def statuses(unit_id: str = UNIT_ID, limit: int = Query(100, ge=1, le=10000)):
        registered(unit_id)
        scheme = gw.pipeline.scheme_for(unit_id)
        rows = store.statuses(reader, unit_id, limit)
        for r in rows:
            s = scheme.get(r["key"])
            r["label"] = s.label_id if s else None
        return rows

    @app.get(
        "/api/v1/stream",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
    )
    async def stream(request: Request):
        sub = gw.hub.subscribe()

        async def events():
            checked, told = time.monotonic(), 0
            try:
                yield "retry: 1000\n\n"
                while True:
                    try:
                        view = await asyncio.wait_for(sub.queue.get(), guard.recheck_s)
                    except TimeoutError:
                        view = None
                    if time.monotonic() - checked >= guard.recheck_s:
                        if not await asyncio.to_thread(guard.still_valid, request):
                            return  # the session ended or the token was revoked
                        checked = time.monotonic()
                    if sub.dropped > told:  # it fell behind: the page reads all units again
                        told = sub.dropped
                        yield f"event: dropped\ndata: {json.dumps({'dropped': told})}\n\n"
                    if view is None:
                        yield ": keep-alive\n\n"
                    else:
                        row = gw.pipeline.registry.get(view["unit_id"]) or {"unit_id": view["unit_id"]}
                        yield sse(with_registry(row, view))
            finally:
                gw.hub.unsubscribe(sub)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    page.mount(app, gw)  # the dispatcher's map at /
    document_errors(app)
    app.add_middleware(BodyLimit)
    return app
