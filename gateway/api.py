"""The HTTP API under /api/v1 (FastAPI; OpenAPI at /api/v1/openapi.json).

Every error leaves as one JSON body: {"error": {"code": ..., "message": ...}}.
"""

import asyncio
import json
import time

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from . import __version__, api_dispatch, api_reports, auth, protocol, store, web
from .errors import ApiError, BadRequest, NotFound

KINDS = ("ambulance", "fire_truck", "rescue", "police", "other")


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

    def unit_json(row, now=None):
        view = gw.pipeline.view(row["unit_id"], gw.clock() if now is None else now)
        return {
            "unit_id": row["unit_id"],
            "callsign": row["callsign"],
            "kind": row["kind"],
            "agency": row["agency"],
            **{k: v for k, v in view.items() if k != "unit_id"},
        }

    def registered(unit_id):
        row = gw.pipeline.registry.get(unit_id) or gw.store.unit(unit_id)
        if row is None:
            raise NotFound(f"no unit {unit_id!r} is registered")
        return row

    app.include_router(auth.router(guard))
    app.include_router(api_dispatch.router(gw, registered, unit_json, user_of))
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
        out = [unit_json(r) for r in rows if kind in (None, r["kind"])]
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

        async def events():
            checked = time.monotonic()
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
                    yield ": keep-alive\n\n" if view is None else f"event: unit\ndata: {json.dumps(view)}\n\n"
            finally:
                gw.hub.unsubscribe(sub)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    web.mount(app, gw)  # the dispatcher's map at /
    return app
