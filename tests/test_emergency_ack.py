"""A dispatcher acknowledges an emergency: every dispatcher's alarm stops (the view says
who and when, and the live stream carries it), the emergency goes on until it is
cleared, and an acknowledgement never covers a later emergency. Against a real gateway
and broker, with the unit's messages made by the firmware's own wire encoder."""

import importlib.util
import json
import threading
import time

import httpx
from conftest import REPO, wait_until

PASSWORD = "rahasia-112"


def _wire():
    spec = importlib.util.spec_from_file_location("wire", REPO / "firmware" / "lib" / "wire.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wire = _wire()


class Crew:
    """What a unit puts on the wire: its birth, then key presses."""

    def __init__(self, mqtt_client, unit_id):
        self.client, self.unit_id, self.seq = mqtt_client, unit_id, 0

    def send(self, kind, **fields):
        now = int(time.time())
        payload = wire.encode_json(kind, 1, self.seq, t=now, sent=now, **fields)
        self.seq += 1
        self.client.publish(wire.topic(self.unit_id, kind), payload, qos=1).wait_for_publish(5)

    def press(self, key):
        self.send("status", key=key)


def session(gateway, name, role):
    status, body = gateway.request(
        "POST", "/api/v1/users", {"name": name, "role": role, "password": PASSWORD}
    )
    assert status == 201, body
    client = httpx.Client(base_url=gateway.url, timeout=10)
    reply = client.post("/api/v1/login", json={"username": name, "password": PASSWORD})
    assert reply.status_code == 200, reply.text
    client.headers["X-CSRF-Token"] = reply.json()["csrf"]
    return client


def in_emergency(gateway, mqtt_client, unit_id):
    gateway.register(unit_id)
    crew = Crew(mqtt_client, unit_id)
    crew.send("birth", fw="0.1.0", board="virtual/1", reset="power_on")
    crew.press(2)
    crew.press(0)
    wait_until(lambda: gateway.unit(unit_id)["availability"] == "emergency", what="the emergency")
    return crew


def test_one_dispatcher_acknowledges_for_all_until_it_is_cleared(gateway, mqtt_client, unit_id):
    crew = in_emergency(gateway, mqtt_client, unit_id)
    assert gateway.unit(unit_id)["emergency"]["acknowledged_by"] is None
    events = []
    listening = threading.Event()

    def listen():
        with httpx.stream("GET", gateway.url + "/api/v1/stream", headers=gateway.headers, timeout=30) as r:
            listening.set()
            for line in r.iter_lines():
                if line.startswith("data: ") and (ev := json.loads(line[6:]))["unit_id"] == unit_id:
                    events.append(ev)
                    if (ev["emergency"] or {}).get("acknowledged_by"):
                        return

    threading.Thread(target=listen, daemon=True).start()
    listening.wait(10)
    time.sleep(0.3)  # the subscription is in place once the response has started

    rina = session(gateway, "rina", "dispatcher")
    reply = rina.post(f"/api/v1/units/{unit_id}/ack-emergency")
    assert reply.status_code == 200, reply.text
    unit = reply.json()["unit"]
    assert unit["availability"] == "emergency"  # seen, not over
    assert unit["emergency"]["acknowledged_by"] == "rina"
    assert unit["emergency"]["acknowledged_at"] >= unit["emergency"]["since"]
    wait_until(lambda: events and events[-1]["emergency"]["acknowledged_by"] == "rina", what="the stream")
    assert "emitted" in events[-1]

    reply = rina.post(f"/api/v1/units/{unit_id}/clear-emergency", json={"reason": "kru aman"})
    assert reply.status_code == 200 and reply.json()["unit"]["emergency"] is None
    again = rina.post(f"/api/v1/units/{unit_id}/ack-emergency")
    assert again.status_code == 400 and again.json()["error"]["code"] == "no_emergency"

    time.sleep(1.1)  # a new press, a later second: a new emergency
    crew.press(0)
    wait_until(lambda: gateway.unit(unit_id)["availability"] == "emergency", what="the second emergency")
    assert gateway.unit(unit_id)["emergency"]["acknowledged_by"] is None  # not covered by the old one


def test_a_viewer_cannot_acknowledge(gateway, mqtt_client, unit_id):
    in_emergency(gateway, mqtt_client, unit_id)
    viewer = session(gateway, "budi", "viewer")
    reply = viewer.post(f"/api/v1/units/{unit_id}/ack-emergency")
    assert reply.status_code == 403 and reply.json()["error"]["code"] == "forbidden"
    assert gateway.unit(unit_id)["emergency"]["acknowledged_by"] is None
