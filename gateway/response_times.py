"""Response times of assignments, from the crew's presses: assigned → en route
(turnout), en route → on scene (travel), on scene → transporting, transporting → at
hospital. Pure functions over rows from the store."""

import statistics

from .centre import local_day

# interval name: (from milestone, to milestone); a milestone is a crew key or "assigned"
INTERVALS = {
    "turnout": ("assigned", 3),
    "travel": (3, 4),
    "on_scene": (4, 7),
    "transport": (7, 8),
}


# Estimated against actual travel: the drive time the gateway gave at assignment (by road,
# gateway/nearest.py) and travel minus it (positive: slower than estimated).
COMPARED = ("estimated_travel", "travel_minus_estimate")

CLOCK_SKEW = 2.0  # s a unit's clock may run behind the gateway's (see availability)


def milestones(assigned_at, presses, until):
    """The first press of each mission key after the one before it, up to `until`."""
    out = {"assigned": assigned_at}
    last = assigned_at - CLOCK_SKEW
    for key in (3, 4, 7, 8):
        hits = (p["pressed_at"] for p in presses if p["key"] == key and last <= p["pressed_at"] < until)
        t = next(hits, None)
        if t is None:
            continue
        out[key] = last = t
    return out


def assignment_times(assignment, presses, until):
    """One assignment with its milestones and intervals (seconds, None when missing)."""
    ms = milestones(assignment["t"], presses, until)
    intervals = {
        name: (max(0.0, ms[b] - ms[a]) if a in ms and b in ms else None) for name, (a, b) in INTERVALS.items()
    }
    estimate = assignment.get("eta_s")
    travel = intervals["travel"]
    return {
        "assignment_id": assignment["id"],
        "unit_id": assignment["unit_id"],
        "assigned_at": assignment["t"],
        "assigned_by": assignment.get("user"),
        "override_reason": assignment.get("reason") or None,  # assigned though not available
        "incident": {
            "lat": assignment["incident_lat"],
            "lon": assignment["incident_lon"],
            "kind": assignment["incident_kind"],
            "note": assignment["incident_note"],
        },
        "en_route_at": ms.get(3),
        "on_scene_at": ms.get(4),
        "transporting_at": ms.get(7),
        "at_destination_at": ms.get(8),
        **intervals,
        "estimated_travel": estimate,
        "estimate_method": assignment.get("eta_method"),
        "estimated_road_m": assignment.get("road_m"),
        "travel_minus_estimate": travel - estimate if travel is not None and estimate is not None else None,
    }


def per_assignment(assignments, presses_by_unit, ends_by_unit, now):
    """Every assignment's times; an assignment ends at the unit's next assign or
    release, or now."""
    out = []
    for a in assignments:
        ends = [t for t in ends_by_unit.get(a["unit_id"], []) if t > a["t"]]
        out.append(assignment_times(a, presses_by_unit.get(a["unit_id"], []), min(ends, default=now)))
    return out


def _stats(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return {"count": 0, "median": None, "p90": None, "max": None}
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return {"count": len(values), "median": statistics.median(values), "p90": p90, "max": values[-1]}


def summary(rows, group):
    """Per unit (`group="unit"`) or per day in WIB (`group="day"`): count, median, p90
    and max of each interval, of the estimated travel and of travel minus estimate."""
    key = (lambda r: r["unit_id"]) if group == "unit" else (lambda r: local_day(r["assigned_at"]))
    groups = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return [
        {
            group: name,
            "assignments": len(items),
            **{i: _stats(r[i] for r in items) for i in (*INTERVALS, *COMPARED)},
        }
        for name, items in sorted(groups.items())
    ]
