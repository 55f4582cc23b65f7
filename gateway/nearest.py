"""Ranking units for an incident: by drive time over the road graph when there is one
and the incident is on it (method "road"), else by straight-line distance (method
"straight", and why). Pure: the graph, the incident and the candidates in, a ranking out.

A candidate is a unit as the API shows it, with its `position`. Each comes back with
`distance_m` (straight line), `eta_min` and `road_m` (null when not known by road), and
`method`: how it was ranked. Units the roads do not reach (off the roads, or beyond the
search's limit) follow the reachable ones, by straight-line distance.
"""

from . import availability
from .roads import SNAP_M, drive_times

ROAD, STRAIGHT = "road", "straight"
OFF_ROAD = "the incident is more than %.0f m from any road of the imported map"


def rank(graph, why, incident, candidates, routes=False, snap_m=SNAP_M):
    """(method, why, candidates ranked). `graph` None: straight, for reason `why`."""
    lat, lon = incident
    for u in candidates:
        pos = u["position"]
        u["distance_m"] = round(availability.distance_m(lat, lon, pos["lat"], pos["lon"]), 1)
        u.update(eta_min=None, road_m=None, method=STRAIGHT)
    if graph is not None:
        units = {i: (u["position"]["lat"], u["position"]["lon"]) for i, u in enumerate(candidates)}
        times = drive_times(graph, incident, units, set(units) if routes else (), snap_m)
        if times is not None:
            return ROAD, None, _by_road(candidates, times, incident, routes)
        why = OFF_ROAD % snap_m
    return STRAIGHT, why, sorted(candidates, key=lambda u: u["distance_m"])


def _by_road(candidates, times, incident, routes):
    for i, u in enumerate(candidates):
        t = times[i]
        if t is not None:
            u.update(eta_min=round(t["seconds"] / 60, 1), road_m=round(t["road_m"]), method=ROAD)
        if routes:
            u["route"] = line(t["route"] if t else [[u["position"]["lat"], u["position"]["lon"]], incident])
    reached = sorted((i for i in times if times[i]), key=lambda i: times[i]["seconds"])
    rest = sorted((i for i in times if not times[i]), key=lambda i: candidates[i]["distance_m"])
    return [candidates[i] for i in reached + rest]


def line(latlons):
    """A GeoJSON LineString ([lon, lat] pairs) from [lat, lon] points."""
    return {"type": "LineString", "coordinates": [[round(lo, 7), round(la, 7)] for la, lo in latlons]}


def estimate(graph, incident, position):
    """What the gateway records with an assignment: {"eta_s", "road_m", "method"}; eta
    and road metres None when the graph cannot say."""
    if graph is None or position is None:
        return {"eta_s": None, "road_m": None, "method": STRAIGHT}
    times = drive_times(graph, incident, {0: (position["lat"], position["lon"])})
    t = times and times[0]
    if not t:
        return {"eta_s": None, "road_m": None, "method": STRAIGHT}
    return {"eta_s": round(t["seconds"], 1), "road_m": round(t["road_m"]), "method": ROAD}
