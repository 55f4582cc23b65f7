"""The broker admits only provisioned units, each to its own topics, over TLS: on a real
Mosquitto with the dynamic security plugin (the `secure_broker` fixture), real paho
clients, the firmware in MicroPython and the gateway process. docs/security.md "Broker security".

That the gateway itself refuses a message whose payload names another unit than its
topic is tested in tests/test_store.py (`unit_mismatch`); here the broker drops it first.
The HTTP API's refusal of unauthenticated calls is tested in tests/test_auth.py.
"""

import itertools
import json
import os
import ssl
import stat
import threading

import paho.mqtt.client as mqtt
import pytest
from conftest import GatewayProcess, wait_until
from cryptography import x509

from gateway.store import Store
from provisioning import ca as project_ca
from provisioning.broker_admin import (
    AdminRefused,
    BrokerAdmin,
    BrokerAdminError,
    BrokerUnreachable,
    UnitExists,
    UnknownUnit,
)
from provisioning.processes import free_port
from siaga.cli import main as siaga

_ids = itertools.count(1)


class Client:
    """A paho client that records what happens to it: CONNACK, SUBACKs, messages, the end."""

    def __init__(self, broker, user=None, password=None, client_id=None, cafile=None, tls=True):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"sec-{next(_ids)}")
        self.c.reconnect_delay_set(60, 60)  # a refused or kicked client stays out while we look
        if user:
            self.c.username_pw_set(user, password)
        if tls:
            self.c.tls_set(ca_certs=str(cafile or broker.ca.ca_cert))
        self.broker = broker
        self.password = password
        self.connack = None
        self.answered = threading.Event()
        self.gone = threading.Event()
        self.messages = []
        self.subacks = {}
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *a: self.gone.set()
        self.c.on_message = lambda cl, ud, msg: self.messages.append((msg.topic, msg.payload))
        self.c.on_subscribe = lambda cl, ud, mid, codes, props: self.subacks.__setitem__(mid, codes)

    def _on_connect(self, client, userdata, flags, reason, props):
        self.connack = reason
        self.answered.set()

    def connect(self):
        self.c.connect("127.0.0.1", self.broker.tls_port)
        self.c.loop_start()
        wait_until(lambda: self.answered.is_set() or self.gone.is_set(), what="CONNACK or the end")
        return self

    @property
    def accepted(self):
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic):
        mid = self.c.subscribe(topic, qos=1)[1]
        return wait_until(lambda: self.subacks.get(mid), what=f"SUBACK of {topic}")[0]

    def publish(self, topic, payload):
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)

    def received(self, topic):
        return [p for t, p in self.messages if t == topic]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def broker_kind():
    """The broker a test runs on: the secure Mosquitto, or with ON_BOTH each in turn."""
    return "mosquitto"


# The broker's guarantees, on the secure Mosquitto and on the NATS cluster (tests/test_nats.py
# tests what only NATS does, or does otherwise: client ids, the admin, a node's death).
ON_BOTH = pytest.mark.parametrize("broker_kind", ["mosquitto", "nats"])


@pytest.fixture
def mqtt_broker(broker_kind, request):
    return request.getfixturevalue("nats_cluster" if broker_kind == "nats" else "secure_broker")


@pytest.fixture
def clients(mqtt_broker):
    made = []

    def make(*args, **kw):
        c = Client(mqtt_broker, *args, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def admin(mqtt_broker):
    with mqtt_broker.admin() as a:
        yield a


@pytest.fixture
def units(admin, clients):
    """units(unit_id) -> a connected Client with that unit's fresh credentials."""
    made = []

    def unit(unit_id):
        password = admin.add_unit(unit_id)
        made.append(unit_id)
        return clients(unit_id, password, client_id=unit_id).connect()

    yield unit
    for unit_id in made:
        admin.remove(unit_id)


@pytest.fixture
def gateway_client(mqtt_broker, clients):
    user, password, _ = mqtt_broker.gateway_credentials()
    return clients(user, password).connect()


# the CA
def test_the_ca_is_made_once_with_private_keys_and_names_for_the_broker(tmp_path):
    p = project_ca.ensure_ca(tmp_path / "ca", names=["broker.siaga.local"])
    first = p.ca_cert.read_bytes()
    for key in (p.ca_key, p.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.dir.stat().st_mode) == 0o700
    names = project_ca.server_names(p.server_cert)
    assert {"localhost", "127.0.0.1", "broker.siaga.local"} <= set(names)

    server = x509.load_pem_x509_certificate(p.server_cert.read_bytes())
    server.verify_directly_issued_by(x509.load_pem_x509_certificate(first))
    assert siaga(["ca", "init", "--dir", str(tmp_path / "ca"), "--name", "10.1.2.3"]) == 0
    assert p.ca_cert.read_bytes() == first  # units provisioned before still trust it
    assert {"broker.siaga.local", "10.1.2.3"} <= set(project_ca.server_names(p.server_cert))


def test_the_secure_broker_keeps_its_secrets_to_its_owner(secure_broker):
    d = secure_broker.data_dir
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in ("admin.password", "gateway.password", "dynamic-security.json"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    assert not (d / "admin.bootstrap").exists()  # the throwaway first admin password is gone
    assert "allow_anonymous false" in secure_broker.config_path.read_text()


# who may log in
@ON_BOTH
def test_an_anonymous_client_is_refused(clients):
    c = clients().connect()
    assert not c.accepted and str(c.connack) == "Not authorized"


@ON_BOTH
def test_a_client_without_tls_gets_nothing(clients):
    c = clients("siaga-gateway", "whatever", tls=False).connect()
    assert c.gone.is_set() and c.connack is None


@ON_BOTH
@pytest.mark.parametrize("who", ["unit", "gateway", "admin"])
def test_a_wrong_password_is_refused(clients, units, unit_id, who):
    user = {"unit": unit_id, "gateway": "siaga-gateway", "admin": "admin"}[who]
    if who == "unit":
        units(unit_id)  # it exists, with another password
    c = clients(user, "not-the-password", client_id=unit_id if who == "unit" else None).connect()
    assert not c.accepted and str(c.connack) == "Not authorized"


def test_a_unit_must_use_its_own_client_id(clients, admin, units, unit_id):
    """Else it could take over another unit's session (and its queued downlinks)."""
    a, b = units(unit_id + "a"), units(unit_id + "b")
    hijack = clients(unit_id + "a", a.password, client_id=unit_id + "b").connect()
    assert not hijack.accepted and str(hijack.connack) == "Not authorized"
    assert not b.gone.is_set()  # and b keeps its connection


# what a unit may do
@ON_BOTH
def test_a_unit_cannot_publish_as_another(units, gateway_client, unit_id):
    a, b_id = units(unit_id + "a"), unit_id + "b"
    units(b_id)
    for kind in ("pos", "status", "conn", "tele"):  # what the gateway subscribes to, and only that
        assert not gateway_client.subscribe(f"siaga/+/{kind}").is_failure
    for kind in ("pos", "status", "conn", "tele"):
        a.publish(f"siaga/{b_id}/{kind}", b"forged")
    a.publish(f"siaga/{unit_id}a/status", b"own")  # after the forged ones, on the same link
    wait_until(lambda: gateway_client.received(f"siaga/{unit_id}a/status"), what="the unit's own status")
    ours = [t for t, _ in gateway_client.messages if t.startswith(f"siaga/{unit_id}")]
    assert ours == [f"siaga/{unit_id}a/status"]


@ON_BOTH
def test_a_unit_cannot_read_another_units_downlink(units, gateway_client, unit_id):
    a, b = units(unit_id + "a"), units(unit_id + "b")
    for topic in (f"siaga/{unit_id}b/down", "siaga/+/down", "#", f"siaga/{unit_id}b/status"):
        assert a.subscribe(topic).is_failure, topic
    assert not a.subscribe(f"siaga/{unit_id}a/down").is_failure
    assert not b.subscribe(f"siaga/{unit_id}b/down").is_failure
    a.publish(f"siaga/{unit_id}b/down", b"forged downlink")  # nor write it
    gateway_client.publish(f"siaga/{unit_id}b/down", b"for b")
    gateway_client.publish(f"siaga/{unit_id}a/down", b"for a")
    wait_until(lambda: a.messages and b.messages, what="each unit's own downlink")
    assert a.messages == [(f"siaga/{unit_id}a/down", b"for a")]
    assert b.messages == [(f"siaga/{unit_id}b/down", b"for b")]


@ON_BOTH
def test_the_gateway_reads_uplinks_and_writes_downlinks_only(gateway_client):
    for topic in ("siaga/+/pos", "siaga/+/status", "siaga/+/conn", "siaga/+/tele"):
        assert not gateway_client.subscribe(topic).is_failure, topic
    for topic in ("#", "siaga/#", "siaga/+/down", "$CONTROL/dynamic-security/#"):
        assert gateway_client.subscribe(topic).is_failure, topic


# rotate, decommission
@ON_BOTH
def test_a_rotated_password_cuts_the_unit_off_and_only_the_new_one_works(admin, clients, units, unit_id):
    unit = units(unit_id)
    old = unit.password
    new = admin.rotate(unit_id)
    wait_until(unit.gone.is_set, what="the connected unit cut off")
    assert not clients(unit_id, old, client_id=unit_id).connect().accepted
    assert clients(unit_id, new, client_id=unit_id).connect().accepted


@ON_BOTH
def test_a_decommissioned_unit_is_cut_off_and_refused_until_enabled(admin, clients, units, unit_id):
    unit = units(unit_id)
    password = unit.password
    admin.decommission(unit_id)
    wait_until(unit.gone.is_set, what="the connected unit cut off")
    assert not admin.is_enabled(unit_id)
    assert not clients(unit_id, password, client_id=unit_id).connect().accepted
    admin.enable(unit_id)
    assert clients(unit_id, password, client_id=unit_id).connect().accepted


# the admin's errors
def test_admin_errors_are_clear(tmp_path, secure_broker, admin, units, unit_id):
    units(unit_id)
    with pytest.raises(UnitExists, match=f"unit {unit_id} already has credentials"):
        admin.add_unit(unit_id)
    for call in (admin.rotate, admin.decommission, admin.enable):
        with pytest.raises(UnknownUnit, match=f"unit {unit_id}x has no credentials"):
            call(unit_id + "x")
    for bad in ("admin", "siaga-gateway", "a/b", "#", ""):
        with pytest.raises(BrokerAdminError):
            admin.add_unit(bad)
    cafile = secure_broker.ca.ca_cert
    with pytest.raises(AdminRefused, match="refused the admin login"):
        BrokerAdmin("127.0.0.1", secure_broker.tls_port, "admin", "wrong", cafile=cafile).connect()
    with pytest.raises(BrokerUnreachable, match="cannot reach the broker at 127.0.0.1:"):
        BrokerAdmin("127.0.0.1", free_port(), "admin", "x", cafile=cafile).connect()
    other = project_ca.ensure_ca(tmp_path / "other-ca").ca_cert
    with pytest.raises(
        BrokerUnreachable, match="TLS to the broker at 127.0.0.1:.* failed: CERTIFICATE_VERIFY"
    ):
        BrokerAdmin("127.0.0.1", secure_broker.tls_port, "admin", "x", cafile=other).connect()
    with pytest.raises(BrokerAdminError, match="is not a secure broker's data folder"):
        BrokerAdmin.from_data_dir(tmp_path)


def test_two_admins_at_once_each_get_their_own_answers(secure_broker, admin, unit_id):
    """The broker sends every answer to every admin client on one topic."""
    with secure_broker.admin() as first, secure_broker.admin() as second:
        assert not first.exists(unit_id)  # its answer reaches `second` too
        admin.add_unit(unit_id)
        try:
            assert second.exists(unit_id) and first.exists(unit_id)
        finally:
            admin.remove(unit_id)


@ON_BOTH
def test_replace_gives_new_credentials_and_remove_undoes_add(admin, clients, unit_id):
    first = admin.add_unit(unit_id)
    admin.decommission(unit_id)
    second = admin.add_unit(unit_id, replace=True)
    assert second != first and admin.is_enabled(unit_id)
    assert clients(unit_id, second, client_id=unit_id).connect().accepted
    admin.remove(unit_id)
    assert not admin.exists(unit_id)
    assert not clients(unit_id, second, client_id=unit_id).connect().accepted


# TLS: a client verifies the broker
@ON_BOTH
def test_a_broker_with_a_certificate_from_another_ca_is_refused(tmp_path, mqtt_broker, clients):
    other = project_ca.ensure_ca(tmp_path / "other-ca")
    user, password, _ = mqtt_broker.gateway_credentials()
    c = clients(user, password, cafile=other.ca_cert)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        c.connect()


@ON_BOTH
def test_the_firmware_refuses_a_broker_from_another_ca(tmp_path, mqtt_broker, admin, vunits, unit_id):
    other = project_ca.ensure_ca(tmp_path / "other-ca")
    unit = vunits(
        unit_id,
        broker=("127.0.0.1", mqtt_broker.tls_port),
        password=admin.add_unit(unit_id),
        ca=other.ca_cert,
    )
    try:
        wait_until(lambda: any("not correctly signed" in line for line in unit.lines), what="the refusal")
        assert not any("link up" in line for line in unit.lines)
    finally:
        admin.remove(unit_id)


# end to end
@ON_BOTH
def test_a_unit_over_tls_with_its_credentials_reaches_the_gateway(
    tmp_path, mqtt_broker, admin, vunits, unit_id
):
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_broker.tls_port, extra=mqtt_broker.gateway_flags())
    gateway.start()
    try:
        gateway.register(unit_id)
        unit = vunits(
            unit_id,
            broker=("127.0.0.1", mqtt_broker.tls_port),
            password=admin.add_unit(unit_id),
            ca=mqtt_broker.ca.ca_cert,
            heap=os.environ.get("SIAGA_TLS_HEAP", "128K"),
        )
        config = json.loads((unit.flash / "config.json").read_text())
        assert config["broker_tls"] is True and config["broker_ca"] == "ca.crt"
        wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the unit's birth over TLS")
        unit.press(3)
        wait_until(lambda: gateway.unit(unit_id)["status"], what="the press")
        assert [h["key"] for h in gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]] == [3]
        wait_until(lambda: unit.state()["leds"].get("3") == "on", what="the gateway's ack over TLS")

        admin.decommission(unit_id)
        wait_until(lambda: any("not authori" in line.lower() for line in unit.lines), what="the unit refused")
        assert [h["key"] for h in gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]] == [3]  # history stays
    finally:
        gateway.stop()
        admin.remove(unit_id)


def test_the_cli_rotates_and_decommissions(
    secure_broker, broker, admin, clients, unit_id, capsys, tmp_path, monkeypatch
):
    password = admin.add_unit(unit_id)
    store = Store(tmp_path / "siaga.db")
    store.upsert_unit({"unit_id": unit_id, "kind": "ambulance", "callsign": "A1", "agency": ""})
    store.add_status(unit_id, {"boot": 1, "seq": 1, "t": 1.7e9, "key": 3}, 1.7e9)
    monkeypatch.setenv("SIAGA_BROKER_DATA", str(secure_broker.data_dir))
    monkeypatch.setenv("SIAGA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SIAGA_API", f"http://127.0.0.1:{free_port()}")  # no gateway answers there
    gw = None
    try:
        assert siaga(["unit", "rotate", unit_id]) == 1  # rotated, but the gateway was not told
        out, err = capsys.readouterr()
        assert f"siaga unit reset-counters {unit_id}" in err
        password = out.strip().splitlines()[-1]  # the password is still printed, last
        gw = GatewayProcess(tmp_path, broker.port).start()
        monkeypatch.setenv("SIAGA_API", gw.url)
        monkeypatch.setenv("SIAGA_TOKEN", gw.token)
        assert siaga(["unit", "rotate", unit_id]) == 0
        new = capsys.readouterr().out.strip().splitlines()[-1]
        assert new != password and clients(unit_id, new, client_id=unit_id).connect().accepted
        assert siaga(["unit", "decommission", unit_id]) == 0
        assert not admin.is_enabled(unit_id)
        row = store.unit(unit_id)
        assert row["decommissioned_at"] is not None
        assert (
            store.db.execute("select count(*) from status_events where unit_id = ?", [unit_id]).fetchone()[0]
            == 1
        )
        actions = "select action from dispatcher_actions where unit_id = ? order by id"
        assert [r[0] for r in store.db.execute(actions, [unit_id])] == ["reset_ids", "decommission"]
        assert siaga(["unit", "enable", unit_id]) == 0
        assert admin.is_enabled(unit_id) and store.unit(unit_id)["decommissioned_at"] is None
        assert siaga(["unit", "rotate", unit_id + "x"]) == 2
        assert f"unit {unit_id}x has no credentials" in capsys.readouterr().err
    finally:
        if gw is not None:
            gw.stop()
        admin.remove(unit_id)
