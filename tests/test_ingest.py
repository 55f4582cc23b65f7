"""Ingest against a real Mosquitto: a message is acknowledged to the broker only after the
batch that stores it has committed. When storing fails, the broker keeps the message
and delivers it again."""

import json
import threading
import time

from conftest import wait_until

from gateway.ingest import Ingest
from gateway.pipeline import Outcome


class FlakyPipeline:
    """Fails the first batch with our message in it (as a full disk would), stores the rest."""

    def __init__(self, unit_id):
        self.topic = f"siaga/{unit_id}/status"
        self.calls = 0
        self.stored = []
        self.lock = threading.Lock()

    def handle(self, items, now):
        with self.lock:
            ours = [i for i in items if i.topic == self.topic]
            if ours and not self.calls:
                self.calls += 1
                raise OSError("disk full")
            # the shared test broker also holds other tests' retained messages
            self.stored.extend(json.loads(i.payload)["seq"] for i in items if i.topic == self.topic)
        return Outcome()

    def tick(self, now):
        return Outcome()


def test_a_message_is_acknowledged_only_after_it_is_stored(broker, mqtt_client, unit_id):
    pipeline = FlakyPipeline(unit_id)
    ingest = Ingest(pipeline, "127.0.0.1", broker.port, client_id=f"gw-{unit_id}")
    ingest.start()
    try:
        wait_until(ingest.connected.is_set, what="the gateway's connection")
        body = {"_type": "status", "boot": 1, "seq": 7, "key": 3, "t": 1795862700, "sent": 1795862700}
        mqtt_client.publish(f"siaga/{unit_id}/status", json.dumps(body), qos=1).wait_for_publish(5)
        wait_until(lambda: pipeline.calls >= 1, what="the failed batch")
        time.sleep(0.5)
        assert pipeline.stored == []  # not acknowledged, so not delivered again yet
        ingest.client.reconnect()  # the broker still holds the unacknowledged message
        wait_until(lambda: pipeline.stored == [7], what="the redelivery, stored")
    finally:
        ingest.stop()
