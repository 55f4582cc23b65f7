"""Ingest against a real Mosquitto: a message is acknowledged to the broker only after the
batch that stores it has committed. When storing fails, the broker keeps the message
and delivers it again."""

import json
import threading

from conftest import wait_until

from gateway.ingest import Ingest
from gateway.pipeline import Outcome


class FlakyPipeline:
    """Fails the first batch (as a full disk would), stores the rest."""

    def __init__(self):
        self.calls = 0
        self.stored = []
        self.lock = threading.Lock()

    def handle(self, items, now):
        with self.lock:
            self.calls += 1
            if self.calls == 1:
                raise OSError("disk full")
            self.stored.extend(json.loads(i.payload)["seq"] for i in items)
        return Outcome()

    def tick(self, now):
        return Outcome()


def test_a_message_is_acknowledged_only_after_it_is_stored(broker, mqtt_client, unit_id):
    pipeline = FlakyPipeline()
    ingest = Ingest(pipeline, "127.0.0.1", broker.port, client_id=f"gw-{unit_id}")
    ingest.start()
    try:
        wait_until(ingest.connected.is_set, what="the gateway's connection")
        body = {"_type": "status", "boot": 1, "seq": 7, "key": 3, "t": 1795862700, "sent": 1795862700}
        mqtt_client.publish(f"siaga/{unit_id}/status", json.dumps(body), qos=1).wait_for_publish(5)
        wait_until(lambda: pipeline.calls >= 1, what="the failed batch")
        assert pipeline.stored == []
        ingest.client.reconnect()  # the broker still holds the unacknowledged message
        wait_until(lambda: pipeline.stored == [7], what="the redelivery, stored")
    finally:
        ingest.stop()
