"""Two gateway processes on one real PostgreSQL database and one real broker: one
leads (ingests), the other stands by; both serve the API and the live stream; killing
the leader makes the standby lead within seconds, and nothing pressed is lost."""

import json
import threading
import time

import httpx
import paho.mqtt.client as mqtt
import pytest

from simulators.gateway_process import GatewayProcess, wait_until

NOW = int(time.time())


@pytest.fixture
def pair(gateway_pair):
    return gateway_pair


def health(gw):
    return gw.get("/api/v1/health")[1]


def leader_of(gws, timeout=20):
    """The one gateway that leads (waits until exactly one does)."""

    def one():
        roles = [health(gw).get("role") if gw.proc.poll() is None else None for gw in gws]
        return roles.count("leader") == 1 and gws[roles.index("leader")]

    return wait_until(one, timeout, what="exactly one leader")


class Unit:
    """A unit as the broker sees it: QoS 1 publishes of the protocol's JSON messages."""

    def __init__(self, port, unit_id):
        self.unit_id = unit_id
        self.seq = 0
        self.acks = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"u-{unit_id}")
        self.client.on_message = lambda c, u, m: self.acks.append(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"siaga/{unit_id}/down", 1)
        self.client.loop_start()

    def send(self, kind, _type, **body):
        self.seq += 1
        msg = {
            "_type": _type,
            "boot": 1,
            "seq": self.seq,
            "t": int(time.time()),
            "sent": int(time.time()),
            **body,
        }
        self.client.publish(f"siaga/{self.unit_id}/{kind}", json.dumps(msg), qos=1).wait_for_publish(5)
        return msg

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def stream_into(gw, seen, ready):
    try:
        with httpx.stream("GET", gw.url + "/api/v1/stream", headers=gw.headers, timeout=60) as resp:
            ready.set()
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
    except httpx.HTTPError:
        pass


def test_one_leads_both_serve_and_the_standby_streams_every_change(pair, broker):
    leader = leader_of(pair)
    standby = pair[1] if leader is pair[0] else pair[0]
    h = health(standby)
    assert h["role"] == "standby" and h["leader"] == f"siaga gw-{leader.http_port}"
    assert h["database"]["primary"] and h["notifications"]["listening"]
    standby.register("amb-01")  # on the standby: the leader's registry follows
    seen, ready = [], threading.Event()
    threading.Thread(target=stream_into, args=(standby, seen, ready), daemon=True).start()
    assert ready.wait(10)
    unit = Unit(broker.port, "amb-01")
    try:
        unit.send("conn", "birth")
        unit.send("status", "status", key=2)
        wait_until(
            lambda: any(e["status"] and e["status"]["key"] == 2 for e in seen),
            10,
            what="press on the standby's stream",
        )
        # a dispatcher on the standby: applied at once, seen by the leader, sent to the unit
        status, body = standby.request("POST", "/api/v1/units/amb-01/status", {"key": 6, "reason": "radio"})
        assert status == 200, body
        wait_until(lambda: leader.unit("amb-01")["status"]["key"] == 6, 10, what="the leader to see it")
        time.sleep(1.1)  # a press is dated in whole seconds: one after the dispatcher's status
        press = unit.send("status", "status", key=3)
        wait_until(lambda: standby.unit("amb-01")["status"]["key"] == 3, 10, what="the next press")
        wait_until(lambda: any(a.get("seq") == press["seq"] for a in unit.acks), 10, what="the press's ack")
        assert health(standby)["notifications"]["last_notify_at"] is not None
    finally:
        unit.close()


def test_the_standby_leads_when_the_leader_is_killed_and_nothing_is_lost(pair, broker):
    leader = leader_of(pair)
    pair[0].register("amb-02")
    unit = Unit(broker.port, "amb-02")
    pressed = []
    try:
        unit.send("conn", "birth")
        for _ in range(2):
            for i in range(10):
                pressed.append(unit.send("status", "status", key=1 + i % 9))
            leader.kill()
            killed_at = time.monotonic()
            for i in range(10):  # while nobody leads: the broker keeps them for the session
                pressed.append(unit.send("status", "status", key=1 + i % 9))
            survivor = leader_of(pair, timeout=30)
            took = time.monotonic() - killed_at
            assert survivor is not leader and took < 15, took
            leader.start()  # back, as a standby
            wait_until(
                lambda back=leader: health(back).get("role") == "standby",
                20,
                what="the restarted one to stand by",
            )
            leader = survivor
        history = lambda: leader.get("/api/v1/units/amb-02/statuses?limit=100")[1]  # noqa: E731
        wait_until(lambda: len(history()) >= len(pressed), 20, what="every press stored")
        stored = [(s["boot"], s["seq"]) for s in history() if s["source"] == "crew"]
        assert sorted(stored) == sorted((1, p["seq"]) for p in pressed)  # each once: none lost, none twice
    finally:
        unit.close()


def test_a_database_switchover_during_ingest_loses_nothing(broker, tmp_path):
    from provisioning.postgres import multi_host_url, start_primary, start_replica

    primary = start_primary()
    replica = start_replica(primary)
    gw = GatewayProcess(tmp_path / "gw", broker.port, database_url=multi_host_url([primary, replica]))
    unit = None
    try:
        gw.start()
        wait_until(lambda: health(gw).get("role") == "leader", 20, what="the gateway to lead")
        gw.register("amb-03")
        unit = Unit(broker.port, "amb-03")
        unit.send("conn", "birth")
        pressed = []
        for i in range(60):
            if i == 20:  # the old primary goes (its WAL all sent) and the replica takes over
                switch = threading.Thread(target=lambda: (primary.stop(), replica.promote()))
                switch.start()
            pressed.append(unit.send("status", "status", key=1 + i % 9))
            time.sleep(0.05)
        switch.join()

        def stored():
            status, rows = gw.get("/api/v1/units/amb-03/statuses?limit=200")
            return status == 200 and sorted(r["seq"] for r in rows if r["source"] == "crew")

        wait_until(lambda: stored() == sorted(p["seq"] for p in pressed), 60, what="every press stored once")
        h = health(gw)
        assert h["database"]["port"] == replica.port and h["database"]["primary"] and h["role"] == "leader"
    finally:
        if unit:
            unit.close()
        gw.stop()
        replica.remove()
        primary.remove()
