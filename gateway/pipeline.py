"""Everything that changes a unit's state goes through here, one batch at a time, on the
ingest worker's thread: MQTT messages (decode → validate → reconcile → store → publish)
and dispatcher actions (record → reconcile → publish, and the unit's downlink). The
caller acknowledges MQTT messages to the broker only after `handle` has returned, that
is after the commit.
"""

import logging
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field

from . import availability, protocol, validate
from .errors import ProtocolError, Rejected

log = logging.getLogger("siaga.pipeline")


@dataclass(slots=True)
class Incoming:
    topic: str
    payload: bytes
    received_at: float
    mid: int = 0
    qos: int = 0


@dataclass
class Action:
    """A dispatcher action on one unit; `done` gets the unit's new view."""

    unit_id: str
    action: str
    t: float
    user: str = ""
    key: int | None = None
    reason: str = ""
    incident: dict | None = None
    action_id: int | None = None
    done: Future = field(default_factory=Future)


def _needs_sync(items):
    """Whether a batch's commit must survive a power cut (Store.atomic): anything but
    position reports and telemetry, which the next report replaces anyway."""
    return any(isinstance(i, Action) or not i.topic.endswith(("/pos", "/tele")) for i in items)


@dataclass
class Outcome:
    downlinks: list = field(default_factory=list)  # (topic, payload)
    changed: list = field(default_factory=list)  # unit views that changed


class Pipeline:
    def __init__(self, store, schemes, limits, on_change=None):
        self.store = store
        self.schemes = schemes if isinstance(schemes, dict) else {"default": schemes}
        self.limits = limits
        self.on_change = on_change or (lambda view: None)
        self.registry = store.units()
        self.states = store.load_states()
        self.refused = Counter()
        self.accepted = 0
        self._shown = {}

    def state(self, unit_id):
        return self.states.get(unit_id) or availability.UnitState(unit_id)

    def scheme_for(self, unit_id):
        """The status scheme the unit's registry entry names (the default if none)."""
        name = (self.registry.get(unit_id) or {}).get("status_scheme") or "default"
        return self.schemes.get(name) or self.schemes["default"]

    def view(self, unit_id, now):
        row = self.registry.get(unit_id) or {}
        home = (row.get("home_lat"), row.get("home_lon"))
        return availability.view(self.state(unit_id), now, self.limits, self.scheme_for(unit_id), home)

    def refresh_registry(self):
        self.registry = self.store.units()

    # MQTT messages
    def _decode(self, item):
        msg = protocol.decode(item.topic, item.payload)
        if msg.unit not in self.registry:
            self.refresh_registry()
        return msg, validate.events(msg, self.registry, item.received_at)

    def _store(self, msg, item, positions):
        if msg.kind == "pos":
            positions.extend(self.store.position_rows(msg.unit, msg.records, item.received_at))
        elif msg.kind == "status":
            self.store.add_status(msg.unit, msg.body, item.received_at)
            return protocol.down_topic(msg.unit), protocol.encode_ack(msg.body["boot"], msg.body["seq"])
        elif msg.kind == "tele":
            self.store.add_telemetry(msg.unit, msg.body, item.received_at)
        else:
            self.store.add_conn(msg.unit, msg.body, item.received_at)
        return None

    def _refuse(self, item, err):
        unit = item.topic.split("/")[1] if item.topic.count("/") == 2 else None
        self.refused[err.code] += 1
        log.warning("refused %s: %s (%s)", item.topic, err.message, err.code)
        self.store.quarantine(item.topic, unit, err.code, err.message, item.payload, item.received_at)

    def _fold(self, unit_id, events, touched):
        state = self.state(unit_id)
        for ev in events:
            state = availability.apply(state, ev, self.scheme_for(unit_id))
        self.states[unit_id] = state
        touched.add(unit_id)

    def _message(self, item, touched, out, positions, fixes):
        try:
            msg, evs = self._decode(item)
        except (ProtocolError, Rejected) as err:
            self._refuse(item, err)
            return False
        if msg.kind == "pos":
            fixes.setdefault(msg.unit, []).extend(evs)  # folded once per batch, below
        else:
            self._fold(msg.unit, evs, touched)
        down = self._store(msg, item, positions)
        if down:
            out.downlinks.append(down)
        return True

    # dispatcher actions
    def _action(self, act, touched, out):
        action_id = self.store.add_action(act)
        event = availability.DispatcherAction(
            act.action,
            act.t,
            action_id,
            act.t,
            act.key,
            act.reason,
            act.incident and dict(act.incident, id=action_id),
            user=act.user,
        )
        self._fold(act.unit_id, [event], touched)
        down = protocol.encode_action(act.action, action_id, act.incident)
        if down:
            out.downlinks.append((protocol.down_topic(act.unit_id), down))
        act.action_id = action_id

    def handle(self, items, now):
        out, touched, positions, fixes = Outcome(), set(), [], {}
        accepted = 0
        with self.store.atomic(durable=_needs_sync(items)):
            for item in items:
                if isinstance(item, Action):
                    self._action(item, touched, out)
                elif self._message(item, touched, out, positions, fixes):
                    accepted += 1
            for unit_id, evs in fixes.items():
                self._fold(unit_id, availability.deciding_fixes(evs), touched)
            if positions:
                self.store.add_position_rows(positions)
            if touched:
                self.store.save_states([self.states[u] for u in touched])
        self.accepted += accepted  # committed: what health reports as accepted is stored
        self._publish(touched, now, out)
        for item in items:
            if isinstance(item, Action):
                item.done.set_result((item.action_id, self.view(item.unit_id, now)))
        return out

    def tick(self, now):
        """Time passes: publish units whose view changed without a message (offline,
        flags that come with time)."""
        out = Outcome()
        self._publish(set(self.states), now, out)
        return out

    def _publish(self, units, now, out):
        for unit_id in sorted(units):
            view = self.view(unit_id, now)
            pos = view["position"]
            key = (
                view["availability"],
                view["status"] and view["status"]["key"],
                view["status"] and view["status"]["source"],
                tuple(view["flags"]),
                view["link"],
                pos and pos["fix_time"],
                view["emergency"] and tuple(view["emergency"].values()),
                view["assignment"] and (view["assignment"]["id"], view["assignment"]["acknowledged"]),
                view["overridden"] and view["overridden"]["since"],
            )
            if self._shown.get(unit_id) != key:
                self._shown[unit_id] = key
                out.changed.append(view)
                self.on_change(view)
