"""One batch of MQTT messages through the gateway: decode → validate → reconcile →
store → publish. The caller (ingest) commits nothing itself: it acknowledges the
messages to the broker only after `handle` has returned, i.e. after the commit.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field

from . import availability, protocol, validate
from .errors import ProtocolError, Rejected

log = logging.getLogger("siaga.pipeline")


@dataclass
class Incoming:
    topic: str
    payload: bytes
    received_at: float
    mid: int = 0
    qos: int = 0


@dataclass
class Outcome:
    downlinks: list = field(default_factory=list)  # (topic, payload)
    changed: list = field(default_factory=list)  # unit views that changed


class Pipeline:
    def __init__(self, store, scheme, limits, on_change=None):
        self.store = store
        self.scheme = scheme
        self.limits = limits
        self.on_change = on_change or (lambda view: None)
        self.registry = store.units()
        self.states = store.load_states()
        self.refused = Counter()
        self.accepted = 0
        self._shown = {}

    def state(self, unit_id):
        return self.states.get(unit_id) or availability.UnitState(unit_id)

    def view(self, unit_id, now):
        return availability.view(self.state(unit_id), now, self.limits, self.scheme)

    def refresh_registry(self):
        self.registry = self.store.units()

    def _decode(self, item):
        msg = protocol.decode(item.topic, item.payload)
        if msg.unit not in self.registry:
            self.refresh_registry()
        return msg, validate.events(msg, self.registry, item.received_at)

    def _store(self, msg, item):
        if msg.kind == "pos":
            self.store.add_positions(msg.unit, msg.records, item.received_at)
        elif msg.kind == "status":
            self.store.add_status(msg.unit, msg.body, item.received_at)
            return protocol.down_topic(msg.unit), protocol.encode_ack(msg.body["boot"], msg.body["seq"])
        else:
            self.store.add_conn(msg.unit, msg.body, item.received_at)
        return None

    def _refuse(self, item, err):
        unit = item.topic.split("/")[1] if item.topic.count("/") == 2 else None
        self.refused[err.code] += 1
        log.warning("refused %s: %s (%s)", item.topic, err.message, err.code)
        self.store.quarantine(item.topic, unit, err.code, err.message, item.payload, item.received_at)

    def _one(self, item, touched, out):
        try:
            msg, evs = self._decode(item)
        except (ProtocolError, Rejected) as err:
            self._refuse(item, err)
            return
        state = self.state(msg.unit)
        for ev in evs:
            state = availability.apply(state, ev, self.scheme)
        self.states[msg.unit] = state
        touched.add(msg.unit)
        down = self._store(msg, item)
        if down:
            out.downlinks.append(down)
        self.accepted += 1

    def handle(self, items, now):
        out, touched = Outcome(), set()
        with self.store.atomic():
            for item in items:
                self._one(item, touched, out)
            if touched:
                self.store.save_states([self.states[u] for u in touched])
        self._publish(touched, now, out)
        return out

    def tick(self, now):
        """Time passes: publish units whose view changed without a message (offline)."""
        out = Outcome()
        self._publish(set(self.states), now, out)
        return out

    def _publish(self, units, now, out):
        for unit_id in sorted(units):
            view = self.view(unit_id, now)
            key = (
                view["availability"],
                view["status"] and view["status"]["key"],
                tuple(view["flags"]),
                view["link"],
                view["position"] and view["position"]["fix_time"],
            )
            if self._shown.get(unit_id) != key:
                self._shown[unit_id] = key
                out.changed.append(view)
                self.on_change(view)
