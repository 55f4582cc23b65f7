"""What the gateway knows of its centre, stated once: the kinds of unit, the kinds of
incident with the kinds of unit that fit each (best first), and the time zone times are
shown in. The API checks against them, the CLI offers them, and the map gets them from
/api/v1/map-config."""

import time

UNIT_KINDS = ("ambulance", "fire_truck", "rescue", "police", "other")

INCIDENT_KINDS = {
    "fire": ("fire_truck", "rescue"),
    "traffic_accident": ("ambulance", "rescue", "fire_truck", "police"),
    "medical": ("ambulance",),
    "security": ("police",),
    "other": ("ambulance", "fire_truck", "rescue", "police", "other"),
}

# Times are shown in the centre's zone (docs/protocol.md: UTC on the wire).
ZONE_NAME, ZONE_OFFSET_S = "WIB", 7 * 3600


def local_time(ts, fmt="%Y-%m-%d %H:%M"):
    """Unix seconds as the centre's time, with the zone's name: "2026-12-05 10:15 WIB"."""
    return time.strftime(fmt, time.gmtime(ts + ZONE_OFFSET_S)) + " " + ZONE_NAME


def local_day(ts):
    return time.strftime("%Y-%m-%d", time.gmtime(ts + ZONE_OFFSET_S))
