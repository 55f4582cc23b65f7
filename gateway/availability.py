"""Every unit's state, decided from events and an explicit `now`.

Sans-I/O: no MQTT, no SQLite, no clock. `apply(state, event)` folds one event into a
unit's state; `view(state, now, ...)` derives what a dispatcher sees. Everything that
decides availability lives in this module, in the tables below.

Events carry an *order*, so that the same set of events in any order and with any
duplicates folds to the same state: a status press is ordered by (press time, boot,
seq), a position by (fix time, boot, seq), a connection event by (boot, seq, kind).
An event older than what is in force is history: the store keeps it, the state does not
move.
"""

from dataclasses import dataclass, replace

NEVER = ()

# What a connection message says about the link, and its rank among messages of the
# same (boot, seq): the will of a session is newer than the birth of that session.
LINK_EVENTS = {
    "birth": ("online", 0),
    "will": ("lost", 1),
    "bye": ("shutdown", 2),
}

# Flag keys change no status, they raise a flag until the next press.
FLAG_KEYS = {5: "talk_request"}


@dataclass(frozen=True)
class Limits:
    offline_after: float = 300.0  # s without any message: offline
    position_stale_after: float = 180.0  # s since the fix time: position is stale


@dataclass(frozen=True)
class UnitState:
    unit_id: str
    status_key: int | None = None
    status_order: tuple = NEVER
    status_t: int | None = None
    flag_key: int | None = None
    flag_order: tuple = NEVER
    emergency_order: tuple = NEVER
    emergency_cleared_order: tuple = NEVER
    link: str = "unknown"
    link_order: tuple = NEVER
    last_seen: float | None = None
    position: dict | None = None
    position_order: tuple = NEVER


@dataclass(frozen=True)
class StatusPressed:
    key: int
    t: int
    boot: int
    seq: int
    received_at: float

    @property
    def order(self):
        return (self.t, self.boot, self.seq)


@dataclass(frozen=True)
class PositionFix:
    record: dict
    received_at: float

    @property
    def order(self):
        r = self.record
        return (r["t"], r["boot"], r["seq"])


@dataclass(frozen=True)
class LinkChanged:
    kind: str  # birth | will | bye
    boot: int
    seq: int
    received_at: float

    @property
    def order(self):
        return (self.boot, self.seq, LINK_EVENTS[self.kind][1])


def _seen(state, event):
    if state.last_seen is not None and state.last_seen >= event.received_at:
        return state
    return replace(state, last_seen=event.received_at)


def _on_status(state, ev, scheme):
    if ev.key in FLAG_KEYS:
        if ev.order > state.flag_order:
            state = replace(state, flag_key=ev.key, flag_order=ev.order)
        return state
    status = scheme.get(ev.key)
    if status is not None and status.availability == "emergency" and ev.order > state.emergency_order:
        state = replace(state, emergency_order=ev.order)
    if ev.order > state.status_order:
        state = replace(state, status_key=ev.key, status_order=ev.order, status_t=ev.t)
    return state


def _on_position(state, ev, scheme):
    if ev.order > state.position_order:
        return replace(state, position=dict(ev.record), position_order=ev.order)
    return state


def _on_link(state, ev, scheme):
    if ev.order > state.link_order:
        return replace(state, link=LINK_EVENTS[ev.kind][0], link_order=ev.order)
    return state


HANDLERS = {
    StatusPressed: _on_status,
    PositionFix: _on_position,
    LinkChanged: _on_link,
}


def apply(state, event, scheme):
    """Fold one event into a unit's state; returns the new state."""
    return HANDLERS[type(event)](_seen(state, event), event, scheme)


def _offline(state, now, limits, scheme):
    if state.link in ("lost", "shutdown"):
        return True
    return state.last_seen is None or now - state.last_seen > limits.offline_after


def _emergency(state, now, limits, scheme):
    return state.emergency_order > state.emergency_cleared_order


def _by_status(state, now, limits, scheme):
    status = scheme.get(state.status_key)
    return status is not None and status.availability not in ("unchanged", "emergency")


# Availability, first rule that holds wins. A unit whose crew has never pressed a key
# is out of service: a unit is offered to a dispatcher only when its crew said so.
AVAILABILITY_RULES = (
    ("offline", _offline),
    ("emergency", _emergency),
    ("status", _by_status),
    ("out_of_service", lambda *_: True),
)


def availability(state, now, limits, scheme):
    for name, holds in AVAILABILITY_RULES:
        if holds(state, now, limits, scheme):
            if name == "status":
                return scheme.get(state.status_key).availability
            return name
    raise AssertionError("the last rule always holds")


def _flags(state, now, limits):
    flags = []
    if state.flag_key is not None and state.flag_order > state.status_order:
        flags.append(FLAG_KEYS[state.flag_key])
    pos = state.position
    if pos is not None and now - pos["t"] > limits.position_stale_after:
        flags.append("position_stale")
    return flags


def view(state, now, limits, scheme):
    """What a dispatcher sees of one unit at `now`: a JSON-ready dict."""
    status = scheme.get(state.status_key)
    pos = state.position
    return {
        "unit_id": state.unit_id,
        "availability": availability(state, now, limits, scheme),
        "status": dict(status.as_json(), since=state.status_t) if status else None,
        "link": state.link,
        "flags": _flags(state, now, limits),
        "position": None
        if pos is None
        else {
            "lat": pos["lat"],
            "lon": pos["lon"],
            "speed": pos["speed"],
            "heading": pos["heading"],
            "sats": pos["sats"],
            "hdop": pos["hdop"],
            "fix_time": pos["t"],
            "age": max(0.0, now - pos["t"]),
        },
        "last_seen": state.last_seen,
    }
