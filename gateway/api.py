"""The HTTP API under /api/v1 (FastAPI; OpenAPI at /api/v1/openapi.json).

Every error leaves as one JSON body: {"error": {"code": ..., "message": ...}}.
"""

import asyncio
import json
import math
import time

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from . import __version__, api_dispatch, api_reports, auth, availability, protocol, store, web
from .errors import ApiError, BadRequest, NotFound

KINDS = ("ambulance", "fire_truck", "rescue", "police", "other")
REGISTRY_POLL_S = 2.0  # how often a quiet live stream looks for units decommissioned or enabled


class UnitIn(BaseModel):
    unit_id: str = Field(pattern=protocol.UNIT_ID.pattern)
    kind: str = "other"
    callsign: str = ""
    agency: str = ""
    home_name: str | None = None
    home_lat: float | None = Field(None, ge=-90, le=90)
    home_lon: float | None = Field(None, ge=-180, le=180)
    status_scheme: str = "default"


class SettingsIn(BaseModel):
    values: dict[str, int | float | str | bool | list[int]]


def user_of():
    """Who acts: the logged-in user or the API token's name (gateway/auth.py)."""
    return Depends(auth.acting_user)


class Decommissioned:
    """Which units are decommissioned (store.decommissioned), read again from the
    database at most every `max_age` s, or now when asked for `fresh`: the live streams
    ask at every event, an API call wants what is true now."""

    def __init__(self, reader, max_age=1.0):
        self.reader = reader
        self.max_age = max_age
        self.units, self.read_at = {}, -math.inf

    def __call__(self, fresh=False):
        if fresh or time.monotonic() - self.read_at >= self.max_age:
            self.units = store.decommissioned(self.reader)
            self.read_at = time.monotonic()
        return self.units


def with_registry(row, view, gone):
    """A unit as the API shows it: its registry entry, its view, and whether it is
    decommissioned (`gone`: unit -> when)."""
    out = {
        "unit_id": row["unit_id"],
        "callsign": row.get("callsign"),
        "kind": row.get("kind"),
        "agency": row.get("agency"),
        "status_scheme": row.get("status_scheme") or "default",
        **{k: v for k, v in view.items() if k != "unit_id"},
    }
    return availability.decommissioned(out, gone.get(row["unit_id"]))


def sse(unit):
    return f"event: unit\ndata: {json.dumps(unit)}\n\n"


def error_body(status, code, message):
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _install_errors(app):
    @app.exception_handler(ApiError)
    async def api_error(request, exc):
        return error_body(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def bad_params(request, exc):
        parts = ["/".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors()]
        return error_body(400, "bad_request", "; ".join(parts))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        code = "not_found" if exc.status_code == 404 else "http_error"
        return error_body(exc.status_code, code, str(exc.detail))


def create_app(gw):
    """`gw` is the running gateway (gateway.service.Gateway)."""
    guard = auth.Auth(gw.store, gw.settings.get("session_lifetime", auth.SESSION_LIFETIME))
    app = FastAPI(
        dependencies=[Depends(guard.authorize)],  # every route: auth.ROUTES, default deny
        title="Siaga gateway",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    _install_errors(app)
    reader = gw.store.reader()
    decommissioned = Decommissioned(reader)

    def unit_json(row, now=None, gone=None):
        """`gone`: decommissioned units, when the caller has read them for many units."""
        view = gw.pipeline.view(row["unit_id"], gw.clock() if now is None else now)
        return with_registry(row, view, decommissioned(fresh=True) if gone is None else gone)

    def registered(unit_id):
        row = gw.pipeline.registry.get(unit_id) or gw.store.unit(unit_id)
        if row is None:
            raise NotFound(f"no unit {unit_id!r} is registered")
        return row

    app.include_router(auth.router(guard))
    app.include_router(api_dispatch.router(gw, registered, unit_json, user_of, decommissioned))
    app.include_router(api_reports.router(gw, registered, reader))

    @app.get("/api/v1/health")
    def health():
        return {
            "status": "ok",
            "version": __version__,
            "mqtt_connected": gw.ingest.connected.is_set(),
            "units": len(gw.pipeline.registry),
            "accepted": gw.pipeline.accepted,  # since this start
            "refused": dict(gw.pipeline.refused),  # since this start, by reason
            "quarantined": store.quarantine_counts(reader),  # kept in quarantine, by reason
        }

    @app.get("/api/v1/units")
    def units(kind: str | None = None, availability: str | None = None):
        rows = sorted(gw.pipeline.registry.values(), key=lambda r: r["unit_id"])
        gone = decommissioned(fresh=True)
        out = [unit_json(r, gone=gone) for r in rows if kind in (None, r["kind"])]
        return [u for u in out if availability in (None, u["availability"])]

    @app.post("/api/v1/units", status_code=201)
    def register(unit: UnitIn):
        if unit.kind not in KINDS:
            raise BadRequest(f"kind must be one of {', '.join(KINDS)}")
        if unit.status_scheme not in gw.pipeline.schemes:
            raise BadRequest(f"status_scheme must be one of {', '.join(sorted(gw.pipeline.schemes))}")
        row = gw.store.upsert_unit(unit.model_dump())
        gw.pipeline.refresh_registry()
        return unit_json(row)

    @app.get("/api/v1/units/{unit_id}")
    def unit(unit_id: str, request: Request):
        """One unit; with the device permission (technician, supervisor) also its device
        and the settings last pushed to it."""
        out = unit_json(registered(unit_id))
        if auth.may(request, "device"):
            out["device"] = store.device(reader, unit_id)
            out["settings_pushed"] = gw.store.last_push(unit_id)
        return out

    @app.put("/api/v1/units/{unit_id}/settings", status_code=202)
    def push_settings(unit_id: str, settings: SettingsIn):
        """Push settings to a unit over its downlink. The unit checks them, keeps them
        and reports the version in force (`device.cfg`) at its next birth."""
        registered(unit_id)
        if not settings.values:
            raise BadRequest("values is empty: name at least one setting")
        version, merged = gw.store.push_settings(unit_id, settings.values)
        gw.ingest.send_down(protocol.down_topic(unit_id), protocol.encode_config(version, merged))
        return {"unit_id": unit_id, "version": version, "values": merged}

    @app.get("/api/v1/units/{unit_id}/statuses")
    def statuses(unit_id: str, limit: int = Query(100, ge=1, le=10000)):
        registered(unit_id)
        scheme = gw.pipeline.scheme_for(unit_id)
        rows = store.statuses(reader, unit_id, limit)
        for r in rows:
            s = scheme.get(r["key"])
            r["label"] = s.label_id if s else None
        return rows

    @app.get("/api/v1/stream")
    async def stream(request: Request):
        sub = gw.hub.subscribe()

        def registry_changes(before, after):
            """Units decommissioned or enabled since `before`: `siaga unit` does it from
            its own process, so no event of the pipeline's says so."""
            changed = sorted(u for u in before.keys() | after.keys() if before.get(u) != after.get(u))
            rows = (gw.pipeline.registry.get(u) for u in changed)
            return [sse(unit_json(row, gone=after)) for row in rows if row]

        async def events():
            checked = time.monotonic()
            gone = decommissioned()
            try:
                yield "retry: 1000\n\n"
                while True:
                    try:
                        wait = min(guard.recheck_s, REGISTRY_POLL_S)
                        view = await asyncio.wait_for(sub.queue.get(), wait)
                    except TimeoutError:
                        view = None
                    if time.monotonic() - checked >= guard.recheck_s:
                        if not await asyncio.to_thread(guard.still_valid, request):
                            return  # the session ended or the token was revoked
                        checked = time.monotonic()
                    latest = decommissioned()
                    if latest is not gone:
                        before, gone = gone, latest
                        for event in registry_changes(before, gone):
                            yield event
                    if view is None:
                        yield ": keep-alive\n\n"
                    else:
                        row = gw.pipeline.registry.get(view["unit_id"]) or {"unit_id": view["unit_id"]}
                        yield sse(with_registry(row, view, gone))
            finally:
                gw.hub.unsubscribe(sub)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    web.mount(app, gw)  # the dispatcher's map at /
    return app
