"""Failover under load (issue 15): two gateway processes on one real PostgreSQL and one
real broker, 20 units reporting (real MicroPython virtual units among them), 200 crew
presses spread over the run; the leader gateway is SIGKILLed three times and started
again each time (it comes back as a standby). At the end:

- every press is stored once: pressed = stored, none lost, none twice (per unit, its
  statuses in the API);
- every unit's state on both gateways is what one gateway alone makes of the same
  messages (each message the broker passed, recorded by a subscriber of its own and run
  through a fresh in-process Pipeline on SQLite), time-dependent fields aside;
- a dispatcher's live stream saw every press's status. The dispatcher is on the standby
  at each kill: when the killed one is back (a standby), it opens a stream there and
  leaves the other once that one is open (make before break), so a kill never cuts it
  and it never has a gap; between kills it stays on the gateway that led after the
  kill, so the stream is checked across the standby's turn to lead too.

Presses of one unit are 4 s apart and each unit's keys differ from one press to the
next, so each press is a change of its own a stream must carry (a stream carries a
unit's state, not each message: two presses committed together show as the second)."""

import itertools
import json
import threading
import time

import httpx
import paho.mqtt.client as mqtt
import pytest
from load_units import Load, PahoUnit, assert_each_press_stored_once, stored

from gateway.availability import Limits
from gateway.identity import Trust
from gateway.ingest import SUBSCRIPTIONS
from gateway.pipeline import Incoming, Pipeline
from gateway.statuses import StatusScheme
from gateway.store import Store
from simulators.gateway_process import wait_until

UNITS = 20
VIRTUAL = 4  # of them real virtual units (the firmware in MicroPython), the rest paho clients
PRESSES = 200
LOAD_S = 40.0  # presses spread over this long; positions every second throughout
KILLS_AT = (8.0, 20.0, 32.0)  # s into the run
TIME_DEPENDENT = ("age", "last_seen", "device")  # ages; when the gateway received; QoS 0 telemetry
_runs = itertools.count(1)


class Recorder:
    """Every uplink message the broker passes, as the gateway subscribes to them, in the
    order they come: what a single gateway would have been given."""

    def __init__(self, port, run):
        self.messages = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"recorder-{run}")
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, time.time()))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(topic, 1) for topic, _ in SUBSCRIPTIONS])
        self.client.loop_start()

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class Dispatcher:
    """A dispatcher's live stream (/api/v1/stream), moved from one gateway to another
    make-before-break: the new stream is open before the old one stops counting (1 s
    after, for what was on its way)."""

    def __init__(self):
        self.events = []
        self.current = None  # {"until": when the stream stops counting}

    def follow(self, gw):
        ready, me = threading.Event(), {"until": float("inf")}
        threading.Thread(target=self._read, args=(gw, ready, me), daemon=True).start()
        assert ready.wait(10), f"no stream from {gw.url}"
        old, self.current = self.current, me
        if old:
            old["until"] = time.monotonic() + 1.0

    def _read(self, gw, ready, me):
        try:
            with httpx.stream("GET", gw.url + "/api/v1/stream", headers=gw.headers, timeout=60) as resp:
                ready.set()
                for line in resp.iter_lines():
                    if time.monotonic() > me["until"]:
                        return
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
        except httpx.HTTPError:
            pass

    def saw(self):
        """(unit_id, key, since) of every status the stream showed."""
        return {
            (e["unit_id"], e["status"]["key"], e["status"]["since"]) for e in self.events if e.get("status")
        }


def role(gw):
    if gw.proc.poll() is not None:
        return None
    return gw.get("/api/v1/health")[1].get("role")


def standing_by(gw):
    """A standby that hears the others' changes (so its stream carries them)."""
    health = gw.get("/api/v1/health")[1]
    return health.get("role") == "standby" and health["notifications"]["listening"]


def leader_of(gws, timeout=20):
    def one():
        roles = [role(gw) for gw in gws]
        return roles.count("leader") == 1 and gws[roles.index("leader")]

    return wait_until(one, timeout, 0.05, "exactly one leader")


@pytest.fixture
def pair(gateway_pair):
    return gateway_pair


def replay(messages, units, folder):
    """The state one gateway alone makes of `messages`: a fresh Pipeline on SQLite."""
    store = Store(folder / "siaga.db")
    for unit_id in units:
        store.upsert_unit(
            {"unit_id": unit_id, "kind": "ambulance", "callsign": unit_id.upper(), "agency": ""}
        )
    pipeline = Pipeline(store, StatusScheme(), Limits(), trust=Trust())
    for i in range(0, len(messages), 100):
        pipeline.handle([Incoming(t, p, at) for t, p, at in messages[i : i + 100]], time.time())
    now = time.time()
    views = {u: comparable(pipeline.view(u, now)) for u in units}
    store.close()
    return views


def comparable(view):
    """A unit's view without what depends on when it is looked at or received."""
    out = {k: v for k, v in view.items() if k not in TIME_DEPENDENT}
    for k in ("unit_id", "callsign", "kind", "agency", "status_scheme", "settings_pushed"):  # the API's
        out.pop(k, None)
    if out.get("position"):
        out["position"] = {k: v for k, v in out["position"].items() if k not in TIME_DEPENDENT}
    return out


def test_the_leader_killed_three_times_under_load_loses_and_changes_nothing(pair, broker, vunits, tmp_path):
    run = next(_runs)
    ids = [f"ld{run}-{i:02d}" for i in range(UNITS)]
    for unit_id in ids:
        pair[0].register(unit_id)
    leader = leader_of(pair)
    recorder = Recorder(broker.port, f"{run}-{time.monotonic_ns()}")
    virtual = {u: vunits(u) for u in ids[:VIRTUAL]}
    paho = {u: PahoUnit([("127.0.0.1", broker.port)], u, i) for i, u in enumerate(ids[VIRTUAL:], VIRTUAL)}
    for unit in paho.values():
        unit.birth()
    online = lambda: all(pair[0].unit(u)["link"] == "online" for u in virtual)  # noqa: E731
    wait_until(online, 30, 0.2, "the virtual units' births")
    dispatcher = Dispatcher()
    dispatcher.follow(next(gw for gw in pair if gw is not leader))  # on the standby
    load = Load(ids, virtual, paho, PRESSES, LOAD_S)
    elected = []
    try:
        for at in KILLS_AT:
            load.at(at)
            leader.kill()
            killed = time.monotonic()
            survivor = leader_of(pair, 15)
            elected.append(time.monotonic() - killed)
            leader.start()  # back, as a standby
            wait_until(lambda gw=leader: standing_by(gw), 20, 0.1, "the restarted one to stand by, listening")
            dispatcher.follow(leader)  # the dispatcher on the standby for the next kill
            leader = survivor
        load.finish()
        everything = lambda: all(len(stored(leader, u)) >= load.pressed(u) for u in ids)  # noqa: E731
        wait_until(everything, 30, 0.5, "every press stored")
        time.sleep(1.0)  # the last changes on their way to the stream and the recorder
        assert_each_press_stored_once(leader, load)

        alone = replay(recorder.messages, ids, tmp_path)
        assert all(v["status"] for v in alone.values()) and all(alone[u]["position"] for u in paho)
        for gw in pair:
            for unit_id in ids:
                assert comparable(gw.unit(unit_id)) == alone[unit_id], (gw.url, unit_id)

        saw = dispatcher.saw()
        presses = [(u, r["key"], r["pressed_at"]) for u in ids for r in stored(leader, u)]
        missed = [p for p in presses if p not in saw]
        assert missed == [], f"{len(missed)} of the presses never showed on the dispatcher's stream"
        assert len(presses) == PRESSES
        print(
            f"ha load: {len(presses)} presses stored of {PRESSES}, {len(recorder.messages)} messages;"
            f" a leader {', '.join(f'{s:.1f}' for s in elected)} s after each kill;"
            f" {len(dispatcher.events)} stream events"
        )
    finally:
        load.stop.set()
        recorder.close()
        for unit in paho.values():
            unit.close()
