"""The NATS cluster (provisioning/nats.py, docs/brokers.md) beside Mosquitto, on real
parts in one run: a secure Mosquitto and a 3-node NATS cluster, both as a centre runs
them (TLS from the project CA, a login per unit and the gateway's own), gateway
processes, paho units.

- broker.nats_ingest_reports_per_s: bench/gateway.py's ingest figure (a QoS 1 backlog of
  BACKLOG reports from 100 units drained by the gateway, each acknowledged after its
  commit) on the NATS cluster: the units publish to the three nodes in turn, the gateway
  is given the three addresses; broker.nats_ingest_ratio_vs_mosquitto: that over the
  same drain from the secure Mosquitto. Both brokers secure, so unlike
  gateway.ingest_reports_per_s (plain TCP, no logins): each unit publishes its own
  reports on its own TLS connection. The two brokers in turns, ROUNDS drains of each,
  each figure the best of its broker's (the other work on this shared machine only ever
  slows a run down).
- broker.node_failover_s: FAILOVER_UNITS units (each its own login over TLS, a
  persistent session, one position every REPORT_S, as the firmware: QoS 1, the next
  node after a lost link or a failed connect, the firmware's timeouts and backoff) and a
  gateway with the three addresses. KILLS times: SIGKILL the node the most units are on
  (of equal ones, the gateway's), then the time from the kill until every unit has a
  position stored whose fix was taken after the kill (the gateway's API, polled every
  POLL_S); the node started again and the units settled before the next kill. The
  figure is the worst of the kills; above FAILOVER_TARGET_S (issue 16: every unit back
  online within 30 s) the run fails. It holds a unit's report interval (up to REPORT_S)
  and the poll; per kill, stderr says how long the units on the killed node and the
  others took, and when the gateway was back if it was on the killed node. Seen here:
  1.5 s when the dead node led nothing needed; about 12 s when units on the surviving
  nodes got no PUBACK (JetStream electing a stream leader) and waited out the
  firmware's 10 s; about 16 s when the gateway's connects to the survivors went
  unanswered that long (docs/brokers.md "A node dies").
"""

import random
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import paho.mqtt.client as mqtt

from provisioning.mosquitto import Mosquitto
from provisioning.nats import NatsCluster
from provisioning.nats_admin import monitoring
from simulators.gateway_process import GatewayProcess, wait_until

from .gateway import BACKLOG, UNITS, gateway_rate, position

ROUNDS = 3  # ingest drains of each broker, in turns
KILLS = 3
FAILOVER_UNITS = [f"fo-{i:02d}" for i in range(20)]
REPORT_S = 1.0
POLL_S = 0.1
FAILOVER_TARGET_S = 30.0
# the firmware's (firmware/lib/mqtt.py, firmware/lib/config.py)
CONNECT_TIMEOUT_S = 10.0  # TCP, TLS, CONNACK
ACK_TIMEOUT_S = 10.0  # no PUBACK within it: the link is taken for dead
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 30.0


def tls_client(cafile, user, password, client_id, clean=True):
    """A paho client (MQTT 3.1.1) over TLS with the project CA, logged in as `user`."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(60, 60)  # a lost link is the caller's to handle
    c.username_pw_set(user, password)
    c.tls_set(ca_certs=str(cafile))
    return c


def unit_logins(broker, unit_ids):
    """{unit id: password}, each unit's new credentials on `broker` (either kind)."""
    with broker.admin() as admin:
        return {u: admin.add_unit(u) for u in unit_ids}


def forget_session(address, cafile, login, client_id):
    """End a persistent session (a clean login with its client id): left, the broker
    would keep queueing every later report for a gateway that is gone."""
    c = tls_client(cafile, *login, client_id)
    c.connect(*address)
    c.loop(2)  # the CONNACK: the broker has dropped the old session
    c.disconnect()


# the ingest on each broker
class Setup:
    """What gateway_rate needs for one secure broker: the gateway's first address, its
    flags, a fixed client id (its session is reused, empty, by the next round) and each
    unit's own publisher."""

    def __init__(self, kind, broker, addresses, passwords):
        self.kind, self.addresses, self.passwords = kind, addresses, passwords
        self.cafile = broker.ca.ca_cert
        self.login = broker.gateway_credentials()[:2]
        self.client_id = f"bench-gw-{kind}"
        self.extra = [*broker.gateway_flags(), "--mqtt", ",".join(f"{h}:{p}" for h, p in addresses)]

    def connect(self, unit_id):
        """The unit's own client, on the node it is given (units spread over the nodes)."""
        # its own client id: the secure Mosquitto pins it to the login
        c = tls_client(self.cafile, unit_id, self.passwords[unit_id], unit_id)
        c.connect(*self.addresses[UNITS.index(unit_id) % len(self.addresses)])
        return c

    def rate(self, work):
        gw, rate = gateway_rate(
            self.addresses[0][1], work, extra=self.extra, client_id=self.client_id, connect=self.connect
        )
        gw.stop()
        return rate


def ingest_rates(setups, work):
    """ROUNDS drains of the same backlog from each broker, in turns (a fresh gateway
    database each), so both see the machine as it is then."""
    rates = {s.kind: [] for s in setups}
    for r in range(ROUNDS):
        for s in setups:
            rates[s.kind].append(s.rate(work / f"{s.kind}-{r}"))
            print(f"# ingest {s.kind}: {rates[s.kind][-1]:.0f} reports/s", file=sys.stderr, flush=True)
    for s in setups:
        forget_session(s.addresses[0], s.cafile, s.login, s.client_id)
    return rates


# a node dies under units and the gateway
class Unit(threading.Thread):
    """A unit on the cluster as the firmware behaves there: a position every REPORT_S
    (its fix time then) into an outbox; the oldest sent QoS 1 and taken out when
    PUBACKed. A lost link, no PUBACK within ACK_TIMEOUT_S (NATS 2.9.10 sends none while
    JetStream elects a stream leader: docs/brokers.md) or a failed connect: a new
    connection to the next node, after the firmware's backoff, and the report sent
    again. A persistent session with the unit's downlink subscribed, as the firmware's."""

    def __init__(self, unit_id, index, password, addresses, cafile, phase):
        super().__init__(daemon=True, name=unit_id)
        self.unit_id, self.index, self.password = unit_id, index, password
        self.addresses, self.cafile, self.phase = addresses, cafile, phase
        self.node = index % len(addresses)  # the next connect goes here
        self.connected_to = None  # the node it is on, None while it has no link
        self.stop = threading.Event()
        self.seq = 0
        self.acked = self.resends = self.connects = 0
        self.outbox = deque()

    def run(self):
        next_fix = time.time() + self.phase
        conn, delay = None, BACKOFF_MIN_S
        while not self.stop.is_set():
            if time.time() >= next_fix:
                self.seq += 1
                self.outbox.append((self.seq, int(time.time())))
                next_fix += REPORT_S
            if conn is None:
                conn = self._connect()
                if conn is None:  # jittered, growing: the firmware's link_task
                    self.stop.wait(delay / 2 + random.random() * delay / 2)
                    delay = min(2 * delay, BACKOFF_MAX_S)
                    continue
                delay = BACKOFF_MIN_S
            if not self.outbox:
                self.stop.wait(max(0.0, min(0.05, next_fix - time.time())))
                continue
            seq, t = self.outbox[0]
            if self._send(conn, seq, t):
                self.outbox.popleft()
                self.acked += 1
            else:
                self._close(conn)
                conn = None
                self.resends += 1
                self.stop.wait(delay / 2 + random.random() * delay / 2)
        if conn is not None:
            self._close(conn)

    def _connect(self):
        """A connection to the next node with the unit's session, or None."""
        node, self.node = self.node, (self.node + 1) % len(self.addresses)
        c = tls_client(self.cafile, self.unit_id, self.password, self.unit_id, clean=False)
        c.answered, c.gone, c.refused = threading.Event(), threading.Event(), False

        def on_connect(client, userdata, flags, reason, props):
            client.refused = reason.is_failure
            client.answered.set()

        c.on_connect = on_connect
        c.on_disconnect = lambda *a: c.gone.set()
        c.connect_timeout = CONNECT_TIMEOUT_S
        try:
            c.connect(*self.addresses[node], keepalive=30)
        except OSError:  # refused (a dead node), TLS, timed out
            return None
        c.loop_start()
        if not c.answered.wait(CONNECT_TIMEOUT_S) or c.refused or c.gone.is_set():
            self._close(c)
            return None
        c.subscribe(f"siaga/{self.unit_id}/down", qos=1)
        self.connected_to = node  # a lost link moves on to self.node, the next
        self.connects += 1
        return c

    def _send(self, c, seq, t):
        """True once the broker PUBACKed the report within ACK_TIMEOUT_S."""
        info = c.publish(f"siaga/{self.unit_id}/pos", position(self.index, seq, t), qos=1)
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while info.rc == mqtt.MQTT_ERR_SUCCESS and not info.is_published():
            if c.gone.is_set() or time.monotonic() > deadline or self.stop.is_set():
                return False
            time.sleep(0.005)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _close(self, c):
        self.connected_to = None
        c.disconnect()
        c.loop_stop()


def unit_fixes(gw):
    """{unit id: fix time of its latest stored position} of the failover units."""
    status, units = gw.get("/api/v1/units")
    if status != 200:
        return {}
    return {u["unit_id"]: (u["position"] or {}).get("fix_time", 0) for u in units}


def gateway_node(cluster, client_id):
    """The node the gateway's MQTT connection is on, or None."""
    for i in cluster.running():
        try:
            connz = monitoring(cluster.nodes[i]["http"], f"/connz?mqtt_client={client_id}")
        except (OSError, ValueError):
            continue
        if connz.get("num_connections"):
            return i
    return None


def gateway_health(gw):
    """The gateway's health (a 503 too: it says so while it has no broker)."""
    return gw.get("/api/v1/health")[1]


def mqtt_connected(gw):
    return bool(gateway_health(gw).get("mqtt_connected"))


def settled(units, gw):
    return all(u.connected_to is not None and len(u.outbox) <= 1 for u in units) and mqtt_connected(gw)


def spread(seconds):
    """first-last s of units' times back"""
    return f"{min(seconds):.1f}-{max(seconds):.1f} s" if seconds else "none"


def failovers(cluster, gw, client_id, units):
    """KILLS node deaths; per kill (seconds to every unit back, killed node, units on it,
    whether the gateway was on it, the gateway's seconds to reconnect)."""
    out = []
    for _ in range(KILLS):
        wait_until(lambda: settled(units, gw), 60, 0.1, "the units and the gateway on the cluster")
        time.sleep(2 * REPORT_S)
        on = [u.connected_to for u in units]
        gw_node = gateway_node(cluster, client_id)
        victim = max(cluster.running(), key=lambda i: (on.count(i), i == gw_node))
        # fix times are whole seconds: a fix stamped `after` or later was taken after the
        # kill, which comes just before a whole second so as to wait for no later one
        time.sleep((0.99 - time.time() % 1) % 1)
        after = int(time.time()) + 1
        killed_at = time.perf_counter()
        cluster.kill_node(victim)
        gw_back, gw_lost, back = None, False, {}
        while True:
            if victim == gw_node and gw_back is None:  # its link lost, then back
                up = mqtt_connected(gw)
                gw_lost = gw_lost or not up
                gw_back = time.perf_counter() - killed_at if gw_lost and up else None
            fixes = unit_fixes(gw)
            now = time.perf_counter() - killed_at  # after the poll: an upper bound
            for u in units:
                if u.unit_id not in back and fixes.get(u.unit_id, 0) >= after:
                    back[u.unit_id] = now
            if len(back) == len(units):
                break
            if now > 2 * FAILOVER_TARGET_S:
                late = [u.unit_id for u in units if u.unit_id not in back]
                raise RuntimeError(f"broker: units {late} not back {now:.0f} s after the kill")
            time.sleep(POLL_S)
        took = max(back.values())
        out.append((took, victim, on.count(victim), victim == gw_node, gw_back))
        killed = [back[u.unit_id] for u, node in zip(units, on, strict=True) if node == victim]
        others = [back[u.unit_id] for u, node in zip(units, on, strict=True) if node != victim]
        print(
            f"# kill node-{victim + 1} ({len(killed)} units on it, the gateway"
            f" {'too' if victim == gw_node else 'not'}): all back after {took:.2f} s (its units"
            f" {spread(killed)}, the others {spread(others)});"
            f" gateway reconnected after {gw_back if gw_back is None else round(gw_back, 2)} s",
            file=sys.stderr,
            flush=True,
        )
        cluster.start_node(victim)
    return out


def failover_run(cluster, passwords, work):
    addresses = cluster.mqtt_addresses()
    client_id = "bench-gw-failover"
    extra = [*cluster.gateway_flags(), "--mqtt", ",".join(f"{h}:{p}" for h, p in addresses)]
    gw = GatewayProcess(work, addresses[0][1], client_id=client_id, extra=extra).start()
    units = []
    try:
        for u in FAILOVER_UNITS:
            gw.register(u)
        n = len(FAILOVER_UNITS)
        units = [
            Unit(u, i, passwords[u], addresses, cluster.ca.ca_cert, REPORT_S * i / n)
            for i, u in enumerate(FAILOVER_UNITS)
        ]
        for u in units:
            u.start()
        kills = failovers(cluster, gw, client_id, units)
        for u in units:
            u.stop.set()
        for u in units:
            u.join(ACK_TIMEOUT_S + 1)
        acked = sum(u.acked for u in units)
        wait_until(
            lambda: gateway_health(gw)["accepted"] >= acked, 20, 0.2, "every acknowledged report stored"
        )
        accepted = gateway_health(gw)["accepted"]
    finally:
        for u in units:
            u.stop.set()
        gw.stop()
    print(
        f"# failover units: {acked} reports PUBACKed, {accepted} stored; {sum(u.resends for u in units)}"
        f" sent again on a new link, {sum(u.connects for u in units)} connects",
        file=sys.stderr,
    )
    return kills


def figures():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mosquitto = Mosquitto(tmp / "mosquitto", secure=True).start()
        cluster = None
        try:
            cluster = NatsCluster(tmp / "nats").start()
            setups = [
                Setup("mosquitto", mosquitto, [("127.0.0.1", mosquitto.port)], unit_logins(mosquitto, UNITS)),
                Setup("nats", cluster, cluster.mqtt_addresses(), unit_logins(cluster, UNITS)),
            ]
            rates = ingest_rates(setups, tmp)
            mosquitto.stop()
            kills = failover_run(cluster, unit_logins(cluster, FAILOVER_UNITS), tmp / "failover")
        finally:
            mosquitto.stop()
            if cluster is not None:
                cluster.stop()
    best = {k: max(v) for k, v in rates.items()}
    print(
        f"# ingest reports/s of a {BACKLOG}-report backlog, TLS and logins on both:"
        f" mosquitto {[round(r) for r in rates['mosquitto']]} nats {[round(r) for r in rates['nats']]}",
        file=sys.stderr,
    )
    ratio = best["nats"] / best["mosquitto"]
    worst = max(k[0] for k in kills)
    figures = [
        ("broker.nats_ingest_reports_per_s", round(best["nats"]), "reports/s"),
        ("broker.nats_ingest_ratio_vs_mosquitto", round(ratio, 3), "ratio"),
        ("broker.node_failover_s", round(worst, 2), "s"),
    ]
    missed = []
    if ratio < 0.05:  # no target in issue 16: this is broken, not slow
        missed.append(f"NATS ingest at {ratio:.3f} of Mosquitto's")
    if worst > FAILOVER_TARGET_S:
        missed.append(f"node failover {worst:.1f} s > {FAILOVER_TARGET_S} s")
    if missed:
        raise RuntimeError("broker: " + "; ".join(missed))
    return figures
