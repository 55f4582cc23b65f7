"""History for analysis: tracks as GeoJSON, response times per assignment (/api/v1)."""

from datetime import datetime
from typing import Literal

from fastapi import APIRouter

from .. import response_times, store
from ..errors import BadRequest
from .params import FROM, TO, UNIT_ID, UNIT_ID_QUERY, Time


def seconds(value, default):
    """A time parameter (params.Time) as Unix seconds; `default` when it is not given."""
    if value is None:
        return default
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise BadRequest(f"{value.isoformat()} has no time zone: add Z or +07:00")
        return value.timestamp()
    return float(value)


def router(gw, registered, reader):
    r = APIRouter(prefix="/api/v1")

    @r.get("/units/{unit_id}/track")
    def track(
        unit_id: str = UNIT_ID,
        since: Time | None = FROM,
        until: Time | None = TO,
    ):
        """The unit's positions as a GeoJSON LineString (default: the last hour)."""
        registered(unit_id)
        end = seconds(until, gw.clock())
        start = seconds(since, end - 3600)
        if start > end:
            raise BadRequest("from is after to")
        rows = store.track(reader, unit_id, start, end)
        return {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "geometry": {
                        "type": "LineString",
                        "coordinates": [[lon, lat] for _, lat, lon, _, _ in rows],
                    },
                    "properties": {
                        "unit_id": unit_id,
                        "from": start,
                        "to": end,
                        "points": len(rows),
                        "times": [t for t, *_ in rows],
                        "speeds": [s for _, _, _, s, _ in rows],
                    },
                }
            ],
        }

    def _times(unit_id, since, until):
        rows = store.assignments(reader, unit_id, since, until)
        units = sorted({a["unit_id"] for a in rows})
        if not units:
            return []
        first = min(a["t"] for a in rows) - response_times.CLOCK_SKEW
        return response_times.per_assignment(
            rows, store.crew_presses(reader, units, first), store.assignment_ends(reader, units), gw.clock()
        )

    @r.get("/assignments")
    def assignments(
        unit_id: str | None = UNIT_ID_QUERY,
        since: Time | None = FROM,
        until: Time | None = TO,
    ):
        """Every assignment with its milestones and response times, in seconds."""
        if unit_id is not None:
            registered(unit_id)
        return _times(unit_id, seconds(since, 0), seconds(until, gw.clock() + 1))

    @r.get("/response-times")
    def summary(
        group: Literal["unit", "day"] = "unit",
        since: Time | None = FROM,
        until: Time | None = TO,
    ):
        """Per unit or per day (WIB): count, median, 90th percentile and max of turnout,
        travel, on scene and transport times, in seconds."""
        rows = _times(None, seconds(since, 0), seconds(until, gw.clock() + 1))
        return response_times.summary(rows, group)

    return r
