"""Units under load for the failover tests (tests/test_ha_load.py: the gateway's leader
killed; tests/test_nats_load.py: a broker node killed): paho units speaking the
protocol, the load they send (positions every second, presses spread over the run) and
the check that every press is stored once."""

import itertools
import json
import struct
import threading
import time

import paho.mqtt.client as mqtt

KEYS = (3, 4, 8, 9, 2, 6, 1, 7)  # each differs from the one before (5 is a flag, 0 an emergency)
POS = struct.Struct(">BHIIiiHHBBI")  # docs/protocol.md: one position record


class PahoUnit:
    """A unit as the broker sees it, over paho: QoS 1 births, positions and presses in the
    protocol's formats, one (boot, seq) counter for all of them.

    Its messages wait in an outbox until the broker acknowledges them (PUBACK), as the
    firmware's do: when the connection is lost, or a message has no PUBACK after
    `puback_wait` s, the unit drops the connection, connects to the next of `brokers`
    (a cluster's nodes; one broker: the same again) and sends everything still waiting
    there. `login` (user, password) and `cafile` (TLS with that CA) as a provisioned
    unit logs in. `acked`: seq -> when (wall clock) its PUBACK was seen."""

    boot = 1
    CONNACK_WAIT_S = 5.0  # no CONNACK this long: the next node

    def __init__(self, brokers, unit_id, index, client_id=None, login=None, cafile=None, puback_wait=None):
        self.unit_id, self.index = unit_id, index
        self.brokers = list(brokers)
        self.client_id = client_id or f"u-{unit_id}"
        self.login, self.cafile, self.puback_wait = login, cafile, puback_wait
        self.seq, self.lock = 0, threading.Lock()
        self.pressed = []  # (boot, seq, key)
        self.pending = {}  # seq -> [topic, payload, retain, MQTTMessageInfo or None, sent at]
        self.acked = {}
        self.moves = self.resent = 0
        self.at = index % len(self.brokers)
        self.client = None
        self.closed = threading.Event()
        with self.lock:
            self._connect()
        threading.Thread(target=self._supervise, daemon=True, name=f"{unit_id}-link").start()

    # the connection
    def _connect(self):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        c.reconnect_delay_set(60, 60)  # paho's own reconnect never comes first: _supervise's does
        if self.login:
            c.username_pw_set(*self.login)
        if self.cafile:
            c.tls_set(ca_certs=str(self.cafile))
        state = {"connack": None, "gone": False, "since": time.monotonic()}
        c.on_connect = lambda cl, ud, flags, reason, props: state.__setitem__("connack", reason)
        c.on_disconnect = lambda *a: state.__setitem__("gone", True)
        c.on_connect_fail = lambda *a: state.__setitem__("gone", True)
        self.client, self.state, self.up = c, state, False
        c.connect_async(*self.brokers[self.at], keepalive=10)
        c.loop_start()

    def _drop(self):
        old = self.client
        old.disconnect()
        threading.Thread(target=old.loop_stop, daemon=True).start()  # it may hang in a handshake

    def _move(self):
        """A new connection, on the next broker; what waits goes again once it is up."""
        self._drop()
        self.at = (self.at + 1) % len(self.brokers)
        self.moves += 1
        self._connect()

    def _supervise(self):
        while not self.closed.wait(0.1):
            with self.lock:
                self._step(time.monotonic())

    def _step(self, now):
        for seq, entry in list(self.pending.items()):
            if entry[3] is not None and _published(entry[3]):
                self.acked[seq] = time.time()
                del self.pending[seq]
        state = self.state
        if not self.up:
            if state["connack"] is not None and not state["connack"].is_failure and not state["gone"]:
                self.up = True
                for seq, entry in self.pending.items():
                    self.resent += entry[3] is not None
                    self._publish(seq, entry)
            elif state["gone"] or state["connack"] is not None or now - state["since"] > self.CONNACK_WAIT_S:
                self._move()
        elif state["gone"] or (
            self.puback_wait is not None
            and any(e[3] is not None and now - e[4] > self.puback_wait for e in self.pending.values())
        ):
            self._move()

    def _publish(self, seq, entry):
        entry[3] = self.client.publish(entry[0], entry[1], qos=1, retain=entry[2])
        entry[4] = time.monotonic()

    def _send(self, topic, payload, retain=False):
        """Number a message, queue it, and send it now if the link is up; returns its seq."""
        with self.lock:
            self.seq += 1
            seq, t = self.seq, int(time.time())
            entry = self.pending[seq] = [topic, payload(seq, t), retain, None, None]
            if self.up:
                self._publish(seq, entry)
            return seq

    # what it sends
    def birth(self):
        def body(seq, t):
            return json.dumps({"_type": "birth", "boot": self.boot, "seq": seq, "t": t, "sent": t})

        self._send(f"siaga/{self.unit_id}/conn", body, retain=True)

    def position(self, step):
        def record(seq, t):
            lat, lon = -22100000 + self.index * 2000 + step * 30, 1139150000 + step * 40
            return POS.pack(0x50, self.boot, seq, t, lat, lon, 1200, (step * 700) % 36000, 9, 9, t)

        self._send(f"siaga/{self.unit_id}/pos", record)

    def press(self, key):
        def body(seq, t):
            return json.dumps(
                {"_type": "status", "boot": self.boot, "seq": seq, "t": t, "sent": t, "key": key}
            )

        seq = self._send(f"siaga/{self.unit_id}/status", body)
        self.pressed.append((self.boot, seq, key))

    def waiting(self):
        with self.lock:
            return len(self.pending)

    def close(self):
        self.closed.set()
        with self.lock:
            self.client.disconnect()
            self.client.loop_stop()


class Load:
    """The run's units and what they send: positions every second from the paho units,
    `presses` presses spread over `load_s`, one unit after the other (so a unit's presses
    are len(ids) / presses * load_s apart). `virtual`: {unit_id: VirtualUnit}, pressed
    on their panel; `paho`: {unit_id: PahoUnit}."""

    def __init__(self, ids, virtual, paho, presses, load_s):
        self.ids, self.virtual, self.paho = ids, virtual, paho
        self.presses, self.load_s = presses, load_s
        self.pressed_virtual = {u: [] for u in virtual}
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._positions, self._presses)]
        for t in self.threads:
            t.start()

    def _positions(self):
        for step in itertools.count():
            for unit in self.paho.values():
                unit.position(step)
            if self.stop.wait(max(0.0, self.started + step + 1 - time.monotonic())):
                return

    def _presses(self):
        for i in range(self.presses):
            if self.stop.wait(max(0.0, self.started + i * self.load_s / self.presses - time.monotonic())):
                return
            unit_id = self.ids[i % len(self.ids)]
            key = KEYS[(i // len(self.ids) + i) % len(KEYS)]
            if unit_id in self.virtual:  # a crew's finger on the panel: 0.25 s
                threading.Thread(target=self.virtual[unit_id].press, args=(key,)).start()
                self.pressed_virtual[unit_id].append(key)
            else:
                self.paho[unit_id].press(key)

    def at(self, s):
        time.sleep(max(0.0, self.started + s - time.monotonic()))

    def finish(self):
        self.threads[1].join(self.load_s + 10)
        self.stop.set()
        self.threads[0].join(5)

    def pressed(self, unit_id):
        return (
            len(self.pressed_virtual[unit_id]) if unit_id in self.virtual else len(self.paho[unit_id].pressed)
        )


def stored(gw, unit_id):
    """The unit's crew presses as the gateway's API has them."""
    rows = gw.get(f"/api/v1/units/{unit_id}/statuses?limit=1000")[1]
    return [r for r in rows if r["source"] == "crew"]


def assert_each_press_stored_once(gw, load):
    for unit_id, unit in load.paho.items():  # by (boot, seq): none lost, none twice
        rows = stored(gw, unit_id)
        assert sorted((r["boot"], r["seq"], r["key"]) for r in rows) == sorted(unit.pressed), unit_id
    for unit_id, keys in load.pressed_virtual.items():  # the firmware numbers them: count and order
        rows = sorted(stored(gw, unit_id), key=lambda r: (r["boot"], r["seq"]))
        assert [r["key"] for r in rows] == keys, unit_id
        assert len({(r["boot"], r["seq"]) for r in rows}) == len(rows)


def _published(info):
    """Whether the broker acknowledged it. paho raises when the publish failed (the link
    went before it was sent): not acknowledged, so it goes again on the next link."""
    try:
        return info.is_published()
    except RuntimeError:
        return False
