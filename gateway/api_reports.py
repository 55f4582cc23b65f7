"""History for analysis: tracks as GeoJSON, response times per assignment (/api/v1)."""

import time
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query

from . import response_times, store
from .errors import BadRequest


def parse_time(value, default):
    """Unix seconds or ISO 8601 (UTC unless it says otherwise)."""
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{value!r} is not a time: give Unix seconds or ISO 8601") from None
    if dt.tzinfo is None:
        raise BadRequest(f"{value!r} has no time zone: add Z or +07:00") from None
    return dt.timestamp()


def router(gw, registered, reader):
    r = APIRouter(prefix="/api/v1")

    @r.get("/units/{unit_id}/track")
    def track(
        unit_id: str,
        since: str | None = Query(None, alias="from"),
        until: str | None = Query(None, alias="to"),
    ):
        """The unit's positions as a GeoJSON LineString (default: the last hour)."""
        registered(unit_id)
        end = parse_time(until, time.time())
        start = parse_time(since, end - 3600)
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
            rows, store.crew_presses(reader, units, first), store.assignment_ends(reader, units)
        )

    @r.get("/assignments")
    def assignments(
        unit_id: str | None = None,
        since: str | None = Query(None, alias="from"),
        until: str | None = Query(None, alias="to"),
    ):
        """Every assignment with its milestones and response times, in seconds."""
        if unit_id is not None:
            registered(unit_id)
        return _times(unit_id, parse_time(since, 0), parse_time(until, time.time() + 1))

    @r.get("/response-times")
    def summary(
        group: Literal["unit", "day"] = "unit",
        since: str | None = Query(None, alias="from"),
        until: str | None = Query(None, alias="to"),
    ):
        """Per unit or per day (WIB): count, median, 90th percentile and max of turnout,
        travel, on scene and transport times, in seconds."""
        rows = _times(None, parse_time(since, 0), parse_time(until, time.time() + 1))
        return response_times.summary(rows, group)

    return r
