"""MQTT ingest with paho-mqtt: a persistent session, QoS 1, and acknowledgement to the
broker only after the batch that stores a message has committed (manual_ack).

paho's network thread only queues messages; one worker thread takes them in batches
(group commit), runs the pipeline, then acknowledges and sends downlinks. Under load a
batch is let fill while messages keep coming (`_gather`): most of a batch's cost is per
unit it touches (its snapshot, its B-tree leaf, its view) and per commit, not per
message, so a report in a batch of 500 costs about a third of one in a batch of 50.

With several gateways on one database only the leader (leadership.py) holds the MQTT
session: `lead()` connects it, `follow()` lets it go. A standby keeps a connection of its
own, with a client id of its own and no subscriptions, to send the downlinks of what is
done on it (a dispatcher's action, a settings push). A message is acknowledged only on
the connection it came on.
"""

import logging
import struct
import threading
import time
from collections import deque

import paho.mqtt.client as mqtt

from .errors import ConfigError
from .pipeline import Changed, Incoming

log = logging.getLogger("siaga.ingest")

SUBSCRIPTIONS = [("siaga/+/pos", 1), ("siaga/+/status", 1), ("siaga/+/conn", 1), ("siaga/+/tele", 0)]
BATCH_MAX = 500  # the broker sends 1,000 unacknowledged (mosquitto.conf): one batch fills as one commits
GATHER_FROM = 50  # this many waiting when a batch starts: under load, let it fill
GATHER_POLL_S = 0.0005  # ... while each poll finds more come in
GATHER_MAX_S = 0.02  # ... and for no longer than this
PUBACK = struct.Struct("!BBH")  # MQTT 3.1.1 §3.4: type, remaining length 2, packet identifier
TICK_S = 1.0
PURGE_EVERY_S = 3600.0
INBOX_MAX = 20_000  # QoS 0 messages (telemetry) past this are shed; QoS 1 is bounded by the broker
RETRY_MIN_S, RETRY_MAX_S = 0.5, 10.0  # while the store cannot write, messages wait and are tried again


class Ingest:
    def __init__(
        self,
        pipeline,
        host,
        port,
        client_id="siaga-gateway",
        username=None,
        password=None,
        ca=None,
        clock=time.time,
        retention_s=None,
        stall_after=15.0,
        leading=True,
        instance="gateway",
        more_brokers=(),
    ):
        self.retention_s = retention_s
        self.stall_after = stall_after
        self.pipeline = pipeline
        self.host, self.port = host, port
        # a cluster's nodes: after a failed connect or a lost connection, the next one
        self.brokers = [(host, port), *more_brokers]
        self.broker_at = 0
        self.clock = clock
        self.inbox = deque()  # append and popleft are thread-safe; `arrived` wakes the worker
        self.arrived = threading.Event()
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self.working = []  # the batch being handled: received, not yet acknowledged
        self.started_at = self.last_commit_at = clock()
        self.disconnected_at = self.started_at  # not connected yet
        self.shed = 0  # QoS 0 messages dropped because the inbox was full
        self.changes_dropped = False  # other gateways' change notes dropped: read everything again
        self.retry_s = 0.0
        self.client_id, self.instance = client_id, instance
        self.credentials, self.ca = (username, password), ca
        self.leading = leading
        self.swapping = threading.Lock()
        self.client = self._new_client(leading)
        self.worker = threading.Thread(target=self._work, name="siaga-ingest", daemon=True)

    def _new_client(self, leading):
        """The leader's persistent session (the gateway's client id, QoS 1, acknowledged
        after the commit), or a standby's connection for downlinks only."""
        if leading:
            client_id, clean = self.client_id, False
        else:
            client_id, clean = f"{self.client_id}-{self.instance}"[:64], True
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean, manual_ack=True
        )
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(100)
        username, password = self.credentials
        if username:
            client.username_pw_set(username, password)
        if self.ca:  # TLS, the broker's certificate verified against this CA (and its name)
            try:
                client.tls_set(ca_certs=self.ca)
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
                raise ConfigError(f"mqtt_ca {self.ca}: not a readable CA certificate ({e})") from None
        client.on_connect = self._on_connect
        client.on_connect_fail = self._next_broker
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(0.5, 10)
        return client

    def start(self):
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self.worker.start()

    def stop(self):
        self.stopping.set()
        self.worker.join(timeout=5)
        with self.swapping:
            self.client.disconnect()
            self.client.loop_stop()

    def lead(self):
        """This gateway ingests now: the MQTT session is its."""
        self._swap(True)

    def follow(self):
        """Another gateway ingests (or may): the session goes at once, unacknowledged
        messages with it, for the broker to send to the leader."""
        self._swap(False)

    def _swap(self, leading):
        with self.swapping:
            if self.stopping.is_set() or leading == self.leading:
                return
            old, self.leading = self.client, leading
            self.client = self._new_client(leading)  # first: the old one's callbacks go unheard
            self.connected.clear()
            self.disconnected_at = self.clock()
            old.disconnect()
            old.loop_stop()
            self.client.connect_async(self.host, self.port, keepalive=30)
            self.client.loop_start()
            log.info("MQTT: %s", "the gateway's session" if leading else "downlinks only (standby)")

    def _on_connect(self, client, userdata, flags, reason, props):
        if client is not self.client:
            return
        if reason.is_failure:
            log.error("broker %s:%s refused the connection: %s", self.host, self.port, reason)
            return
        log.info("connected to %s:%s (session present: %s)", self.host, self.port, flags.session_present)
        if self.leading:
            client.subscribe(SUBSCRIPTIONS)
        self.connected.set()
        self.disconnected_at = None

    def _next_broker(self, client, userdata=None):
        """Another node of the cluster for the next try, after a failed connect or a lost
        connection (paho's backoff between tries stays): the persistent session is the
        cluster's, so any node serves it. paho's `host` and `port` may not be set while
        it still counts the connection as open, which it does right after losing one, so
        its own fields are set (paho-mqtt 2.2, pinned; tests/test_ingest.py checks)."""
        if len(self.brokers) < 2 or client is not self.client:
            return
        self.broker_at = (self.broker_at + 1) % len(self.brokers)
        self.host, self.port = self.brokers[self.broker_at]
        client._host, client._port = self.host, self.port
        log.info("next broker: %s:%s", self.host, self.port)

    def _on_disconnect(self, client, userdata, flags, reason, props):
        if client is not self.client:
            return
        self._next_broker(client)
        self.connected.clear()
        if self.disconnected_at is None:
            self.disconnected_at = self.clock()
        if not self.stopping.is_set():
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, client, userdata, msg):
        if not msg.qos and len(self.inbox) >= INBOX_MAX:
            self.shed += 1  # telemetry: the next report replaces it
            return
        self._put(Incoming(msg.topic, msg.payload, self.clock(), msg.mid, msg.qos, client))

    def _put(self, item):
        self.inbox.append(item)
        if not self.arrived.is_set():
            self.arrived.set()

    def _batch(self, timeout):
        if not self.inbox and not self.arrived.wait(timeout):
            return []
        self.arrived.clear()
        if len(self.inbox) >= GATHER_FROM:
            self._gather()
        items, inbox = [], self.inbox
        while inbox and len(items) < BATCH_MAX:
            items.append(inbox.popleft())
        if inbox:
            self.arrived.set()
        return items

    def _gather(self):
        """Wait while messages keep arriving, up to a full batch: the first poll that finds
        nothing new (the broker's in-flight window is used up, or the backlog drained) ends
        it, so no more than one poll is spent waiting for what is not coming."""
        inbox, seen = self.inbox, len(self.inbox)
        deadline = time.monotonic() + GATHER_MAX_S
        while seen < BATCH_MAX and time.monotonic() < deadline:
            time.sleep(GATHER_POLL_S)
            if len(inbox) == seen:
                return
            seen = len(inbox)

    def _work(self):
        next_tick = self.clock() + TICK_S
        next_purge = self.clock()
        while not self.stopping.is_set():
            try:
                items = self._batch(max(0.0, next_tick - self.clock()))
                if items:
                    self._handle(items)
                if self.clock() >= next_tick:
                    if self.changes_dropped and len(self.inbox) < INBOX_MAX:
                        self.offer_change(Changed(everything=True))
                    self.pipeline.tick(self.clock())
                    next_tick = self.clock() + TICK_S
                if self.retention_s and self.leading and self.clock() >= next_purge:
                    self._purge()
                    next_purge = self.clock() + PURGE_EVERY_S
            except Exception:  # the worker must live on; /health shows a stall if it cannot work
                log.exception("ingest worker")
                self.stopping.wait(1.0)

    def _purge(self):
        try:
            gone = self.pipeline.store.purge(self.clock() - self.retention_s)
            gone += self.pipeline.store.trim_quarantine()
        except Exception:
            log.exception("purging old records failed; trying again later")
            return
        if gone:
            log.info("retention: forgot %d records older than %.0f days", gone, self.retention_s / 86400)

    def send_down(self, topic, payload):
        """A downlink message, QoS 1: the broker keeps it for an offline unit's session."""
        self.client.publish(topic, payload, qos=1)

    def offer_change(self, note):
        """Another gateway's change (notifications.py), for the worker. Past INBOX_MAX
        waiting the notes are dropped and, once there is room, every unit is read again
        instead (bounded, and nothing missed)."""
        if len(self.inbox) >= INBOX_MAX:
            self.changes_dropped = True
            return
        if self.changes_dropped:
            self.changes_dropped = False
            note = Changed(everything=True)
        self._put(note)

    def submit(self, action, timeout=10):
        """Run a dispatcher action on the worker thread, in turn with the messages;
        returns (action id, the unit's new view)."""
        self._put(action)
        return action.done.result(timeout)

    def _handle(self, items):
        self.working = items
        try:
            out = self.pipeline.handle(items, self.clock())
        finally:
            self.working = []
        if out.acknowledge:
            self._acknowledge(out.acknowledge)
            self.last_commit_at = self.clock()
        for topic, payload in out.downlinks:
            self.client.publish(topic, payload, qos=1)
        if out.retry:  # the store cannot write: the messages wait, in their order, and go again
            self.inbox.extendleft(reversed(out.retry))
            self.retry_s = min(RETRY_MAX_S, max(RETRY_MIN_S, self.retry_s * 2))
            self.stopping.wait(self.retry_s)
        else:
            self.retry_s = 0.0

    def health(self):
        """How ingest is doing, for /health: what waits and since when, the last commit,
        and whether it is degraded (`problems` says why)."""
        now = self.clock()
        working, inbox = self.working, self.inbox
        waiting = len(working) + len(inbox)
        oldest = getattr(working[0], "received_at", now) if working else None
        if oldest is None and inbox:
            try:
                oldest = getattr(inbox[0], "received_at", now)  # an action, a change: now
            except IndexError:  # taken by the worker meanwhile
                oldest = None
        lag = max(0.0, now - oldest) if oldest is not None else 0.0
        problems = []
        if waiting and lag > self.stall_after and now - self.last_commit_at > self.stall_after:
            problems.append(f"ingest stalled: nothing committed for {now - self.last_commit_at:.0f} s")
        if self.disconnected_at is not None and now - self.disconnected_at > self.stall_after:
            problems.append(f"broker unreachable for {now - self.disconnected_at:.0f} s")
        return {
            "mqtt_connected": self.connected.is_set(),
            "mqtt_session": self.leading,  # holds the gateway's session (leads), or downlinks only
            "in_flight": waiting,
            "ingest_lag_s": round(lag, 3),
            "last_commit_at": self.last_commit_at,
            "shed": self.shed,
            "problems": problems,
        }

    def _acknowledge(self, items):
        """PUBACK the batch's QoS 1 messages, in the order they came, with one write.

        paho's `ack` queues one packet per message and wakes its network thread for each,
        which sends them one by one; every call gives up the GIL, which paho's thread then
        holds while the worker waits. The same packets in one queued write, through the
        queue `ack` itself uses (paho-mqtt 2.2, pinned), cost one wake-up. If that method
        is ever gone, each message is acknowledged on its own as before."""
        # QoS 1 only: SUBSCRIPTIONS asks for no more; and only on the connection it came on
        client = self.client
        mids = [i.mid for i in items if isinstance(i, Incoming) and i.qos and i.session is client]
        queue = getattr(client, "_packet_queue", None)
        if len(mids) > 1 and queue is not None:
            queue(mqtt.PUBACK, b"".join([PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids]), 0, 0)
        else:
            for mid in mids:
                client.ack(mid, 1)
