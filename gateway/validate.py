"""Check a decoded message against the registry and the physical world, and turn it
into availability events. Anything refused here raises Rejected and goes to quarantine.
"""

from .availability import LinkChanged, PositionFix, StatusPressed
from .errors import Rejected

FUTURE_TOLERANCE = 86400  # s: a fix or press more than a day ahead is impossible
EPOCH_MIN = 946684800  # 2000-01-01: no GNSS time before this is trusted


def _check_time(t, now, what):
    if t < EPOCH_MIN or t > now + FUTURE_TOLERANCE:
        raise Rejected(f"{what} time {t} is impossible", "impossible_time")


def press_time(body):
    """When a key was pressed: Unix seconds, with the milliseconds when the unit sent them."""
    return body["t"] + body.get("ms", 0) / 1000


def events(msg, registry, now):
    """The availability events one decoded message carries."""
    if msg.unit not in registry:
        raise Rejected(f"unit {msg.unit!r} is not registered", "unknown_unit")
    named = msg.body.get("unit")
    if named is not None and named != msg.unit:
        raise Rejected(f"topic names unit {msg.unit!r}, payload names {named!r}", "unit_mismatch")
    if msg.kind == "pos":
        for rec in msg.records:
            _check_time(rec["t"], now, "fix")
        return [PositionFix(rec, now) for rec in msg.records]
    body = msg.body
    if msg.kind == "status":
        _check_time(body["t"], now, "press")
        return [StatusPressed(body["key"], press_time(body), body["boot"], body["seq"], now)]
    if msg.kind == "tele":
        return []  # for the technician: it changes no unit's availability
    return [LinkChanged(body["_type"], body["boot"], body["seq"], now)]
