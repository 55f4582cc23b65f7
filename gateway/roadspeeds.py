"""Which OSM ways a vehicle drives, in which direction, and how fast: the rules the road
graph (gateway/roads.py) is built with. Pure functions of a way's tags; no I/O but
`load_speeds`, which reads the centre's settings file.

Speeds are typical travel speeds in km/h, not limits: Indonesian towns (kawasan
perkotaan, limit 50 km/h, PM 111/2015) and the roads between them (limit 80, 100 on a
tol), with mixed traffic and motorbikes. Where a way has `maxspeed`, 0.8 × that is used
(OSRM's car profile makes the same reduction). An `emergency_factor` scales all speeds,
for a centre whose estimates run slow or fast against its crews' real times: compare
estimated and actual travel in the response-time report (docs/reporting.md), then set it.
"""

import json
import math
import re
import tomllib

from .errors import ConfigError

# class: (urban km/h, rural km/h). docs/roads.md has the same table.
SPEEDS = {
    "motorway": (70, 90),
    "motorway_link": (45, 55),
    "trunk": (45, 65),
    "trunk_link": (35, 45),
    "primary": (40, 60),
    "primary_link": (30, 40),
    "secondary": (35, 50),
    "secondary_link": (25, 35),
    "tertiary": (30, 45),
    "tertiary_link": (20, 30),
    "unclassified": (25, 40),
    "residential": (20, 30),
    "living_street": (10, 10),
    "service": (10, 15),
    "road": (20, 30),
}
MAXSPEED_FACTOR = 0.8
MAX_KMH = 200.0
MPH = 1.609344
# Implicit limits written as maxspeed=ID:zone (Indonesia's PM 111/2015).
ZONE_LIMITS = {"ID:urban": 50, "ID:rural": 80, "ID:motorway": 100, "ID:living_street": 20}
NOT_DRIVEN = {"no", "agricultural", "forestry"}  # access values that keep an ambulance out
SETTINGS_KEYS = {"urban", "rural", "emergency_factor"}


class Speeds:
    """km/h by class, urban and rural, with the emergency factor applied."""

    def __init__(self, urban=None, rural=None, emergency_factor=1.0):
        self.urban = {c: u for c, (u, _) in SPEEDS.items()} | (urban or {})
        self.rural = {c: r for c, (_, r) in SPEEDS.items()} | (rural or {})
        self.emergency_factor = emergency_factor

    def kmh(self, tags, urban=True):
        """Travel speed on the way, km/h: 0.8 × its maxspeed, else its class's."""
        limit = parse_maxspeed(tags.get("maxspeed"))
        if limit is not None:
            base = limit * MAXSPEED_FACTOR
        else:
            base = (self.urban if urban else self.rural)[tags["highway"]]
        return min(MAX_KMH, base * self.emergency_factor)


def parse_maxspeed(value):
    """km/h from an OSM maxspeed: "50", "50 km/h", "50kmh", "30 mph", "ID:urban";
    None for anything else ("none", "signals", "walk", garbage, 0, > 200)."""
    if not value or not isinstance(value, str) or len(value) > 32:
        return None
    if value in ZONE_LIMITS:
        return float(ZONE_LIMITS[value])
    m = re.fullmatch(r"\s*(\d{1,3}(?:\.\d+)?)\s*(km/h|kmh|kph|mph)?\s*", value)
    if not m:
        return None
    kmh = float(m.group(1)) * (MPH if m.group(2) == "mph" else 1.0)
    return kmh if 0 < kmh <= MAX_KMH else None


def drivable(tags):
    """Whether a vehicle drives this way: a road class we know, not an area, no access."""
    if tags.get("highway") not in SPEEDS or tags.get("area") == "yes":
        return False
    for key in ("access", "motor_vehicle", "motorcar", "vehicle"):
        if tags.get(key) in NOT_DRIVEN:
            return False
    return True


def oneway(tags):
    """1: only along the way's node order; -1: only against it; 0: both ways.
    oneway=yes|true|1 and -1|reverse; a roundabout and a motorway are one-way unless
    oneway=no says otherwise."""
    value = tags.get("oneway")
    if value in ("yes", "true", "1"):
        return 1
    if value in ("-1", "reverse"):
        return -1
    if value in ("no", "false", "0"):
        return 0
    if tags.get("junction") in ("roundabout", "circular") or tags.get("highway") == "motorway":
        return 1
    return 0


def load_speeds(path):
    """The settings file (TOML, or JSON by its .json suffix); a missing file is the
    defaults. Unknown keys or classes, and speeds that are not positive numbers up to
    200 km/h, are refused with a ConfigError naming them.

        emergency_factor = 1.1
        [urban]
        primary = 45
        [rural]
        residential = 25
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Speeds()
    except OSError as e:
        raise ConfigError(f"road speeds {path}: {e.strerror}") from None
    return speeds_from(_parse(path, raw), path)


def _parse(path, raw):
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, ValueError) as e:  # tomllib's and json's errors are ValueErrors
        fmt = "JSON" if path.suffix == ".json" else "TOML"
        raise ConfigError(f"road speeds {path}: not valid {fmt}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"road speeds {path}: not a table of settings")
    return data


def speeds_from(data, source="settings"):
    unknown = sorted(set(data) - SETTINGS_KEYS)
    if unknown:
        raise ConfigError(
            f"road speeds {source}: unknown setting {unknown[0]!r} (takes {sorted(SETTINGS_KEYS)})"
        )
    factor = _positive(data.get("emergency_factor", 1.0), f"{source}: emergency_factor", hi=3.0)
    tables = {area: _table(data.get(area, {}), f"{source}: [{area}]") for area in ("urban", "rural")}
    return Speeds(tables["urban"], tables["rural"], factor)


def _table(table, where):
    if not isinstance(table, dict):
        raise ConfigError(f"road speeds {where} is not a table of class = km/h")
    out = {}
    for name, kmh in table.items():
        if name not in SPEEDS:
            raise ConfigError(
                f"road speeds {where}: unknown road class {name!r} (known: {', '.join(SPEEDS)})"
            )
        out[name] = _positive(kmh, f"{where} {name}", hi=MAX_KMH)
    return out


def _positive(value, where, hi):
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"road speeds {where}: {value!r} is not a number")
    if not 0 < value <= hi:
        raise ConfigError(f"road speeds {where}: {value!r} must be above 0 and at most {hi:g}")
    return float(value)
