"""A unit placed where a test wants it, by the messages its firmware would send (a birth,
a position, a status) published on the test broker: no virtual unit to start, and each
press a message of its own, numbered on."""

import json
import sys
import time
from pathlib import Path

from simulators.gateway_process import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware" / "lib"))
import wire  # noqa: E402  (the unit's own encoder: what a unit sends)


class PlacedUnit:
    def __init__(self, gateway, mqtt_client, unit_id):
        self.gateway, self.mqtt, self.unit_id, self.seq = gateway, mqtt_client, unit_id, 0

    def _next(self):
        self.seq += 1
        return self.seq

    def send(self, topic, payload):
        self.mqtt.publish(f"siaga/{self.unit_id}/{topic}", payload, qos=1).wait_for_publish(5)

    def birth(self):
        now = int(time.time())
        self.send(
            "conn", json.dumps({"_type": "birth", "boot": 1, "seq": self._next(), "t": now, "sent": now})
        )

    def move(self, latlon):
        now = int(time.time())
        self.send("pos", wire.encode_pos(1, self._next(), now, *latlon, 0.0, 0.0, 9, 0.9, now))

    def press(self, key):
        now = int(time.time())
        status = {"_type": "status", "boot": 1, "seq": self._next(), "key": key, "t": now, "sent": now}
        self.send("status", json.dumps(status))


def place(gateway, mqtt_client, unit_id, latlon, key=2, kind="ambulance", **registry):
    """A registered unit, online at `latlon`, its crew's last press `key`."""
    gateway.register(unit_id, kind=kind, **registry)
    unit = PlacedUnit(gateway, mqtt_client, unit_id)
    unit.birth()
    unit.move(latlon)
    unit.press(key)
    wait_until(
        lambda: (
            (gateway.unit(unit_id)["status"] or {}).get("key") == key and gateway.unit(unit_id)["position"]
        ),
        what=f"{unit_id} placed",
    )
    return unit
