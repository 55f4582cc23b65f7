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


def events(msg, registry, now):
    """The availability events one decoded message carries."""
    if msg.unit not in registry:
        raise Rejected(f"unit {msg.unit!r} is not registered", "unknown_unit")
    if msg.kind == "pos":
        for rec in msg.records:
            _check_time(rec["t"], now, "fix")
        return [PositionFix(rec, now) for rec in msg.records]
    body = msg.body
    if msg.kind == "status":
        _check_time(body["t"], now, "press")
        return [StatusPressed(body["key"], body["t"], body["boot"], body["seq"], now)]
    return [LinkChanged(body["_type"], body["boot"], body["seq"], now)]
