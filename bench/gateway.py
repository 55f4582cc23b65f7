"""The gateway's ingest and live stream, on real parts in one run:

- gateway.ingest_reports_per_s: QoS 1 position reports stored and acknowledged after
  commit, drained from a backlog the broker holds for the gateway's session;
- gateway.ingest_ratio_vs_raw_paho: that rate over a bare paho-mqtt subscriber's
  receive rate for the same backlog from the same broker (the practical ceiling);
- gateway.press_to_stream_p99_ms: a status publish to its event on the live stream,
  while 1,000 position reports a second arrive in the background.
"""

import json
import struct
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

from provisioning.mosquitto import Mosquitto
from simulators.gateway_process import GatewayProcess, wait_until

UNITS = [f"ld-{i:03d}" for i in range(100)]
BACKLOG = 20_000
POS = struct.Struct(">BHIIiiHHBBI")


def position(unit_index, seq, t):
    return POS.pack(
        0x50, 1, seq, t, -22100000 + unit_index * 100, 1139150000 + seq % 1000, 1000, 9000, 9, 9, t
    )


def client(port, client_id, clean=True):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    return c


def publish_backlog(port, n, first_seq=1, connect=None):
    """`n` position reports of UNITS, in turn, QoS 1, each acknowledged by the broker.
    One plain client publishes them all; with `connect` (unit id -> a connected paho
    client: a secure broker, a login per unit) each unit publishes its own."""
    if connect is None:
        pub = client(port, f"bench-pub-{time.monotonic_ns()}")
        pubs = dict.fromkeys(UNITS, pub)
    else:
        pubs = {u: connect(u) for u in UNITS}
    for pub in set(pubs.values()):
        pub.loop_start()
    wait_until(lambda: all(p.is_connected() for p in pubs.values()), 30, 0.01, "the publishers' CONNACKs")
    t = int(time.time())
    infos = [
        pubs[UNITS[i % len(UNITS)]].publish(
            f"siaga/{UNITS[i % len(UNITS)]}/pos",
            position(i % len(UNITS), first_seq + i, t - 600 + i // 100),
            qos=1,
        )
        for i in range(n)
    ]
    for info in infos:
        info.wait_for_publish(60)
    for pub in set(pubs.values()):  # first all: each network thread then ends at once
        pub.disconnect()
    for pub in set(pubs.values()):
        pub.loop_stop()


def raw_paho_rate(port):
    """A bare subscriber with a persistent session drains the same backlog: the same
    broker, QoS 1 both ways, the same count, each message acknowledged as it comes."""
    cid = f"bench-raw-{time.monotonic_ns()}"
    sub = client(port, cid, clean=False)
    sub.subscribe([("siaga/+/pos", 1)])
    sub.loop(1)
    sub.disconnect()
    publish_backlog(port, BACKLOG)
    times = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False)
    sub.on_message = lambda c, u, m: times.append(time.perf_counter())
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    wait_until(lambda: len(times) >= BACKLOG, 120, 0.05, "the raw subscriber's backlog")
    sub.loop_stop()
    sub.disconnect()
    forget_session(port, cid)
    return (len(times) - 1) / (times[-1] - times[0])


def forget_session(port, client_id):
    """End a persistent session. Left, the broker would queue every later report for it
    too, and the gateway would drain its backlog from a broker holding twice as many as
    the one the bare subscriber drained from."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.connect("127.0.0.1", port)
    c.loop(1)  # the CONNACK: the broker has dropped the old session
    c.disconnect()


def health(gw):
    with urllib.request.urlopen(gw.url + "/api/v1/health", timeout=5) as r:
        return json.load(r)


def holds_session(gw):
    """Whether `gw` ingests: it leads (always, alone on SQLite) and its MQTT session is up."""
    try:
        h = health(gw)
    except OSError:  # 503 (degraded) or not answering: not yet
        return False
    return h.get("role") == "leader" and h["mqtt_session"] and h["mqtt_connected"]


def gateway_rate(port, work, database_url="", extra=(), client_id=None, connect=None):
    """The gateway, stopped, leaves a backlog in its session; started, it drains it.
    On PostgreSQL (`database_url`) it is alone on its database, so it leads at once.
    `extra`: the gateway's broker flags (a login, a cluster's addresses); `client_id`:
    its MQTT client id (default one of its own); `connect`: publish_backlog's."""
    gw = GatewayProcess(work, port, client_id=client_id, database_url=database_url, extra=extra)
    gw.start()
    try:
        wait_until(lambda: holds_session(gw), 20, 0.05, "the gateway's MQTT session")
        for u in UNITS:
            gw.register(u)
    finally:  # failed too: left running, it would take its share of every later backlog
        gw.stop()
    publish_backlog(port, BACKLOG, connect=connect)
    gw.start()
    samples = []
    while True:
        accepted = health(gw)["accepted"]
        samples.append((time.perf_counter(), accepted))
        if accepted >= BACKLOG:
            break
        time.sleep(0.1)  # the polls cost the gateway little
    moving = [(t, a) for t, a in samples if 0 < a]
    (t0, a0), (t1, a1) = moving[0], moving[-1]
    return gw, (a1 - a0) / (t1 - t0)


class Load(threading.Thread):
    """Position reports at `rate` per second from the load units (`units`, each in turn,
    so each reports every len(units) / rate s), QoS 1; `seq` is the next sequence number
    (one count over all the units), for a later load to go on from."""

    def __init__(self, port, rate=1000, units=UNITS, first_seq=10_000_000):
        super().__init__(daemon=True)
        self.port, self.rate, self.stop = port, rate, threading.Event()
        self.units, self.seq = units, first_seq
        self.sent = 0

    def run(self):
        pub = client(self.port, f"bench-load-{time.monotonic_ns()}")
        pub.loop_start()
        start, units = time.perf_counter(), self.units
        self.started = start
        while not self.stop.is_set():
            due = int((time.perf_counter() - start) * self.rate)
            while self.sent < due:
                i = self.sent % len(units)
                pub.publish(f"siaga/{units[i]}/pos", position(i, self.seq, int(time.time())), qos=1)
                self.sent += 1
                self.seq += 1
            time.sleep(0.002)
        self.ended = time.perf_counter()
        pub.loop_stop()
        pub.disconnect()


def press_to_stream(gw, port, presses=200):
    unit = UNITS[0]
    events = {}
    ready = threading.Event()

    def listen():
        try:
            with httpx.stream("GET", gw.url + "/api/v1/stream", headers=gw.headers, timeout=60) as resp:
                ready.set()
                for line in resp.iter_lines():
                    if line.startswith("data: ") and f'"unit_id": "{unit}"' in line:
                        ev = json.loads(line[6:])
                        if ev["status"]:
                            events.setdefault(ev["status"]["since"], time.perf_counter())
        except httpx.HTTPError:
            pass  # the gateway stopped at the end of the run

    threading.Thread(target=listen, daemon=True).start()
    ready.wait(10)
    load = Load(port, first_seq=BACKLOG + 1)  # after the backlog: stored, not refused as a jump
    load.start()
    time.sleep(2)
    pub = client(port, f"bench-press-{time.monotonic_ns()}")
    pub.loop_start()
    sent = {}
    t0 = int(time.time())
    for i in range(presses):
        key = (1, 3, 4, 9)[i % 4]  # each press changes the status
        msg = {
            "_type": "status",
            "boot": 2,
            "seq": i,
            "key": key,
            "t": t0,
            "ms": i % 1000 if i < 1000 else 0,
            "sent": t0,
        }
        since = t0 + msg["ms"] / 1000
        sent[since] = time.perf_counter()
        pub.publish(f"siaga/{unit}/status", json.dumps(msg), qos=1)
        time.sleep(0.05)
    time.sleep(2)
    load.stop.set()
    load.join(5)
    pub.loop_stop()
    rate = load.sent / (load.ended - load.started)
    refused = health(gw)["refused"]
    if refused:  # the figure is of presses behind stored reports, not behind quarantined ones
        raise RuntimeError(f"the background load was refused: {refused}")
    delays = sorted((events[s] - sent[s]) * 1000 for s in sent if s in events)
    if len(delays) < presses * 0.95:
        raise RuntimeError(f"only {len(delays)} of {presses} presses reached the stream")
    return delays[min(len(delays) - 1, int(0.99 * len(delays)))], rate


def figures():
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker").start()
        try:
            raw = raw_paho_rate(broker.port)
            work = Path(tmp) / "gw"
            work.mkdir()
            gw, rate = gateway_rate(broker.port, work)
            try:
                p99, load_rate = press_to_stream(gw, broker.port)
            finally:
                gw.stop()
        finally:
            broker.stop()
    print(f"# background load {load_rate:.0f} reports/s; raw paho {raw:.0f}/s", file=sys.stderr)
    return [
        ("gateway.ingest_reports_per_s", round(rate), "reports/s"),
        ("gateway.ingest_ratio_vs_raw_paho", round(rate / raw, 3), "ratio"),
        ("gateway.press_to_stream_p99_ms", round(p99, 1), "ms"),
    ]
