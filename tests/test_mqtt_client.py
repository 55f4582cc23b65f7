"""The firmware's MQTT client (firmware/lib/mqtt.py), run in the MicroPython unix port
against a real Mosquitto: restarted, unreachable at boot, behind a silent link, with a
password file, behind TLS; and, for what Mosquitto will not do, against a scripted
broker: one that never PUBACKs, closes on CONNECT, redelivers with DUP.
tests/firmware/mqtt_scenario.py is the firmware side: one scenario per run, one JSON line
per step, and a line on its stdin where it waits for the test."""

import getpass
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_until

import simulators.link
from provisioning.mosquitto import Mosquitto
from provisioning.processes import free_port
from simulators.link import Link, MQTTFramer
from simulators.vunit import micropython_bin

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "firmware" / "mqtt_scenario.py"
DATA = REPO / "tests" / "data"


# the firmware side
class Scenario:
    """One run of mqtt_scenario.py: its steps as they arrive, `go` to let it on."""

    def __init__(self, name, cwd, **opts):
        env = dict(os.environ, MICROPYPATH=f".frozen:{REPO / 'firmware' / 'lib'}:{REPO / 'firmware'}")
        self.proc = subprocess.Popen(
            [micropython_bin(), "-X", "heapsize=128K", str(SCRIPT), name, json.dumps(opts)],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.steps = []  # every step so far, with "t", its arrival (time.monotonic())
        self.other = []  # output that is not a step: a traceback
        self._taken = set()
        self._ended = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                try:
                    step = json.loads(line)
                    step["t"] = time.monotonic()
                    self.steps.append(step)
                except ValueError:
                    self.other.append(line)
                self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def expect(self, name, timeout=10.0):
        """The first step called `name` not returned before (steps of other names may
        come in between); AssertionError after `timeout` s or on an unexpected error."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, step in enumerate(self.steps):
                    if i in self._taken:
                        continue
                    if step["step"] == name:
                        self._taken.add(i)
                        return step
                    if step["step"] == "error":
                        raise AssertionError(f"scenario failed before {name!r}:\n{self.log()}")
                left = deadline - time.monotonic()
                if self._ended or left <= 0:
                    raise AssertionError(f"no step {name!r} after {timeout} s:\n{self.log()}")
                self._cond.wait(left)

    def go(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout=10.0):
        self.expect("end", timeout)
        self.proc.wait(timeout)
        assert self.proc.returncode == 0 and not self.other, self.log()

    def log(self):
        return "\n".join(json.dumps(s) for s in self.steps) + "\n" + "".join(self.other)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def scenario(tmp_path):
    """Start mqtt_scenario.py: scenario(name, **options) -> Scenario."""
    runs = []

    def start(name, **opts):
        run = Scenario(name, tmp_path, **opts)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()
        print(f"--- steps of {run.proc.args[3]} (shown when a test fails)\n{run.log()}")


@pytest.fixture
def topics(unit_id):
    return {"id": unit_id, "up": f"t/{unit_id}/up", "down": f"t/{unit_id}/down"}


# brokers
class Broker(Mosquitto):
    """Mosquitto from one of tests/data's configurations (@PORT@, @DATA@, @USER@)."""

    def __init__(self, data_dir, template, port=None):
        super().__init__(data_dir, port)
        self.template = DATA / template

    def write_config(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = self.template.read_text()
        for name, value in (("PORT", self.port), ("DATA", self.data_dir), ("USER", getpass.getuser())):
            text = text.replace(f"@{name}@", str(value))
        self.config_path.write_text(text)


@pytest.fixture
def own_broker(tmp_path):
    """A Mosquitto of this test's own (from the repository's config), to stop and start."""
    m = Mosquitto(tmp_path / "own-broker").start()
    yield m
    m.stop()


def downlink(port, topic, payload):
    """Publish as the gateway would: QoS 1, through a client of its own."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gw-{os.getpid()}-{time.monotonic_ns()}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        c.loop_stop()
        c.disconnect()


@pytest.fixture
def wire_log(monkeypatch):
    """Every QoS 1 PUBLISH that crosses a Link: (first byte, packet id, topic, payload)."""
    seen = []
    describe = simulators.link.describe

    def recording(packet, header_len):
        kind, topic, size = describe(packet, header_len)
        if kind == "PUBLISH" and packet[0] & 0x06:
            at = header_len + 2 + int.from_bytes(packet[header_len : header_len + 2], "big")
            seen.append(
                (packet[0], int.from_bytes(packet[at : at + 2], "big"), topic, bytes(packet[at + 2 :]))
            )
        return kind, topic, size

    monkeypatch.setattr(simulators.link, "describe", recording)
    return seen


# a scripted broker, for what Mosquitto will not do
def _packet(first, body):
    n, length = len(body), bytearray()
    while True:
        length.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes([first]) + bytes(length) + body


def connack(sp=0, rc=0):
    return bytes([0x20, 2, sp, rc])


def puback(pid):
    return b"\x40\x02" + pid.to_bytes(2, "big")


def suback(pid, granted=1):
    return b"\x90\x03" + pid.to_bytes(2, "big") + bytes([granted])


def publish(topic, payload, pid, dup=False):
    body = len(topic).to_bytes(2, "big") + topic.encode() + pid.to_bytes(2, "big") + payload
    return _packet(0x3A if dup else 0x32, body)


class Seen:
    """A packet the scripted broker received on connection `conn` (1, 2, ...)."""

    def __init__(self, conn, raw, header_len):
        self.conn, self.first, self.kind = conn, raw[0], raw[0] >> 4
        body = raw[header_len:]
        self.pid = self.topic = None
        self.payload = b""
        if self.kind == 3:
            at = 2 + int.from_bytes(body[:2], "big")
            self.topic = body[2:at].decode()
            self.pid = int.from_bytes(body[at : at + 2], "big")
            self.payload = body[at + 2 :]
        elif self.kind in (4, 8):  # PUBACK, SUBSCRIBE
            self.pid = int.from_bytes(body[:2], "big")

    def __repr__(self):
        return f"Seen(conn={self.conn}, first={self.first:#x}, pid={self.pid}, payload={self.payload!r})"


class ScriptedBroker:
    """Answers each packet with `answer(conn, seen)`: bytes to send back (b"" for none),
    or None to close the connection; `seen` is None right after the accept."""

    def __init__(self, answer):
        self.answer = answer
        self.seen = []
        self.closed = []  # connections the client closed
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port = self._srv.getsockname()[1]
        self._conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, len(self._conns)), daemon=True).start()

    def _reply(self, sock, data):
        if data is None:
            sock.close()
            return False
        if data:
            sock.sendall(data)
        return True

    def _serve(self, sock, n):
        framer = MQTTFramer()
        try:
            if not self._reply(sock, self.answer(n, None)):
                return
            while data := sock.recv(65536):
                for raw, header_len in framer.feed(data):
                    seen = Seen(n, raw, header_len)
                    self.seen.append(seen)
                    if not self._reply(sock, self.answer(n, seen)):
                        return
            self.closed.append(n)
        except OSError:
            self.closed.append(n)

    def stop(self):
        self._srv.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def scripted():
    brokers = []

    def start(answer):
        b = ScriptedBroker(answer)
        brokers.append(b)
        return b

    yield start
    for b in brokers:
        b.stop()


def obliging(conn, seen, sp=0, puback_from=1):
    """A broker that answers as it should, PUBACKs from connection `puback_from` on and
    reports Session Present `sp` from the second connection on."""
    if seen is None:
        return b""
    if seen.kind == 1:
        return connack(sp if conn > 1 else 0)
    if seen.kind == 8:
        return suback(seen.pid)
    if seen.kind == 3:
        return puback(seen.pid) if conn >= puback_from else b""
    if seen.kind == 12:
        return b"\xd0\x00"
    return b""


# Mosquitto
def test_qos1_both_ways_and_a_downlink_queued_while_offline(broker, mqtt_client, scenario, topics):
    got = []
    mqtt_client.on_message = lambda c, u, m: got.append(m.payload)
    mqtt_client.subscribe(topics["up"], 1)
    time.sleep(0.2)
    run = scenario("pubsub", port=broker.port, **topics)
    assert run.expect("connected")["sp"] is False  # a new unit: no session yet
    assert run.expect("published")["inflight"] == []  # PUBACK came: nothing in flight
    wait_until(lambda: got == [b"one", b"zero"], what="QoS 1 and QoS 0 messages at a subscriber")

    mqtt_client.publish(topics["down"], b"assign-41", qos=1).wait_for_publish(5)
    assert run.expect("message")["payload"] == "assign-41"
    run.go()
    assert run.expect("offline")["connected"] is False

    mqtt_client.publish(topics["down"], b"config-7", qos=1).wait_for_publish(5)  # unit away
    run.go()
    assert run.expect("connected")["sp"] is True  # clean session off: the broker kept it
    assert run.expect("message")["payload"] == "config-7"
    run.go()
    run.finish()


def test_broker_restart_resends_the_unacknowledged_message_with_dup(own_broker, scenario, topics, wire_log):
    link = Link(own_broker.port).start()
    try:
        run = scenario("restart", port=link.port, connect_ms=2000, **topics)
        assert run.expect("connected")["sp"] is False
        run.expect("ready")

        link.silent.set()  # the PUBLISH leaves, no PUBACK comes back
        run.go()
        assert "no acknowledgement" in run.expect("no_puback")["error"]
        closed = run.expect("closed")
        assert closed["connected"] is False and len(closed["inflight"]) == 1
        pid = closed["inflight"][0]

        link.cut()  # the held PUBLISH never reaches the broker
        link.silent.clear()
        own_broker.stop()  # with persistence: the unit's session is saved
        own_broker.start()
        run.go()
        up = run.expect("connected", timeout=15)
        assert up["sp"] is True and up["resent"] == 1 and up["subscribed"] is False
        assert run.expect("acked")["inflight"] == []  # the broker PUBACKed the resent one
        sent = [(first, p) for first, p, topic, payload in wire_log if payload == b"inflight"]
        assert sent == [(0x32, pid), (0x3A, pid)]  # again with DUP and its packet id

        run.go()
        own_broker.stop()  # under a live link: the client notices
        assert "closed" in run.expect("lost")["error"]
        own_broker.start()
        up = run.expect("connected", timeout=15)
        assert up["sp"] is True and up["subscribed"] is False
        downlink(own_broker.port, topics["down"], b"ack-17")  # still subscribed
        assert run.expect("message")["payload"] == "ack-17"
        run.go()
        run.finish()
    finally:
        link.stop()


def test_broker_unreachable_at_boot(tmp_path, scenario, topics):
    port = free_port()
    run = scenario("unreachable", port=port, **topics)
    down = run.expect("down")
    assert "ECONNREFUSED" in down["error"] and f":{port}" in down["error"] and down["ms"] < 500
    late = Mosquitto(tmp_path / "late-broker", port=port).start()
    try:
        assert run.expect("connected")["sp"] is False
        assert run.expect("published")["inflight"] == []
        run.finish()
    finally:
        late.stop()


def test_a_silent_link_is_found_dead_within_twice_the_keepalive(link, scenario, topics):
    keepalive = 2
    run = scenario("halfopen", port=link.port, keepalive=keepalive, **topics)
    assert run.expect("connected")["sp"] is False
    run.expect("ready")
    link.silent.set()  # a dead zone: nothing gets through, TCP does not notice
    silent_at = time.monotonic()
    run.go()
    dead = run.expect("dead", timeout=4 * keepalive)
    assert "silent" in dead["error"] and dead["connected"] is False
    assert keepalive <= dead["t"] - silent_at <= 2 * keepalive, dead
    link.silent.clear()
    run.go()
    assert run.expect("connected")["sp"] is True
    assert run.expect("published")["inflight"] == []
    run.finish()


@pytest.fixture
def auth_broker(tmp_path):
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto_passwd is not installed")
    m = Broker(tmp_path / "auth-broker", "mosquitto-auth.conf")
    m.data_dir.mkdir(parents=True)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(m.data_dir / "passwd"), "amb-01", "s3cret"], check=True
    )
    yield m.start()
    m.stop()


@pytest.mark.parametrize(
    "user,password,refused",
    [
        ("amb-01", "s3cret", None),
        ("amb-01", "wrong", "not authorised (5)"),
        (None, None, "not authorised (5)"),
    ],
)
def test_user_name_and_password(auth_broker, scenario, topics, user, password, refused):
    run = scenario("connect", port=auth_broker.port, user=user, password=password, **topics)
    if refused:
        down = run.expect("down")
        assert f"broker refused: {refused}" in down["error"] and down["connected"] is False, down
    else:
        assert run.expect("published")["inflight"] == []
    run.finish()


# TLS
def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def certs(tmp_path):
    """A throwaway CA, a server certificate it signed (localhost, 127.0.0.1), another CA."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is not installed")
    d = tmp_path / "certs"
    d.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        cwd=d,
    )
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=d,
    )
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "other.key",
        "-out",
        "other.crt",
        "-days",
        "2",
        "-subj",
        "/CN=not ours",
        cwd=d,
    )
    _openssl("x509", "-in", "ca.crt", "-outform", "DER", "-out", "ca.der", cwd=d)
    return d


@pytest.fixture
def tls_broker(tmp_path, certs):
    m = Broker(tmp_path / "tls-broker", "mosquitto-tls.conf")
    m.data_dir.mkdir(parents=True)
    for name in ("ca.crt", "server.crt", "server.key"):
        shutil.copy(certs / name, m.data_dir / name)
    yield m.start()
    m.stop()


@pytest.mark.parametrize(
    "ca,hostname,refused",
    [
        ("ca.crt", "localhost", None),
        ("ca.der", None, None),  # DER, and the name checked is the host's, 127.0.0.1
        ("other.crt", "localhost", "not correctly signed by the trusted CA"),
        ("ca.crt", "broker.example", "Common Name (CN) does not match"),
        ("missing.crt", "localhost", "TLS: no CA file '/"),
        ("", "localhost", "TLS: no CA file ''"),
        ("server.key", "localhost", "TLS: "),  # not a certificate
    ],
)
def test_tls_verifies_the_broker_certificate(tls_broker, certs, scenario, topics, ca, hostname, refused):
    ca_path = str(certs / ca) if ca else ""
    run = scenario("connect", port=tls_broker.port, ca=ca_path, hostname=hostname, **topics)
    if refused:
        down = run.expect("down")
        assert refused in down["error"] and down["connected"] is False, down
    else:
        assert run.expect("published")["inflight"] == []
    run.finish()


def test_the_unit_links_over_tls_only_with_the_right_ca(broker, tls_broker, certs, vunits, unit_id):
    good = vunits(
        unit_id,
        broker=("127.0.0.1", tls_broker.port),
        config={"broker_tls": True, "broker_ca": str(certs / "ca.crt"), "broker_hostname": "localhost"},
    )
    bad = vunits(
        unit_id + "-x",
        broker=("127.0.0.1", tls_broker.port),
        config={"broker_tls": True, "broker_ca": str(certs / "other.crt"), "broker_hostname": "localhost"},
    )
    wait_until(lambda: any("link up" in line for line in good.lines), what="the unit's link over TLS")
    wait_until(lambda: any("not correctly signed" in line for line in bad.lines), what="the refused broker")
    assert not any("link up" in line for line in bad.lines)


# the scripted broker
@pytest.mark.parametrize("sp", [1, 0])
def test_a_puback_that_never_comes(scripted, scenario, topics, sp):
    broker = scripted(lambda conn, seen: obliging(conn, seen, sp=sp, puback_from=2))
    run = scenario("noack", port=broker.port, **topics)
    run.expect("connected")
    failed = run.expect("no_puback")
    assert "no acknowledgement" in failed["error"] and 900 <= failed["ms"] < 2000, failed
    closed = run.expect("closed")
    assert closed["connected"] is False and len(closed["inflight"]) == 1 and closed["ended"]
    wait_until(lambda: 1 in broker.closed, what="the client closing the dead link")
    pid = closed["inflight"][0]

    up = run.expect("connected")
    assert up["sp"] is bool(sp) and up["resent"] == 1
    assert run.expect("acked")["inflight"] == []
    second = [(s.kind, s.first, s.pid, s.payload) for s in broker.seen if s.conn == 2]
    assert second[0][0] == 1 and second[1][0] == 3 and second[2][0] == 8  # the resent one first
    if sp:  # the broker kept the session: DUP, the same packet id
        assert second[1][1:] == (0x3A, pid, b"lost?")
    else:  # the session is gone: a new message
        assert second[1][1] == 0x32 and second[1][3] == b"lost?"
    run.finish()


def test_unacknowledged_messages_are_bounded_and_the_dropped_counted(scripted, scenario, topics):
    broker = scripted(lambda conn, seen: obliging(conn, seen, sp=1, puback_from=2))
    run = scenario("bounded", port=broker.port, **topics)
    run.expect("connected")
    closed = run.expect("closed")
    assert len(closed["inflight"]) == 8 and closed["discards"] == 2
    up = run.expect("connected")
    assert up["resent"] == 8
    assert run.expect("acked")["inflight"] == []
    resent = [s.payload for s in broker.seen if s.conn == 2 and s.kind == 3]
    assert resent == [b"m%d" % i for i in range(2, 10)]  # the newest eight, in order
    run.finish()


@pytest.mark.parametrize("how", ["at_accept", "after_connect", "never_answers"])
def test_a_broker_that_closes_on_connect_is_a_clear_error(scripted, scenario, topics, how):
    def answer(conn, seen):
        if how == "at_accept":
            return None
        if how == "after_connect" and seen is not None:
            return None
        return b""

    broker = scripted(answer)
    run = scenario("connect", port=broker.port, connect_ms=1000, **topics)
    down = run.expect("down", timeout=5)
    assert down["error"].startswith(f"connect to 127.0.0.1:{broker.port} failed: ") and not down["connected"]
    if how == "never_answers":
        assert "no CONNACK within 1000 ms" in down["error"] and down["ms"] < 1500
    else:
        assert "connection closed" in down["error"] or "ECONNRESET" in down["error"], down
        assert down["ms"] < 500
    run.finish()


def test_downlink_redelivered_with_dup_is_acked_again_and_an_oversized_one_dropped(
    scripted, scenario, topics
):
    down = topics["down"]

    def answer(conn, seen):
        if seen is not None and seen.kind == 1:
            return (
                connack()
                + publish(down, b"x" * 600, 8)  # over the client's max_packet: dropped
                + publish(down, b'{"_type": "ack", "seq": 3}', 7)
                + publish(down, b'{"_type": "ack", "seq": 3}', 7, dup=True)
            )
        return obliging(conn, seen)

    broker = scripted(answer)
    run = scenario("downlink", port=broker.port, max_packet=512, **topics)
    acks = lambda: [s.pid for s in broker.seen if s.kind == 4]  # noqa: E731
    wait_until(lambda: acks() == [8, 7, 7], what="a PUBACK for each, the DUP included")
    run.go()
    assert run.expect("counts")["oversize"] == 1
    messages = [s["payload"] for s in run.steps if s["step"] == "message"]
    assert messages == ['{"_type": "ack", "seq": 3}'] * 2  # the DUP delivered too
    run.finish()


def test_bytes_that_are_no_mqtt_drop_the_link_at_once(scripted, scenario, topics):
    # a modem's result codes in its transparent data stream after the network went
    # (data_path modem_tcp): MQTT 3.1.1 §4.8, a protocol violation closes the connection
    def answer(conn, seen):
        if seen is not None and seen.kind == 8:
            return suback(seen.pid) + b"\r\nNO CARRIER\r\n\r\n+CEREG: 0\r\n"
        return obliging(conn, seen)

    broker = scripted(answer)
    run = scenario("garbage", port=broker.port, **topics)
    lost = run.expect("lost", timeout=5)
    assert lost["error"] == "protocol violation: packet 0x0d from the broker", lost
    assert lost["ms"] < 1000 and lost["errors"] == 1
    assert not [s for s in run.steps if s["step"] == "message"]
    run.finish()
