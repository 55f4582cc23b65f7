"""Dispatcher actions and the nearest available units (/api/v1)."""

from fastapi import APIRouter, Query, Response
from pydantic import Field

from .. import nearest as ranking
from ..centre import local_time
from ..errors import BadRequest, Conflict
from ..pipeline import Action
from .params import INCIDENT_KINDS, TEXT, UNIT_ID, IncidentKind, Integer, Strict, UnitKind


class AssignIn(Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    kind: IncidentKind
    note: str = Field("", max_length=500, pattern=TEXT)
    override_reason: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        pattern=TEXT,
        description="assign a unit that is not available: the dispatcher's confirmed reason (recorded)",
    )


class StatusIn(Strict):
    key: Integer = Field(ge=0, le=9)
    reason: str = Field(min_length=1, max_length=500, pattern=TEXT)


class ReasonIn(Strict):
    reason: str = Field("", max_length=500, pattern=TEXT)


def router(gw, registered, unit_json, user_of):
    r = APIRouter(prefix="/api/v1")

    def run(unit_id, action, user, **kw):
        registered(unit_id)
        action_id, _ = gw.ingest.submit(Action(unit_id, action, gw.clock(), user, **kw))
        return {"action_id": action_id, "unit": unit_json(gw.pipeline.registry[unit_id])}

    def in_service(unit_id, what):
        """409 `decommissioned` for a unit out of the fleet: it cannot be assigned, nor
        given a status or a lock. Releasing it and ending its emergency stay allowed, to
        tidy up after it. Returns the unit's registry row."""
        row = registered(unit_id)
        at = row.get("decommissioned_at")
        if at is not None:
            raise Conflict(
                f"{unit_id} is decommissioned (since {local_time(at)}): it cannot be {what};"
                f" `siaga unit enable {unit_id}` puts it back in service",
                "decommissioned",
            )
        return row

    @r.post("/units/{unit_id}/assign")
    def assign(body: AssignIn, user: str = user_of(), unit_id: str = UNIT_ID):
        """Assign the unit to an incident; it is `assigned` until its crew presses 3. A
        unit that is not available is refused (409, `not_available`) unless the body's
        `override_reason` confirms it (recorded with the assignment); a decommissioned
        unit always (409, `decommissioned`)."""
        position = unit_json(in_service(unit_id, "assigned"))["position"]
        graph, _ = gw.roads.current()
        estimate = ranking.estimate(graph, (body.lat, body.lon), position)
        done = run(  # availability is checked where the action is applied: under the unit's lock
            unit_id,
            "assign",
            user,
            incident=body.model_dump(exclude={"override_reason"}),
            estimate=estimate,
            reason=body.override_reason or "",
            only_if_available=not body.override_reason,
        )
        return done | {"estimate": estimate}

    @r.post("/units/{unit_id}/release")
    def release(body: ReasonIn | None = None, user: str = user_of(), unit_id: str = UNIT_ID):
        return run(unit_id, "release", user, reason=body.reason if body else "")

    @r.post("/units/{unit_id}/status")
    def set_status(body: StatusIn, user: str = user_of(), unit_id: str = UNIT_ID):
        """Set a unit's status for its crew, with a reason."""
        in_service(unit_id, "given a status")
        status = gw.pipeline.scheme_for(unit_id).get(body.key)
        if status is None or not status.settable:
            raise BadRequest(f"key {body.key} is not a status a dispatcher can set")
        return run(unit_id, "status", user, key=body.key, reason=body.reason)

    @r.post("/units/{unit_id}/lock")
    def lock(body: ReasonIn | None = None, user: str = user_of(), unit_id: str = UNIT_ID):
        """While locked, crew presses are recorded and shown but do not change the status."""
        in_service(unit_id, "locked")
        return run(unit_id, "lock", user, reason=body.reason if body else "")

    @r.post("/units/{unit_id}/unlock")
    def unlock(body: ReasonIn | None = None, user: str = user_of(), unit_id: str = UNIT_ID):
        return run(unit_id, "unlock", user, reason=body.reason if body else "")

    @r.post("/units/{unit_id}/clear-emergency")
    def clear_emergency(body: ReasonIn | None = None, user: str = user_of(), unit_id: str = UNIT_ID):
        """Only this clears an emergency."""
        return run(unit_id, "clear_emergency", user, reason=body.reason if body else "")

    @r.post("/units/{unit_id}/decommission")
    def decommission(body: ReasonIn | None = None, user: str = user_of(), unit_id: str = UNIT_ID):
        """The unit leaves the fleet: out of service, never offered, assigned, given a
        status or locked (409); its history stays, and the gateway forgets its message
        counters. `siaga unit decommission` does this and refuses it on the broker."""
        registered(unit_id)
        return run(unit_id, "decommission", user, reason=body.reason if body else "")

    @r.post("/units/{unit_id}/enable")
    def enable(body: ReasonIn | None = None, user: str = user_of(), unit_id: str = UNIT_ID):
        """A decommissioned unit is back in the fleet (`siaga unit enable`)."""
        registered(unit_id)
        return run(unit_id, "enable", user, reason=body.reason if body else "")

    @r.post("/units/{unit_id}/ack-emergency")
    def ack_emergency(user: str = user_of(), unit_id: str = UNIT_ID):
        """A dispatcher has seen the emergency: every dispatcher's alarm stops. The
        emergency goes on until it is cleared."""
        if unit_json(registered(unit_id))["emergency"] is None:
            raise BadRequest(f"{unit_id} has no emergency to acknowledge", "no_emergency")
        return run(unit_id, "ack_emergency", user)

    @r.get("/nearest")
    def nearest(
        response: Response,
        lat: float = Query(ge=-90, le=90),
        lon: float = Query(ge=-180, le=180),
        incident_kind: IncidentKind | None = None,
        kind: UnitKind | None = None,
        limit: int = Query(5, ge=1, le=100),
        route: bool = Query(False, description="give each candidate its route (GeoJSON LineString)"),
    ):
        """Available units nearest to a point: by drive time over the imported road map
        (docs/roads.md), each with `eta_min` and `road_m`; by straight-line distance when
        no map is imported or the point is off its roads. Each candidate says its
        `method` ("road" or "straight"), and so does the header X-Nearest-Method for the
        whole answer (X-Nearest-Why says why it is straight). `distance_m` is always the
        straight line, with the age of the position it is measured from."""
        kinds = (kind,) if kind else INCIDENT_KINDS.get(incident_kind or "other")
        now = gw.clock()
        out = []
        for row in gw.pipeline.registry.values():
            if row["kind"] not in kinds:
                continue
            u = unit_json(row, now)  # a decommissioned unit is out of service: never offered
            if u["availability"] == "available" and u["position"] is not None:
                out.append(u)
        graph, why = gw.roads.current()
        method, why, ranked = ranking.rank(graph, why, (lat, lon), out, routes=route)
        response.headers["X-Nearest-Method"] = method
        if why:  # a header is printable ASCII: the reason may name a path of any characters
            response.headers["X-Nearest-Why"] = "".join(c if " " <= c <= "~" else "?" for c in why)[:300]
        return ranked[:limit]

    return r
