"""Every unit's state, decided from events and an explicit `now`.

Sans-I/O: no MQTT, no SQLite, no clock. `apply(state, event, scheme)` folds one event
into a unit's state; `view(state, now, limits, scheme, home)` derives what a dispatcher
sees. Everything that decides availability lives in this module, in its tables:
HANDLERS (what each event does), AVAILABILITY_RULES (which availability wins) and
FLAG_RULES (what a dispatcher is warned of).

Events carry an *order*, so that the same set of events, in any order and with any
duplicates, folds to the same state:
- a crew press: (press time, 0, boot, seq); a dispatcher action: (time, 1, action id, 0),
  so at the same second the dispatcher's action is the newer;
- a position: (fix time, boot, seq); a connection message: (boot, seq, kind rank).
An event older than what is in force is history: the store keeps it, the state does not
move. Statuses and locks are kept as a short, ordered history, from which the status in
force is derived: the newest status wins, except that a crew press made while the
dispatcher had locked the unit's status loses; the loser is shown, not hidden.
"""

import math
from dataclasses import dataclass, replace

from .statuses import UNCHANGED

NEVER = ()
CREW, DISPATCHER = "crew", "dispatcher"
HISTORY = 16  # statuses and locks kept in the state; older ones live in the store

# What a connection message says about the link, and its rank among messages of the
# same (boot, seq): the will of a session is newer than the birth of that session.
LINK_EVENTS = {"birth": ("online", 0), "will": ("lost", 1), "bye": ("shutdown", 2)}

# What some statuses do beyond their availability, by the code the unit's scheme gives
# them (statuses.py), so that an agency's own scheme numbers its keys as it likes.
AT_STATION, EN_ROUTE = "available_station", "en_route"
ACK_CODES = (EN_ROUTE,)  # the crew acknowledges an assignment by pressing "en route"
# A status whose availability is "unchanged" raises a flag rather than set a status.
# A unit's clock (GNSS, whole seconds) and the gateway's may differ by a little: a press
# this close before an assignment still acknowledges it.
CLOCK_SKEW = 2.0
MOVING_SPEED = 1.0  # m/s: faster is moving


@dataclass(frozen=True)
class Limits:
    offline_after: float = 300.0  # s without any message: offline
    position_stale_after: float = 180.0  # s since the fix time: position is stale
    assign_ack_after: float = 60.0  # s assigned without the crew's "en route": flag
    station_radius_m: float = 500.0  # "at station" farther than this from home: flag
    en_route_idle_after: float = 300.0  # s "en route" without moving: flag


@dataclass(frozen=True)
class UnitState:
    unit_id: str
    statuses: tuple = ()  # ((order, key, source, reason), ...) oldest first
    locks: tuple = ()  # ((order, locked), ...) oldest first
    flag: tuple = ()  # (order, key) of the newest flag press
    emergency_order: tuple = NEVER
    emergency_cleared_order: tuple = NEVER
    emergency_ack: tuple = ()  # (order, user) of the newest dispatcher acknowledgement
    assignment: tuple = ()  # (order, incident dict, or None once released)
    link: str = "unknown"
    link_order: tuple = NEVER
    last_seen: float | None = None
    position: dict | None = None
    position_order: tuple = NEVER
    last_moved_t: float | None = None  # fix time of the newest fix while moving


# events


@dataclass(frozen=True)
class StatusPressed:
    key: int
    t: int
    boot: int
    seq: int
    received_at: float

    @property
    def order(self):  # never newer than its arrival (validate.py: a unit's clock ahead)
        return (min(self.t, self.received_at), 0, self.boot, self.seq)


@dataclass(frozen=True)
class PositionFix:
    record: dict
    received_at: float

    @property
    def order(self):  # never newer than its arrival, as a press
        r = self.record
        return (min(r["t"], self.received_at), r["boot"], r["seq"])


@dataclass(frozen=True)
class LinkChanged:
    kind: str  # birth | will | bye
    boot: int
    seq: int
    received_at: float

    @property
    def order(self):
        return (self.boot, self.seq, LINK_EVENTS[self.kind][1])


@dataclass(frozen=True)
class DispatcherAction:
    """action: status | lock | unlock | assign | release | clear_emergency | ack_emergency
    | reset_ids"""

    action: str
    t: float
    action_id: int
    received_at: float
    key: int | None = None
    reason: str = ""
    incident: dict | None = None
    user: str = ""

    @property
    def order(self):
        return (self.t, 1, self.action_id, 0)


# folding events into the state


def _insert(history, item):
    """Add `item` (whose first element is its order) to an ordered history, once."""
    if item in history:
        return history
    return tuple(sorted(history + (item,)))[-HISTORY:]


# Each handler returns the fields of the state it changes (a dict, maybe empty).


def _code(scheme, key):
    status = scheme.get(key)
    return status and status.code


def _on_press(state, ev, scheme):
    status = scheme.get(ev.key)
    if status is not None and status.availability == UNCHANGED:
        return {"flag": max(state.flag, (ev.order, ev.key))}
    if status is not None and status.availability == "emergency":
        return {"emergency_order": max(state.emergency_order, ev.order)}
    return {"statuses": _insert(state.statuses, (ev.order, ev.key, CREW, ""))}


def _on_position(state, ev, scheme):
    rec, changes = ev.record, {}
    moved = state.last_moved_t
    if rec["speed"] is not None and rec["speed"] >= MOVING_SPEED and (moved is None or rec["t"] > moved):
        changes["last_moved_t"] = rec["t"]
    order = ev.order
    if order > state.position_order:
        changes["position"] = rec
        changes["position_order"] = order
    return changes


def _on_link(state, ev, scheme):
    if ev.order > state.link_order:
        return {"link": LINK_EVENTS[ev.kind][0], "link_order": ev.order}
    return {}


def _status(state, ev):
    return {"statuses": _insert(state.statuses, (ev.order, ev.key, DISPATCHER, ev.reason))}


def _lock(locked):
    return lambda state, ev: {"locks": _insert(state.locks, (ev.order, locked))}


def _assignment(incident_of):
    def fold(state, ev):
        if state.assignment and state.assignment[0] >= ev.order:
            return {}
        return {"assignment": (ev.order, incident_of(ev))}

    return fold


def _clear_emergency(state, ev):
    return {"emergency_cleared_order": max(state.emergency_cleared_order, ev.order)}


def _reset_ids(state, ev):
    """The unit starts again from its next birth, whatever boot it names: after its
    password was rotated, it moved to new hardware, or it was decommissioned, so that a
    connection message dated ahead (forged, or of the old board) no longer holds."""
    return {"link": "unknown", "link_order": NEVER}


def _ack_emergency(state, ev):
    """A dispatcher has seen the emergency (every dispatcher's alarm stops); it goes on
    until cleared."""
    if state.emergency_ack and state.emergency_ack[0] >= ev.order:
        return {}
    return {"emergency_ack": (ev.order, ev.user)}


# What each dispatcher action does to a unit's state.
DISPATCHER_ACTIONS = {
    "status": _status,
    "lock": _lock(True),
    "unlock": _lock(False),
    "assign": _assignment(lambda ev: ev.incident),
    "release": _assignment(lambda ev: None),
    "clear_emergency": _clear_emergency,
    "ack_emergency": _ack_emergency,
    "reset_ids": _reset_ids,
    "decommission": _reset_ids,  # the registry says the rest: decommissioned()
    "enable": lambda state, ev: {},
}


def _on_action(state, ev, scheme):
    return DISPATCHER_ACTIONS[ev.action](state, ev)


HANDLERS = {
    StatusPressed: _on_press,
    PositionFix: _on_position,
    LinkChanged: _on_link,
    DispatcherAction: _on_action,
}


def apply(state, event, scheme):
    """Fold one event into a unit's state; returns the new state. `last_seen` is when the
    unit was last heard: a dispatcher's action is not the unit's word."""
    changes = HANDLERS[type(event)](state, event, scheme)
    heard = type(event) is not DispatcherAction
    if heard and (state.last_seen is None or event.received_at > state.last_seen):
        changes["last_seen"] = event.received_at
    return replace(state, **changes) if changes else state


def deciding_fixes(fixes):
    """Of many position events for one unit, the few that decide its state: the newest
    fix, the newest fix while moving, the latest received. Folding these gives the same
    state as folding all (the state keeps only maxima), for a fraction of the work."""
    newest = max(fixes, key=lambda ev: ev.order)
    latest = max(fixes, key=lambda ev: ev.received_at)
    moving = [ev for ev in fixes if ev.record["speed"] is not None and ev.record["speed"] >= MOVING_SPEED]
    out = {id(newest): newest, id(latest): latest}
    if moving:
        last_moving = max(moving, key=lambda ev: ev.record["t"])
        out[id(last_moving)] = last_moving
    return list(out.values())


# deriving what a dispatcher sees


def locked_at(state, order):
    """Whether the dispatcher's lock was on at `order`."""
    on = False
    for lock_order, locked in state.locks:
        if lock_order > order:
            break
        on = locked
    return on


def status_in_force(state):
    """(current, overridden): the status event in force, and the newest event of the
    other source that it overrode or that lost against a lock (None if there is none)."""
    current, previous = None, {}
    for ev in state.statuses:
        if ev[2] == CREW and locked_at(state, ev[0]):
            continue
        if current is not None:
            previous[current[2]] = current
        current = ev
    if current is None:
        return None, None
    since = previous.get(current[2], (NEVER,))[0]
    rivals = [ev for ev in state.statuses if ev[2] != current[2] and ev[1] != current[1] and ev[0] > since]
    return current, (rivals[-1] if rivals else None)


def _assignment_state(state, scheme):
    """(incident or None, acknowledged) of the assignment in force."""
    if not state.assignment or state.assignment[1] is None:
        return None, False
    order, incident = state.assignment
    acked = any(
        ev[0][0] >= order[0] - CLOCK_SKEW and ev[2] == CREW and _code(scheme, ev[1]) in ACK_CODES
        for ev in state.statuses
    )
    current, _ = status_in_force(state)
    if acked and current is not None and current[0] > order:
        status = scheme.get(current[1])
        if status is not None and status.availability == "available":
            return None, True  # the crew is back in service: the assignment is over
    return incident, acked


def _offline(state, now, limits, scheme):
    if state.link in ("lost", "shutdown"):
        return True
    return state.last_seen is None or now - state.last_seen > limits.offline_after


def _emergency(state, now, limits, scheme):
    return state.emergency_order > state.emergency_cleared_order


def _assigned(state, now, limits, scheme):
    incident, acked = _assignment_state(state, scheme)
    return incident is not None and not acked


def _by_status(state, now, limits, scheme):
    current, _ = status_in_force(state)
    status = current and scheme.get(current[1])
    return bool(status) and status.availability not in ("unchanged", "emergency")


# Availability, first rule that holds wins. A unit whose crew has never pressed a key
# is out of service: a unit is offered to a dispatcher only when its crew said so.
AVAILABILITY_RULES = (
    ("offline", _offline),
    ("emergency", _emergency),
    ("assigned", _assigned),
    ("status", _by_status),
    ("out_of_service", lambda *_: True),
)


def availability(state, now, limits, scheme):
    for name, holds in AVAILABILITY_RULES:
        if holds(state, now, limits, scheme):
            if name == "status":
                return scheme.get(status_in_force(state)[0][1]).availability
            return name
    raise AssertionError("the last rule always holds")


def distance_m(a_lat, a_lon, b_lat, b_lon):
    la1, lo1, la2, lo2 = map(math.radians, (a_lat, a_lon, b_lat, b_lon))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def _current_code(state, scheme):
    current, _ = status_in_force(state)
    return current and _code(scheme, current[1])


def _talk_request(state, now, limits, scheme, home):
    current, _ = status_in_force(state)
    return bool(state.flag) and (current is None or state.flag[0] > current[0])


def _position_stale(state, now, limits, scheme, home):
    return state.position is not None and now - state.position["t"] > limits.position_stale_after


def _assigned_no_ack(state, now, limits, scheme, home):
    return _assigned(state, now, limits, scheme) and now - state.assignment[0][0] > limits.assign_ack_after


def _away_from_station(state, now, limits, scheme, home):
    pos = state.position
    if _current_code(state, scheme) != AT_STATION or pos is None or not home or home[0] is None:
        return False
    return distance_m(pos["lat"], pos["lon"], home[0], home[1]) > limits.station_radius_m


def _en_route_not_moving(state, now, limits, scheme, home):
    current, _ = status_in_force(state)
    if current is None or _code(scheme, current[1]) != EN_ROUTE:
        return False
    since = max(current[0][0], state.last_moved_t or 0)
    return now - since > limits.en_route_idle_after


def _status_locked(state, now, limits, scheme, home):
    return locked_at(state, (math.inf,))


# What a dispatcher is warned of, each rule on its own.
FLAG_RULES = (
    ("talk_request", _talk_request),
    ("position_stale", _position_stale),
    ("assigned_no_ack", _assigned_no_ack),
    ("away_from_station", _away_from_station),
    ("en_route_not_moving", _en_route_not_moving),
    ("status_locked", _status_locked),
)


def _status_json(ev, scheme):
    if ev is None:
        return None
    status = scheme.get(ev[1])
    out = status.as_json() if status else {"key": ev[1], "code": None, "label": None, "label_en": None}
    return dict(out, since=ev[0][0], source=ev[2], reason=ev[3])


def _emergency_json(state):
    """The emergency in force: since when, and who acknowledged it (an acknowledgement
    older than the emergency's press is of an earlier one)."""
    ack = state.emergency_ack
    acked = bool(ack) and ack[0] > state.emergency_order
    return {
        "since": state.emergency_order[0],
        "acknowledged_by": ack[1] if acked else None,
        "acknowledged_at": ack[0][0] if acked else None,
    }


def view(state, now, limits, scheme, home=None):
    """What a dispatcher sees of one unit at `now`: a JSON-ready dict. `home` is the
    unit's home station (lat, lon) from the registry, or None."""
    current, overridden = status_in_force(state)
    incident, acked = _assignment_state(state, scheme)
    pos = state.position
    emergency = _emergency(state, now, limits, scheme)
    return {
        "unit_id": state.unit_id,
        "availability": availability(state, now, limits, scheme),
        "status": _status_json(current, scheme),
        "overridden": _status_json(overridden, scheme),
        "emergency": _emergency_json(state) if emergency else None,
        "assignment": None
        if incident is None
        else dict(incident, acknowledged=acked, assigned_at=state.assignment[0][0]),
        "link": state.link,
        "flags": [name for name, holds in FLAG_RULES if holds(state, now, limits, scheme, home)],
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


def decommissioned(view, at):
    """A unit's view with the registry's word on it: `at` is when it was decommissioned
    (`siaga unit decommission`), None while it is in service. A decommissioned unit is
    out of service whatever its last events said, so it is never offered as available;
    `decommissioned_at` says why, and that it will not come back by itself."""
    if at is None:
        return dict(view, decommissioned_at=None)
    return dict(view, availability="out_of_service", decommissioned_at=at)


# the state as JSON (for the store)


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def to_json(state):
    return vars(state)


def from_json(data):
    return UnitState(**{k: (v if k == "position" else _tuples(v)) for k, v in data.items()})
