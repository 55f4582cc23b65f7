"""Check a decoded message against the registry and the physical world, and turn it
into availability events. Anything refused here raises Rejected and goes to quarantine.

Times: a fix or a press may be ahead of the gateway's clock by at most
`Trust.max_clock_ahead` (a unit's GNSS clock and the gateway's agree to a second; more is
a unit whose clock is wrong, or a forgery), and never before 2000. Within that
tolerance, a press or a fix counts as no newer than its arrival: what a unit says
happened later than it reached the gateway cannot win over what a dispatcher did
after it arrived.
"""

import operator

from .availability import LinkChanged, PositionFix, StatusPressed
from .errors import Rejected

EPOCH_MIN = 946684800  # 2000-01-01: no GNSS time before this is trusted


def _check_time(t, now, what, trust):
    if t < EPOCH_MIN:
        raise Rejected(f"{what} time {t} is before 2000", "impossible_time")
    if t > now + trust.max_clock_ahead:
        raise Rejected(
            f"{what} time {t} is {t - now:.0f} s ahead of the gateway's clock"
            f" (at most {trust.max_clock_ahead:.0f} s)",
            "future_time",
        )


def press_time(body):
    """When a key was pressed: Unix seconds, with the milliseconds when the unit sent them."""
    return body["t"] + body.get("ms", 0) / 1000


def message(msg, registry, now, trust):
    """Rejected if the message must not touch a unit's state: an unknown unit, a payload
    naming another unit, an impossible or future time."""
    if msg.unit not in registry:
        raise Rejected(f"unit {msg.unit!r} is not registered", "unknown_unit")
    named = msg.body.get("unit")
    if named is not None and named != msg.unit:
        raise Rejected(f"topic names unit {msg.unit!r}, payload names {named!r}", "unit_mismatch")
    if msg.kind == "pos":
        for rec in msg.records:
            _check_time(rec["t"], now, "fix", trust)
    elif msg.kind == "status":
        _check_time(press_time(msg.body), now, "press", trust)


# What must be equal for a second message under the same (unit, boot, seq) to be the same
# message sent again (`sent` differs between copies). Store.signature reads the same back.
POSITION_SIGNATURE = ("t", "lat", "lon", "speed", "heading", "sats", "hdop")
_position_signature = operator.itemgetter(*POSITION_SIGNATURE)


def signature(mtype, body):
    if mtype == "pos":
        return _position_signature(body)
    if mtype == "status":
        return (body["key"], press_time(body), body.get("lat"), body.get("lon"))
    return {k: v for k, v in body.items() if k != "sent"}


def events(msg, fresh, now):
    """The availability events of a judged message's new part (`fresh`: its new records,
    or its body)."""
    if msg.kind == "pos":
        return [PositionFix(rec, now) for rec in fresh]
    if msg.kind == "status":
        return [StatusPressed(fresh["key"], press_time(fresh), fresh["boot"], fresh["seq"], now)]
    if msg.kind == "tele":
        return []  # for the technician: it changes no unit's availability
    return [LinkChanged(fresh["_type"], fresh["boot"], fresh["seq"], now)]
