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
        return Outcome(acknowledge=list(items))

    def tick(self, now):
        pass


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


class StoringPipeline:
    """Stores every message on one topic; the broker's other traffic is not ours."""

    def __init__(self, topic):
        self.topic = topic
        self.stored = []
        self.lock = threading.Lock()

    def handle(self, items, now):
        with self.lock:
            self.stored.extend(json.loads(i.payload)["seq"] for i in items if i.topic == self.topic)
        return Outcome(acknowledge=list(items))

    def tick(self, now):
        pass


def drain(broker, unit_id, pipeline, until):
    ingest = Ingest(pipeline, "127.0.0.1", broker.port, client_id=f"gw-{unit_id}")
    ingest.start()
    try:
        wait_until(ingest.connected.is_set, what="the gateway's connection")
        until()
        time.sleep(0.5)  # the last batch's acknowledgements on their way
    finally:
        ingest.stop()


def test_a_backlog_is_acknowledged_whole_and_in_order(broker, mqtt_client, unit_id):
    """More messages than the broker sends unacknowledged (1,000, mosquitto.conf) reach the
    pipeline only if each batch's acknowledgements (one write per batch) reached the
    broker; once acknowledged, the session gets none of them again."""
    topic, count = f"siaga/{unit_id}/status", 2500
    first = StoringPipeline(topic)

    def publish_all():
        infos = [mqtt_client.publish(topic, json.dumps({"seq": n}), qos=1) for n in range(count)]
        for info in infos:
            info.wait_for_publish(10)
        wait_until(lambda: len(first.stored) >= count, 30, what="the backlog, stored")

    drain(broker, unit_id, first, publish_all)
    assert first.stored == list(range(count))
    again = StoringPipeline(topic)
    drain(broker, unit_id, again, lambda: time.sleep(1))
    assert again.stored == []


def test_the_gateway_moves_along_a_list_of_brokers(broker, tmp_path, unit_id):
    """A cluster's nodes as a list: a node that refuses the connection is passed over,
    and when the node in use dies the gateway connects to the next one."""
    from provisioning.mosquitto import Mosquitto
    from provisioning.processes import free_port

    other = Mosquitto(tmp_path / "other").start()
    pipeline = StoringPipeline(f"siaga/{unit_id}/status")
    dead = free_port()
    ingest = Ingest(
        pipeline,
        "127.0.0.1",
        dead,
        client_id=f"gw-{unit_id}",
        more_brokers=[("127.0.0.1", other.port), ("127.0.0.1", broker.port)],
    )
    ingest.start()
    try:
        wait_until(ingest.connected.is_set, what="a connection past the dead address")
        assert (ingest.host, ingest.port) == ("127.0.0.1", other.port)
        other.stop()  # the node in use dies: the next in the list
        wait_until(lambda: ingest.connected.is_set() and ingest.port == broker.port, 20, what="the next node")
    finally:
        ingest.stop()
        other.stop()
