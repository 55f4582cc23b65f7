"""The NATS cluster (provisioning/nats.py, provisioning/nats_admin.py; docs/brokers.md):
three real nats-server processes with their MQTT listeners (the session's `nats_cluster`),
paho clients over TLS speaking MQTT 3.1.1, as units and as the gateway.

What the secure Mosquitto guarantees and NATS gives the same way is tested on both
brokers in tests/test_security.py (the `broker_kind` parameter); here: the cluster
itself, what NATS does differently (measured, and asserted so a new version that
changes it is noticed), and a node's death under the gateway's session.
"""

import itertools
import json
import stat
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from conftest import wait_until

from provisioning.nats_admin import NatsAdmin, subject

_ids = itertools.count(1)


class Mqtt:
    """A paho client (MQTT 3.1.1, TLS with the project CA) that records what happens to it."""

    def __init__(
        self, cluster, user=None, password=None, client_id=None, clean=True, manual_ack=False, will=None
    ):
        self.client_id = client_id or f"nats-{next(_ids)}"
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=clean,
            manual_ack=manual_ack,
        )
        self.c.reconnect_delay_set(60, 60)  # a refused or cut-off client stays out while we look
        if user:
            self.c.username_pw_set(user, password)
        self.c.tls_set(ca_certs=str(cluster.ca.ca_cert))
        if will:
            self.c.will_set(*will, qos=1)
        self.cluster = cluster
        self.password = password
        self.connack = None
        self.session_present = None
        self.answered = threading.Event()
        self.gone = threading.Event()
        self.messages = []
        self.subacks = {}
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *a: self.gone.set()
        self.c.on_message = lambda cl, ud, m: self.messages.append((m.topic, m.payload, m.mid))
        self.c.on_subscribe = lambda cl, ud, mid, codes, props: self.subacks.__setitem__(mid, codes)

    def _on_connect(self, client, userdata, flags, reason, props):
        self.connack, self.session_present = reason, flags.session_present
        self.answered.set()

    def connect(self, node=0, timeout=10):
        self.c.connect(*self.cluster.mqtt_addresses()[node], keepalive=10)
        self.c.loop_start()
        wait_until(lambda: self.answered.is_set() or self.gone.is_set(), timeout, what="CONNACK or the end")
        return self

    @property
    def accepted(self):
        return self.connack is not None and not self.connack.is_failure and not self.gone.is_set()

    def subscribe(self, topic):
        mid = self.c.subscribe(topic, qos=1)[1]
        return wait_until(lambda: self.subacks.get(mid), what=f"SUBACK of {topic}")[0]

    def publish(self, topic, payload, timeout=10):
        """True once the broker acknowledged (PUBACK) the QoS 1 message within `timeout`."""
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        return info.is_published()

    def payloads(self, topic=None):
        return [p for t, p, _ in self.messages if topic in (None, t)]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def admin(nats_cluster):
    with nats_cluster.admin() as a:
        yield a


@pytest.fixture
def clients(nats_cluster):
    made = []

    def make(*args, node=None, **kw):
        c = Mqtt(nats_cluster, *args, **kw)
        made.append(c)
        return c if node is None else c.connect(node)

    yield make
    for c in made:
        c.close()


@pytest.fixture
def units(admin, clients):
    """units(unit_id, node=0) -> a connected unit with fresh credentials."""
    made = []

    def unit(unit_id, node=0, **kw):
        password = admin.add_unit(unit_id)
        made.append(unit_id)
        return clients(unit_id, password, client_id=unit_id, node=node, **kw)

    yield unit
    for unit_id in made:
        admin.remove(unit_id)


def gateway_login(cluster):
    user, password, _ = cluster.gateway_credentials()
    return user, password


# the cluster
def test_the_cluster_forms_with_tls_routes_jetstream_and_an_mqtt_listener_per_node(nats_cluster):
    from provisioning.nats_admin import monitoring

    leaders = set()
    for node in nats_cluster.nodes:
        routes = monitoring(node["http"], "/routez")
        assert routes["num_routes"] == 2
        jsz = monitoring(node["http"], "/jsz")
        assert jsz["meta_cluster"]["cluster_size"] == 3
        leaders.add(jsz["meta_cluster"]["leader"])
        varz = monitoring(node["http"], "/varz")
        assert varz["tls_required"] and varz["cluster"]["tls_required"]
        assert varz["mqtt"]["tls_timeout"] == 10
    assert len(leaders) == 1  # one meta leader, the same for all
    info = json.loads((nats_cluster.data_dir / "broker.json").read_text())
    assert info["kind"] == "nats" and [tuple(a) for a in info["addresses"]] == nats_cluster.mqtt_addresses()


def test_the_cluster_keeps_its_secrets_to_its_owner(nats_cluster):
    d = nats_cluster.data_dir
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in ("gateway.password", "admin.password", "route.password", "users.json", "auth.conf"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    auth = (d / "auth.conf").read_text()
    assert nats_cluster.gateway_credentials()[1] not in auth  # bcrypt hashes only
    users = json.loads(auth.split("authorization:", 1)[1])["users"]
    assert all(u["password"].startswith("$2b$04$") for u in users)
    assert all(u["allowed_connection_types"] == ["MQTT"] for u in users)


def test_topics_map_to_subjects():
    assert subject("siaga/amb-01/pos") == "siaga.amb-01.pos"
    assert subject("siaga/+/down") == "siaga.*.down"
    assert subject("siaga/#") == "siaga.>"


# a unit's messages cross the cluster to the gateway's persistent session
def test_a_units_qos1_message_reaches_the_gateways_session_on_another_node(
    nats_cluster, clients, units, unit_id
):
    gateway = clients(*gateway_login(nats_cluster), client_id=f"gw-{unit_id}", clean=False, manual_ack=True)
    gateway.connect(2)
    try:
        assert gateway.subscribe("siaga/+/pos") == 1  # granted QoS 1
        unit = units(unit_id, node=0)
        assert unit.subscribe(f"siaga/{unit_id}/down") == 1
        assert unit.publish(f"siaga/{unit_id}/pos", b"fix 1")
        wait_until(lambda: gateway.payloads(f"siaga/{unit_id}/pos"), what="the fix on node 3")
        gateway.c.ack(gateway.messages[-1][2], 1)
        assert gateway.publish(f"siaga/{unit_id}/down", b"ack 1")
        wait_until(lambda: unit.payloads(), what="the downlink on node 1")
        assert unit.payloads() == [b"ack 1"]
    finally:
        gateway.c.unsubscribe("siaga/+/pos")


def test_a_units_retained_message_and_its_will_reach_the_gateway_across_nodes(
    nats_cluster, admin, clients, units, unit_id
):
    """Under the unit's own rights: its retained `bye` on its conn topic, kept by the
    cluster for a gateway that subscribes later on another node; its will, published by
    a live node when the unit's link drops without a DISCONNECT. Then the unit is
    decommissioned and removed, and every node lives on (2.9.10 panics on a reload that
    takes away the user who published a retained message: its user stays, locked)."""
    unit = units(unit_id, node=0)
    c = unit.c
    c.publish(f"siaga/{unit_id}/conn", b"bye", qos=1, retain=True).wait_for_publish(10)
    gateway = clients(*gateway_login(nats_cluster), node=2)
    assert gateway.subscribe("siaga/+/conn") == 1
    wait_until(lambda: gateway.payloads(f"siaga/{unit_id}/conn"), what="the retained bye")
    dying = units(unit_id + "w", node=1, will=(f"siaga/{unit_id}w/conn", b"will"))
    dying.c.socket().close()  # the link drops: no DISCONNECT
    wait_until(lambda: gateway.payloads(f"siaga/{unit_id}w/conn"), what="the will")
    assert gateway.payloads(f"siaga/{unit_id}w/conn") == [b"will"]
    admin.decommission(unit_id)
    admin.remove(unit_id)
    assert nats_cluster.running() == [0, 1, 2]
    nats_cluster.wait_ready(timeout=10)


# what a unit may not do, and what NATS does then
def test_a_unit_publishing_as_another_is_dropped_and_stays_connected(nats_cluster, clients, units, unit_id):
    """NATS 2.9.10 drops a publish the user may not make, still acknowledges it (PUBACK),
    and keeps the connection: like Mosquitto."""
    gateway = clients(*gateway_login(nats_cluster), node=1)
    assert gateway.subscribe("siaga/+/status") == 1
    a = units(unit_id + "a", node=0)
    units(unit_id + "b", node=2)
    for kind in ("pos", "status", "conn", "tele", "down"):
        assert a.publish(f"siaga/{unit_id}b/{kind}", b"forged")
    assert a.publish(f"siaga/{unit_id}a/status", b"own")  # after the forged ones, same link
    wait_until(lambda: gateway.payloads(f"siaga/{unit_id}a/status"), what="the unit's own status")
    assert [t for t, _, _ in gateway.messages] == [f"siaga/{unit_id}a/status"]
    assert not a.gone.is_set()


def test_a_unit_cannot_subscribe_to_another_units_downlink_nor_natss_own_subjects(units, unit_id):
    a = units(unit_id)
    for topic in (
        f"siaga/{unit_id}x/down",
        "siaga/+/down",
        "#",
        "siaga/+/pos",
        "$MQTT/sub/+",  # the QoS 1 delivery subjects it may subscribe to inside NATS
        "$MQTT/#",
        "$JS/#",
    ):
        assert a.subscribe(topic) == 128, topic  # SUBACK failure; the unit stays connected
    assert a.subscribe(f"siaga/{unit_id}/down") == 1
    assert not a.gone.is_set()


def test_the_gateway_reads_uplinks_and_writes_downlinks_only(nats_cluster, clients):
    gateway = clients(*gateway_login(nats_cluster), node=0)
    for topic in ("siaga/+/pos", "siaga/+/status", "siaga/+/conn", "siaga/+/tele"):
        assert gateway.subscribe(topic) == 1, topic
    for topic in ("#", "siaga/#", "siaga/+/down", "$MQTT/#"):
        assert gateway.subscribe(topic) == 128, topic


def test_a_unit_may_take_another_units_client_id_but_gets_nothing_of_its_session(
    nats_cluster, clients, units, unit_id
):
    """NATS 2.9 cannot pin a user to a client id (Mosquitto's dynsec does): a unit that
    logs in with another's client id takes its session over (and cuts the owner off),
    but the session's subscriptions are checked against the intruder's rights, so it
    reads none of the owner's downlinks; the owner gets them when it is back."""
    owner = units(unit_id + "b", node=0, clean=False)
    assert owner.subscribe(f"siaga/{unit_id}b/down") == 1
    owner.close()
    gateway = clients(*gateway_login(nats_cluster), node=1)
    assert gateway.publish(f"siaga/{unit_id}b/down", b"for b")
    intruder_password = units(unit_id + "a", node=0).password
    intruder = clients(unit_id + "a", intruder_password, client_id=unit_id + "b", clean=False, node=2)
    assert intruder.accepted and intruder.session_present  # not refused, as on Mosquitto
    time.sleep(1)
    assert intruder.messages == []
    intruder.close()
    back = clients(unit_id + "b", owner.password, client_id=unit_id + "b", clean=False, node=0)
    wait_until(lambda: back.payloads(), what="the owner's queued downlink")
    assert back.payloads() == [b"for b"]


# who may log in
def test_a_wrong_password_an_unknown_user_and_no_login_are_refused(nats_cluster, clients, units, unit_id):
    units(unit_id)
    for user, password in (
        (unit_id, "not-the-password"),
        (unit_id + "x", "x"),
        ("siaga-gateway", "x"),
        (None, None),
    ):
        c = clients(user, password, client_id=unit_id, node=1)
        assert not c.accepted and str(c.connack) == "Not authorized", user


# rotate, decommission, enable: at once, on every node
def test_decommission_cuts_a_connected_unit_off_on_every_node_at_once(admin, clients, units, unit_id):
    on = [units(f"{unit_id}{i}", node=i) for i in range(3)]
    started = time.monotonic()
    for i in range(3):
        admin.decommission(f"{unit_id}{i}")
    for unit in on:
        wait_until(unit.gone.is_set, 2, what="the connected unit cut off")
    assert time.monotonic() - started < 2
    assert not admin.is_enabled(f"{unit_id}0")
    for i, unit in enumerate(on):
        assert not clients(f"{unit_id}{i}", unit.password, client_id=f"{unit_id}{i}", node=i).accepted
    for i, unit in enumerate(on):  # back at once, on the node that cut it off
        admin.enable(f"{unit_id}{i}")
        assert clients(f"{unit_id}{i}", unit.password, client_id=f"{unit_id}{i}", node=i).accepted


def test_rotate_cuts_the_unit_off_and_only_the_new_password_works(admin, clients, units, unit_id):
    unit = units(unit_id, node=1)
    new = admin.rotate(unit_id)
    wait_until(unit.gone.is_set, 2, what="the connected unit cut off")
    assert not clients(unit_id, unit.password, client_id=unit_id, node=1).accepted
    assert clients(unit_id, new, client_id=unit_id, node=1).accepted  # at once, same node


def test_the_admin_speaks_broker_admins_errors(tmp_path, admin, units, unit_id):
    from provisioning.broker_admin import BrokerAdminError, UnitExists, UnknownUnit

    units(unit_id)
    assert admin.units()[unit_id] is True
    with pytest.raises(UnitExists, match=f"unit {unit_id} already has credentials"):
        admin.add_unit(unit_id)
    for call in (admin.rotate, admin.decommission, admin.enable):
        with pytest.raises(UnknownUnit, match=f"unit {unit_id}x has no credentials"):
            call(unit_id + "x")
    for bad in ("admin", "siaga-gateway", "a/b", "a.b", "*", ">", ""):
        with pytest.raises(BrokerAdminError):
            admin.add_unit(bad)
    with pytest.raises(BrokerAdminError, match="is not a NATS cluster's data folder"):
        NatsAdmin.from_data_dir(tmp_path)


# a node dies under the gateway's session
def test_the_gateway_session_survives_the_death_of_its_node(nats_cluster, clients, units, unit_id):
    """The gateway's node is SIGKILLed with 5 messages delivered but not acknowledged and
    5 more published after: the gateway logs in on another node with the same client id
    and gets all 10. A unit on the dead node (a persistent session, as the firmware's)
    logs in on another node and gets the downlink sent to it meanwhile. It had a will:
    2.9.10 never publishes it."""
    dead, other = 1, 2
    gw_id = f"gw-{unit_id}"
    gateway = clients(*gateway_login(nats_cluster), client_id=gw_id, clean=False, manual_ack=True, node=dead)
    assert gateway.subscribe("siaga/+/pos") == 1
    watcher = clients(*gateway_login(nats_cluster), node=other)
    assert watcher.subscribe("siaga/+/conn") == 1
    unit = units(unit_id, node=0)
    doomed = units(unit_id + "w", node=dead, clean=False, will=(f"siaga/{unit_id}w/conn", b"will"))
    assert doomed.subscribe(f"siaga/{unit_id}w/down") == 1
    try:
        for i in range(5):
            assert unit.publish(f"siaga/{unit_id}/pos", b"%d" % i)
        wait_until(lambda: len(gateway.payloads()) == 5, what="5 delivered, not acknowledged")
        killed = time.monotonic()
        nats_cluster.kill_node(dead)
        resent = 0
        for i in range(5, 10):
            while not unit.publish(f"siaga/{unit_id}/pos", b"%d" % i, timeout=3):
                unit.close()  # as the firmware's outbox: no PUBACK, a new link, sent again
                unit = clients(unit_id, unit.password, client_id=unit_id, node=0)
                resent += 1
                assert resent < 10
        gateway.close()
        again = Mqtt(
            nats_cluster, *gateway_login(nats_cluster), client_id=gw_id, clean=False, manual_ack=True
        )
        while not again.connect(other, timeout=30).accepted:  # survivors may time out at first
            again.close()
            again = Mqtt(
                nats_cluster, *gateway_login(nats_cluster), client_id=gw_id, clean=False, manual_ack=True
            )
        reconnected = time.monotonic() - killed
        assert again.session_present
        wait_until(lambda: {b"%d" % i for i in range(10)} <= set(again.payloads()), 40, what="all 10")
        for _, _, mid in again.messages:
            again.c.ack(mid, 1)
        assert reconnected < 30
        assert again.publish(f"siaga/{unit_id}w/down", b"ack 7", timeout=10)
        back = Mqtt(nats_cluster, unit_id + "w", doomed.password, client_id=unit_id + "w", clean=False)
        assert back.connect(other).accepted and back.session_present
        wait_until(lambda: back.payloads(), what="the unit's downlink, sent while it was away")
        assert back.payloads() == [b"ack 7"]
        back.close()
        assert not watcher.payloads(f"siaga/{unit_id}w/conn")  # the will died with its node
        again.close()
    finally:
        nats_cluster.start_node(dead)


# either broker's admin, from its data folder
def test_open_admin_gives_the_admin_of_either_broker_with_the_same_calls(
    secure_broker, nats_cluster, unit_id
):
    from provisioning.broker_admin import BrokerAdmin, open_admin

    for broker, kind in ((secure_broker, BrokerAdmin), (nats_cluster, NatsAdmin)):
        with open_admin(broker.data_dir) as admin:
            assert type(admin) is kind
            first = admin.add_unit(unit_id)
            try:
                assert admin.units()[unit_id] is True and "siaga-gateway" not in admin.units()
                admin.set_password(unit_id, first + "x")
                admin.decommission(unit_id)
                assert admin.units()[unit_id] is False
            finally:
                admin.remove(unit_id)
            assert unit_id not in admin.units()
