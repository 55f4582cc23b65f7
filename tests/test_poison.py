"""Tried as an attacker holding one unit's broker login would, through a real Mosquitto
and the real gateway process: poison messages, forged times and identities, a flood.
Each is refused with a reason, changes no unit's state, and never stops ingest; when
ingest does stop (its store cannot write) or the broker is gone, /health says so (503)
and so do `siaga units` and the map. The pipeline's own judging of each case is in
tests/test_judging.py."""

import json
import sqlite3
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
from conftest import REPO, GatewayProcess, wait_until

from provisioning.mosquitto import Mosquitto

NOW = int(time.time())
UNITS = [f"fl{i}" for i in range(6)]


def status(seq, key, t=None, boot=1, **more):
    t = int(time.time()) - 1 if t is None else t
    return json.dumps({"_type": "status", "boot": boot, "seq": seq, "key": key, "t": t, "sent": t, **more})


def birth(seq=0, boot=1, **more):
    now = int(time.time())
    return json.dumps({"_type": "birth", "boot": boot, "seq": seq, "t": now, "sent": now, **more})


def publish(client, topic, payload, retain=False):
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)


def quarantine(gateway, units):
    """Reasons of the quarantined messages of these units, read from the gateway's database."""
    db = sqlite3.connect(f"file:{gateway.data_dir / 'siaga.db'}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(units))
        sql = f"select reason from quarantine where unit_id in ({marks}) order by id"
        return [r[0] for r in db.execute(sql, list(units))]
    finally:
        db.close()


def presses(gateway, unit_id):
    rows = gateway.get(f"/api/v1/units/{unit_id}/statuses?limit=1000")[1]
    return [r for r in rows if r["source"] == "crew"]


POISON = [
    ("status", b'{"_type": []}'),
    ("status", b'{"_type": {}}'),
    ("status", b"[" * 3000),
    ("status", status(90, 3, lat=18446744073709551616).encode()),
    ("conn", b'{"_type": "birth", "boot": 1, "seq": 91, "t": 1, "sent": 1, "fw": NaN}'),
    ("tele", b'{"_type": "tele", "boot": 1, "seq": 92, "t": 1, "sent": 1, "supply_v": Infinity}'),
    ("pos", b"\x50" * 30),
    ("conn", b'{"_type": "will", "boot": 65535, "seq": 4294967295}'),
    ("status", status(93, 3, t=NOW + 3600).encode()),
]


def test_poison_costs_only_itself_and_the_unit_and_health_stay_right(gateway, mqtt_client, unit_id):
    gateway.register(unit_id)
    publish(mqtt_client, f"siaga/{unit_id}/conn", birth())
    for n, (kind, payload) in enumerate(POISON):
        publish(mqtt_client, f"siaga/{unit_id}/{kind}", payload)
        publish(mqtt_client, f"siaga/{unit_id}/status", status(n + 1, 2 + n % 2))
    wait_until(lambda: len(presses(gateway, unit_id)) == len(POISON), what="every valid press stored")
    wait_until(lambda: len(quarantine(gateway, [unit_id])) == len(POISON), what="every poison quarantined")
    assert quarantine(gateway, [unit_id]) == [
        "bad_type",
        "bad_type",
        "bad_json",
        "bad_value",
        "bad_json",
        "bad_json",
        "bad_length",
        "boot_jump",
        "future_time",
    ]
    unit = gateway.unit(unit_id)  # with the device, as a supervisor: no NaN in it to fail on
    assert unit["link"] == "online" and unit["status"]["key"] == 2 + (len(POISON) - 1) % 2
    assert unit["device"]["fw"] is None  # the NaN birth never got in
    status_code, health = gateway.get("/api/v1/health")
    assert status_code == 200 and health["status"] == "ok" and health["problems"] == []


def test_a_retained_forged_will_holds_nothing_back_after_a_reset(gateway, mqtt_client, unit_id):
    gateway.register(unit_id)
    publish(mqtt_client, f"siaga/{unit_id}/conn", birth(seq=0, boot=3), retain=True)
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="online")
    forged = json.dumps({"_type": "bye", "boot": 40, "seq": 7, "t": NOW, "sent": NOW})  # ahead, within bounds
    publish(mqtt_client, f"siaga/{unit_id}/conn", forged, retain=True)
    wait_until(lambda: gateway.unit(unit_id)["link"] == "shutdown", what="the forged bye in force")
    publish(mqtt_client, f"siaga/{unit_id}/conn", birth(seq=0, boot=4), retain=True)
    time.sleep(0.5)
    assert gateway.unit(unit_id)["link"] == "shutdown"  # the real birth is older than the forgery
    out = subprocess.run(
        [sys.executable, "-m", "siaga", "unit", "reset-counters", unit_id, "--api", gateway.url],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"SIAGA_TOKEN": gateway.token, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0 and "forgot" in out.stderr, out.stderr
    publish(mqtt_client, f"siaga/{unit_id}/conn", birth(seq=0, boot=0), retain=True)  # e.g. new hardware
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the next birth in force")
    gateway.stop()  # and a restart, which brings the retained messages again, changes nothing
    gateway.start()
    time.sleep(1)
    assert gateway.unit(unit_id)["link"] == "online"


def test_a_flood_of_poison_among_presses_of_six_units(gateway, mqtt_client):
    """1,000 poison messages interleaved with 200 valid presses from 6 units: 200 stored,
    1,000 quarantined, every message acknowledged (a restart gets none of them again)."""
    for unit in UNITS:
        gateway.register(unit)
    seqs = dict.fromkeys(UNITS, 0)
    infos, pressed = [], 0
    for n in range(1200):
        unit = UNITS[n % len(UNITS)]
        if n % 6 == 5 and pressed < 200 or 1200 - n <= 200 - pressed:
            unit = UNITS[pressed % len(UNITS)]
            seqs[unit] += 1
            topic, payload = f"siaga/{unit}/status", status(seqs[unit], 1 + seqs[unit] % 4)
            pressed += 1
        else:
            kind, payload = POISON[n % len(POISON)]
            topic = f"siaga/{unit}/{kind}"
        infos.append(mqtt_client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(30)
    assert pressed == 200

    def stored():
        return sum(len(presses(gateway, u)) for u in UNITS)

    wait_until(lambda: stored() == 200, 60, 0.5, "200 presses stored")
    assert all(len(presses(gateway, u)) >= 33 for u in UNITS)
    wait_until(lambda: len(quarantine(gateway, UNITS)) == 1000, 60, 0.5, "1,000 quarantined")
    health = wait_until(lambda: (h := gateway.get("/api/v1/health")[1])["in_flight"] == 0 and h, what="idle")
    assert health["status"] == "ok"
    gateway.stop()
    gateway.start()  # the same persistent session: anything unacknowledged would come again
    time.sleep(2)
    assert len(quarantine(gateway, UNITS)) == 1000 and stored() == 200


def test_health_says_degraded_while_the_store_cannot_write_and_recovers(
    broker, mqtt_client, tmp_path, unit_id
):
    gw = GatewayProcess(tmp_path / "gw", broker.port, extra=["--ingest-stall-after", "2"]).start()
    try:
        gw.register(unit_id)
        publish(mqtt_client, f"siaga/{unit_id}/conn", birth())
        wait_until(lambda: gw.unit(unit_id)["link"] == "online", what="online")
        blocker = sqlite3.connect(gw.data_dir / "siaga.db", isolation_level=None)
        blocker.execute("begin immediate")  # another writer holds the database: commits wait and fail
        try:
            publish(mqtt_client, f"siaga/{unit_id}/status", status(1, 2))
            code, health = wait_until(
                lambda: (r := gw.get("/api/v1/health"))[0] == 503 and r, 30, 0.2, "/health 503"
            )
            assert health["status"] == "degraded" and "ingest stalled" in health["problems"][0]
            assert health["in_flight"] >= 1 and health["ingest_lag_s"] > 2
            out = siaga_units(gw)
            assert out.splitlines()[0].startswith("WARNING: the gateway is degraded (ingest stalled")
        finally:
            blocker.execute("rollback")
            blocker.close()
        wait_until(lambda: gw.get("/api/v1/health")[0] == 200, 30, 0.2, "/health ok again")
        assert [p["key"] for p in presses(gw, unit_id)] == [2]  # the press waited and went in
        assert "WARNING" not in siaga_units(gw)
    finally:
        gw.stop()


def test_health_says_degraded_while_the_broker_is_gone(tmp_path):
    own = Mosquitto(tmp_path / "broker").start()
    gw = GatewayProcess(tmp_path / "gw", own.port, extra=["--ingest-stall-after", "2"]).start()
    try:
        own.stop()
        code, health = wait_until(lambda: (r := gw.get("/api/v1/health"))[0] == 503 and r, 30, 0.2, "503")
        assert "broker unreachable" in health["problems"][0] and health["mqtt_connected"] is False
        own.start()
        wait_until(lambda: gw.get("/api/v1/health")[0] == 200, 30, 0.2, "/health ok again")
    finally:
        gw.stop()
        own.stop()


def siaga_units(gw):
    out = subprocess.run(
        [sys.executable, "-m", "siaga", "units", "--api", gw.url],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"SIAGA_TOKEN": gw.token, "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return out.stdout


def test_the_default_stall_time_reports_within_half_a_minute():
    from gateway import config

    settings = config.resolve(None, environ={})
    assert settings["ingest_stall_after"] + 1 < 30  # the health check sees it at the next request


def test_the_broker_takes_no_payload_over_4_kb(gateway, mqtt_client, unit_id):
    gateway.register(unit_id)
    big = status(1, 3, pad="x" * 5000).encode()  # over message_size_limit: dropped, its PUBACK sent
    publish(mqtt_client, f"siaga/{unit_id}/status", big)
    huge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"huge-{unit_id}")
    gone = []
    huge.on_disconnect = lambda *a: gone.append(a)
    huge.connect("127.0.0.1", gateway.mqtt_port)
    huge.loop_start()
    try:
        huge.publish(f"siaga/{unit_id}/status", b"x" * 16_000_000, qos=1)  # over max_packet_size
        wait_until(lambda: gone, 30, what="the broker ending the sender's connection")
    finally:
        huge.loop_stop()
    publish(mqtt_client, f"siaga/{unit_id}/status", status(2, 2))
    wait_until(lambda: [p["key"] for p in presses(gateway, unit_id)] == [2], what="the next press stored")
    assert quarantine(gateway, [unit_id]) == []  # neither reached the gateway
