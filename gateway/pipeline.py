"""Everything that changes a unit's state goes through here, one batch at a time, on the
ingest worker's thread: MQTT messages (decode → validate → judge the identity →
reconcile → store → publish) and dispatcher actions (record → reconcile → publish, and
the unit's downlink). The caller acknowledges MQTT messages to the broker only after
`handle` has returned, that is after the commit.

A message is judged alone: it is stored and applied, recognised as a duplicate (stored
once already: it changes nothing), or quarantined with a reason; whatever it holds, it
never fails its neighbours. A batch is one transaction; if anything unexpected fails it,
its items are taken again one by one, each in its own transaction, and a message that
still fails is quarantined as `internal_error` (with the exception's name). Only a store
that cannot write at all (disk full, I/O error: StoreUnavailable) leaves messages
unacknowledged, for the ingest to try again: nothing is lost, and /health says ingest
has stalled.

With several gateways on one database (PostgreSQL), another gateway may change a unit
too (a dispatcher's action on the standby): each batch locks the snapshots of the units
it touches and reads again those whose version moved on (Store.lock_units), and a
`Changed` note from the database's notifications brings the others' changes to this
gateway's live stream.
"""

import logging
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field

from . import availability, protocol, validate
from .errors import NotAvailable, ProtocolError, Rejected, StoreUnavailable
from .identity import SeenIds, Trust

log = logging.getLogger("siaga.pipeline")


@dataclass(slots=True)
class Incoming:
    topic: str
    payload: bytes
    received_at: float
    mid: int = 0
    qos: int = 0
    session: object = None  # the MQTT connection it came on: only that one acknowledges it


@dataclass(slots=True)
class Changed:
    """Another gateway committed a change (a database notification): a unit's snapshot at
    `version`, or with unit_id None the registry; `everything`: the notifications were
    interrupted, so read the registry and every unit again."""

    unit_id: str | None = None
    version: int = 0
    everything: bool = False


@dataclass
class Action:
    """A dispatcher's (or technician's) action on one unit; `done` gets the unit's new view."""

    unit_id: str
    action: str
    t: float
    user: str = ""
    key: int | None = None
    reason: str = ""
    incident: dict | None = None
    estimate: dict | None = None  # an assignment's drive time as the gateway gave it (nearest.estimate)
    only_if_available: bool = False  # refused (NotAvailable) unless the unit is available when it is applied
    action_id: int | None = None
    done: Future = field(default_factory=Future)


def _needs_sync(items):
    """Whether a batch's commit must survive a power cut (Store.atomic): anything but
    position reports and telemetry, which the next report replaces anyway."""
    return any(isinstance(i, Action) or not i.topic.endswith(("/pos", "/tele")) for i in items)


@dataclass
class Outcome:
    downlinks: list = field(default_factory=list)  # (topic, payload)
    acknowledge: list = field(default_factory=list)  # messages judged and committed
    retry: list = field(default_factory=list)  # messages the store could not take: later


def _ack(unit, body):
    return protocol.down_topic(unit), protocol.encode_ack(body["boot"], body["seq"])


def _conflict(unit, boot, seq):
    return Rejected(
        f"({boot}, {seq}) of {unit} is already stored with other content", "conflicting_duplicate"
    )


class Batch:
    """One transaction's work: working copies of the units' states and identities, and
    what is to be written. The pipeline takes them over only once the transaction has
    committed (Pipeline._absorb), so a failed batch leaves nothing behind."""

    def __init__(self, pipeline):
        self.p = pipeline
        self.states, self.seen = {}, {}
        self.positions, self.fixes = [], {}
        self.touched = set()
        self.keys = {}  # identities accepted in this batch: (unit, boot, seq) -> (kind, signature)
        self.refused = Counter()
        self.accepted = self.duplicates = 0
        self.downlinks, self.messages, self.actions = [], [], []
        self.versions = {}  # the snapshots' versions as this batch saves them
        self.registry_changed = False

    def state(self, unit_id):
        return self.states.get(unit_id) or self.p.state(unit_id)

    def seen_of(self, unit_id):
        if unit_id not in self.seen:
            self.seen[unit_id] = self.p.seen_of(unit_id).copy()
        return self.seen[unit_id]

    def fold(self, unit_id, events):
        state, scheme = self.state(unit_id), self.p.scheme_for(unit_id)
        for ev in events:
            state = availability.apply(state, ev, scheme)
        self.states[unit_id] = state
        self.touched.add(unit_id)

    def refuse(self, item, err):
        unit = protocol.unit_of(item.topic)
        self.refused[err.code] += 1
        log.warning("refused %s: %s (%s)", item.topic[:80], err.message, err.code)
        self.p.store.quarantine(item.topic, unit, err.code, err.message, item.payload, item.received_at)

    def flush(self):
        """The batch's positions and snapshots, at the end of its transaction."""
        for unit_id, evs in self.fixes.items():
            self.fold(unit_id, availability.deciding_fixes(evs))
        if self.positions:
            self.p.store.add_position_rows(self.positions)
        if self.touched or self.seen:
            units = sorted(self.touched | self.seen.keys())
            self.versions = {u: self.p.versions.get(u, 0) + 1 for u in units}
            self.p.store.save_states([(self.state(u), self.seen_of(u), self.versions[u]) for u in units])


class Pipeline:
    def __init__(self, store, schemes, limits, on_change=None, trust=None):
        self.store = store
        self.schemes = schemes if isinstance(schemes, dict) else {"default": schemes}
        self.limits = limits
        self.trust = trust or Trust()
        self.on_change = on_change or (lambda view: None)
        self.faults = store.faults  # a store that cannot write: wait and try again
        self.registry = store.units()
        self.states, self.seen, self.versions = store.load_states()
        self.refused = Counter()
        self.accepted = 0
        self.duplicates = 0
        self._shown = {}

    def state(self, unit_id):
        return self.states.get(unit_id) or availability.UnitState(unit_id)

    def seen_of(self, unit_id):
        return self.seen.get(unit_id) or SeenIds()

    def scheme_for(self, unit_id):
        """The status scheme the unit's registry entry names (the default if none)."""
        name = (self.registry.get(unit_id) or {}).get("status_scheme") or "default"
        return self.schemes.get(name) or self.schemes["default"]

    def view(self, unit_id, now, state=None):
        row = self.registry.get(unit_id) or {}
        home = (row.get("home_lat"), row.get("home_lon"))
        state = state or self.state(unit_id)
        view = availability.view(state, now, self.limits, self.scheme_for(unit_id), home)
        return availability.decommissioned(view, row.get("decommissioned_at"))

    def refresh_registry(self):
        self.registry = self.store.units()

    # judging one message
    def _judge(self, item, b):
        """(message, what of it is new: its new records or its body; None for a
        duplicate); raises ProtocolError or Rejected for a message to quarantine."""
        msg = protocol.decode(item.topic, item.payload)
        if msg.unit not in self.registry:
            self.refresh_registry()
        validate.message(msg, self.registry, item.received_at, self.trust)
        if msg.kind == "pos":
            return msg, self._fresh_records(msg, b) or None
        body, mtype = msg.body, msg.body["_type"]
        if mtype == "will":
            return msg, body if self._new_will(msg, b) else None
        sig = validate.signature(mtype, body)
        if not self._new_identity(msg.unit, body["boot"], body["seq"], mtype, sig, b):
            return msg, None
        b.seen_of(msg.unit).add(body["boot"], body["seq"])
        b.keys[(msg.unit, body["boot"], body["seq"])] = (mtype, sig)
        return msg, body

    def _fresh_records(self, msg, b):
        """The records of a position message not stored before (all of them, normally)."""
        unit, seen, trust = msg.unit, b.seen_of(msg.unit), self.trust
        newest = seen.newest()
        fresh = {}  # (boot, seq) -> (record, signature), in the message's order
        for rec in msg.records:
            ident, sig = (rec["boot"], rec["seq"]), validate.signature("pos", rec)
            if ident in fresh:  # twice in one message
                if fresh[ident][1] != sig:
                    raise _conflict(unit, *ident)
                continue
            if newest is not None and ident > newest:  # the common case: the unit's next
                seen.check_step(*ident, trust)
            elif not self._new_identity(unit, *ident, "pos", sig, b):
                continue
            fresh[ident] = (rec, sig)
        for ident, (_, sig) in fresh.items():  # only once every record is judged: a refused message adds none
            seen.add(*ident)
            b.keys[(unit, *ident)] = ("pos", sig)
        return [rec for rec, _ in fresh.values()]

    def _new_identity(self, unit, boot, seq, kind, sig, b):
        """True: a new message; False: a duplicate of one stored; Rejected: a jump too
        far ahead, or another message under an identity already used."""
        seen = b.seen_of(unit)
        newest = seen.newest()
        if newest is not None and (boot, seq) > newest:  # the common case: the unit's next
            seen.check_step(boot, seq, self.trust)
            return True
        earlier = b.keys.get((unit, boot, seq))
        if earlier is not None:
            if earlier == (kind, sig):
                return False
            raise _conflict(unit, boot, seq)
        known = seen.contains(boot, seq)
        if known is False:
            return True
        stored = self.store.signature(kind, unit, boot, seq, sig)  # sig: a position's key holds t
        if stored is None and not known:
            return True
        if stored == sig:
            return False
        raise _conflict(unit, boot, seq)

    def _new_will(self, msg, b):
        """A will is the broker's word that the session of the birth with the same
        (boot, seq) was lost: new if that birth is known, a duplicate if this will is
        stored already; a will of a session never seen changes nothing."""
        boot, seq = msg.body["boot"], msg.body["seq"]
        b.seen_of(msg.unit).check_step(boot, seq, self.trust)
        key = (msg.unit, boot, seq, "will")
        if key in b.keys or self.store.signature("will", msg.unit, boot, seq) is not None:
            return False
        if b.keys.get((msg.unit, boot, seq), ("",))[0] != "birth":
            if self.store.signature("birth", msg.unit, boot, seq) is None:
                raise Rejected(f"will of a session ({boot}, {seq}) never seen", "unknown_session")
        b.keys[key] = ("will", {})
        return True

    def _message(self, item, b):
        try:
            msg, fresh = self._judge(item, b)
        except (ProtocolError, Rejected) as err:
            b.refuse(item, err)
            return
        except self.faults:
            raise
        except Exception as e:  # a fault of ours in judging: it costs this message only
            log.exception("judging %s failed", item.topic[:80])
            b.refuse(item, Rejected(f"{type(e).__name__} while judging it", "internal_error"))
            return
        if fresh is None:  # stored before: it changes nothing
            b.duplicates += 1
            if msg.kind == "status":  # but the unit waits for its ack: say it again
                b.downlinks.append(_ack(msg.unit, msg.body))
            return
        self._store_and_fold(msg, fresh, item, b)
        b.accepted += 1

    def _store_and_fold(self, msg, fresh, item, b):
        events = validate.events(msg, fresh, item.received_at)
        store = self.store
        if msg.kind == "pos":
            b.fixes.setdefault(msg.unit, []).extend(events)  # folded once per batch (flush)
            b.positions.extend(store.position_rows(msg.unit, fresh, item.received_at))
            return
        if msg.kind == "status":
            store.add_status(msg.unit, fresh, item.received_at)
            b.downlinks.append(_ack(msg.unit, fresh))
        elif msg.kind == "tele":
            store.add_telemetry(msg.unit, fresh, item.received_at)
        else:
            store.add_conn(msg.unit, fresh, item.received_at)
        b.fold(msg.unit, events)

    # dispatcher actions
    def _action(self, act, b):
        if act.done.done():  # refused already, in a try of this batch before
            return
        if (
            act.only_if_available
        ):  # checked here, under the unit's lock: no other gateway assigns it meanwhile
            unit = self.view(act.unit_id, act.t, b.state(act.unit_id))
            if unit["availability"] != "available":
                status = unit["status"]
                said = f", status {status['key']} {status['label']}" if status else ""
                act.done.set_exception(
                    NotAvailable(
                        f"{act.unit_id} is not available ({unit['availability']}{said}): to assign it"
                        " anyway, confirm with an override_reason",
                    )
                )
                return
        action_id = self.store.add_action(act)
        event = availability.DispatcherAction(
            act.action,
            act.t,
            action_id,
            act.t,
            act.key,
            act.reason,
            act.incident and dict(act.incident, id=action_id, assigned_by=act.user),
            user=act.user,
        )
        b.fold(act.unit_id, [event])
        if act.action in ("reset_ids", "decommission"):  # rotated, moved or decommissioned: a new start
            b.seen[act.unit_id] = SeenIds.fresh()
        if act.action in ("decommission", "enable"):
            self.store.set_decommissioned(act.unit_id, act.t if act.action == "decommission" else None)
            b.registry_changed = True
        down = protocol.encode_action(act.action, action_id, act.incident)
        if down:
            b.downlinks.append((protocol.down_topic(act.unit_id), down))
        act.action_id = action_id
        b.actions.append(act)

    # batches
    def _run(self, items, b):
        with self.store.atomic(durable=_needs_sync(items)):
            self._lock(items)
            for item in items:
                if isinstance(item, Action):
                    self._action(item, b)
                else:
                    self._message(item, b)
                    b.messages.append(item)
            b.flush()
        return b

    def _lock(self, items):
        """Another gateway may have changed these units since this one read them: lock
        their snapshots for the transaction and read again those that moved on."""
        units = {i.unit_id if isinstance(i, Action) else protocol.unit_of(i.topic) for i in items}
        units.discard(None)
        if not units or not self.store.shared:
            return
        if not units <= self.registry.keys():
            self.refresh_registry()
        versions = self.store.lock_units(sorted(units & self.registry.keys()))
        self._reread([u for u, v in versions.items() if v != self.versions.get(u, 0)])

    def _reread(self, units):
        """Take these units' snapshots as the database holds them (committed: whatever
        this gateway's transaction does next, they stand)."""
        if not units:
            return
        states, seen, versions = self.store.load_states(units)
        for u in units:
            for mine, theirs in ((self.states, states), (self.seen, seen), (self.versions, versions)):
                if u in theirs:
                    mine[u] = theirs[u]
                else:
                    mine.pop(u, None)

    def _absorb(self, b, out):
        """A committed batch's results become the pipeline's."""
        if b.registry_changed:
            self.refresh_registry()
        self.states.update(b.states)
        self.seen.update(b.seen)
        self.versions.update(b.versions)
        self.refused.update(b.refused)
        self.accepted += b.accepted
        self.duplicates += b.duplicates
        out.downlinks.extend(b.downlinks)
        out.acknowledge.extend(b.messages)
        return b.touched

    def handle(self, items, now):
        out = Outcome()
        if any(isinstance(i, Changed) for i in items):
            notes = [i for i in items if isinstance(i, Changed)]
            items = [i for i in items if not isinstance(i, Changed)]
            self._publish(self._others_changed(notes), now)
            if not items:
                return out
        try:
            touched = self._absorb(self._run(items, Batch(self)), out)
        except self.faults as e:
            log.error("the store cannot write (%s: %s); %d items wait", type(e).__name__, e, len(items))
            return self._unavailable(items, e, out)
        except Exception:
            log.exception("a batch of %d items failed; taking them one by one", len(items))
            touched = self._one_by_one(items, out)
        self._publish(touched, now)
        for item in items:
            if isinstance(item, Action) and item.action_id is not None and not item.done.done():
                item.done.set_result((item.action_id, self.view(item.unit_id, now)))
        return out

    def _others_changed(self, notes):
        """Another gateway's commits: the units whose snapshots are newer than this
        gateway's, read again (to publish them)."""
        everything = any(n.everything for n in notes)
        if everything or any(n.unit_id is None for n in notes):
            self.refresh_registry()
        newest = {}
        for n in notes:
            if n.unit_id is not None:
                newest[n.unit_id] = max(n.version, newest.get(n.unit_id, 0))
        units = [u for u, v in newest.items() if v > self.versions.get(u, 0)]
        if everything:
            units = self.registry.keys() | self.states.keys()
        try:
            self._reread(sorted(units))
        except self.faults as e:  # the database is away: the listener asks for everything when it is back
            log.warning("could not read %d changed units: %s", len(units), e)
            return set()
        return set(units)

    def _unavailable(self, items, error, out):
        for item in items:
            if isinstance(item, Action):
                if not item.done.done():
                    item.done.set_exception(StoreUnavailable(f"the gateway's store cannot write: {error}"))
            else:
                out.retry.append(item)
        return out

    def _one_by_one(self, items, out):
        touched = set()
        for i, item in enumerate(items):
            try:
                touched |= self._absorb(self._run([item], Batch(self)), out)
            except self.faults as e:
                self._unavailable(items[i:], e, out)
                break
            except Exception as e:
                log.exception("%s failed alone", getattr(item, "topic", "an action"))
                if isinstance(item, Action):
                    item.done.set_exception(e)
                    continue
                try:
                    self._quarantine_alone(item, e, out)
                except self.faults as fault:
                    self._unavailable(items[i:], fault, out)
                    break
        return touched

    def _quarantine_alone(self, item, error, out):
        b = Batch(self)
        with self.store.atomic():
            b.refuse(item, Rejected(f"{type(error).__name__} while storing it", "internal_error"))
        b.messages.append(item)
        self._absorb(b, out)

    def tick(self, now):
        """Time passes: publish units whose view changed without a message (offline,
        flags that come with time)."""
        self._publish(set(self.states), now)

    def _publish(self, units, now):
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
                view["decommissioned_at"],
            )
            if self._shown.get(unit_id) != key:
                self._shown[unit_id] = key
                self.on_change(view)
