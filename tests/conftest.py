"""Fixtures on real parts: a Mosquitto on a free port from the repository's config, the
gateway as its own process, virtual units running the firmware in MicroPython."""

import itertools
import os
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from provisioning.mosquitto import Mosquitto
from simulators.gateway_process import GatewayProcess, wait_until  # noqa: F401 (wait_until: for the tests)
from simulators.link import Link
from simulators.vunit import VirtualUnit

REPO = Path(__file__).resolve().parent.parent
# MicroPython test modules: run in the unix port by tests/test_firmware.py, not by pytest.
collect_ignore_glob = ["firmware/*"]
_ids = itertools.count(1)


@pytest.fixture
def unit_id():
    """A unit id of its own for each test: the broker is shared by the session."""
    return f"t{os.getpid() % 1000:03d}-{next(_ids):04d}"


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    m = Mosquitto(tmp_path_factory.mktemp("broker")).start()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory):
    """A Mosquitto as in production (docs/security.md "Broker security"): TLS only, from a project
    CA; logins and topics checked by the dynamic security plugin; no anonymous clients.
    `.admin()` manages units' credentials; GatewayProcess(..., extra=m.gateway_flags())
    logs a gateway in."""
    m = Mosquitto(tmp_path_factory.mktemp("secure-broker"), secure=True).start()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of the session's own, in a folder of its own on a free port
    (provisioning/postgres.py); each test that uses it gets a database of its own."""
    from provisioning.postgres import start_primary

    server = start_primary(db=None)
    yield server
    server.remove()


@pytest.fixture
def database_url(postgres):
    """A new, empty database on the session's PostgreSQL: its URL."""
    import psycopg

    name = f"t{next(_ids):05d}"
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(f"create database {name}")
    yield postgres.url(name)
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_kind(request):
    """Run the test against each store: SQLite (the default), PostgreSQL (shared)."""
    return request.param


@pytest.fixture
def new_store(store_kind, tmp_path, request):
    """new_store() -> a Store of the test's kind (store_kind): SQLite in tmp_path, or
    PostgreSQL in a database of the test's own; the same database on each call."""
    from gateway.store import open_store

    url = request.getfixturevalue("database_url") if store_kind == "postgresql" else ""
    made = []

    def make():
        made.append(open_store(tmp_path, url))
        return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.fixture
def gateway_database(store_kind, request):
    """The database_url of a gateway of the test's store_kind ("" for SQLite)."""
    return request.getfixturevalue("database_url") if store_kind == "postgresql" else ""


@pytest.fixture
def gateway(broker, tmp_path):
    gw = GatewayProcess(tmp_path / "gateway", broker.port)
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture
def gateway_pair(broker, database_url, tmp_path):
    """Two gateway processes on one PostgreSQL database, with the one MQTT session id
    between them (docs/high-availability.md): one leads, the other stands by."""
    client_id = f"siaga-pair-{next(_ids)}-{time.monotonic_ns() % 10**6}"
    gws = [
        GatewayProcess(tmp_path / name, broker.port, client_id=client_id, database_url=database_url)
        for name in ("a", "b")
    ]
    for gw in gws:
        gw.start()
    yield gws
    for gw in gws:
        gw.stop()


@pytest.fixture
def gateway_on_each_store(broker, tmp_path, gateway_database):
    """The gateway process on SQLite, then on PostgreSQL (the store_kind parameter): a
    test module runs on both by naming this its `gateway`."""
    gw = GatewayProcess(tmp_path / "gateway", broker.port, database_url=gateway_database)
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture
def vunits(broker, tmp_path):
    """Start virtual units: vunits(unit_id, **options) -> VirtualUnit."""
    started = []

    def start(unit_id, **kw):
        kw.setdefault("broker", ("127.0.0.1", broker.port))
        u = VirtualUnit(unit_id, tmp_path / "flash" / unit_id, tmp_path / "sim", seed=1, **kw).start()
        started.append(u)
        return u

    yield start
    for u in started:
        u.stop(clean=False)
        print(f"--- console of {u.unit_id} (shown when a test fails)", *u.lines[-40:], sep="\n")


@pytest.fixture
def link(broker):
    """A unit's data link to the broker that a test can silence or cut."""
    lk = Link(broker.port).start()
    yield lk
    lk.stop()


@pytest.fixture
def mqtt_client(broker):
    """A plain paho client on the test broker, for publishing what a unit would not."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{os.getpid()}-{next(_ids)}")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    yield c
    c.loop_stop()
    c.disconnect()


def log_in(page, url, name, password):
    """Open the dispatcher's map at `url` in `page` and log in; returns when it is drawn."""
    page.goto(url + "/")
    page.fill("#login-user", name)
    page.fill("#login-pass", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_function("window.__siaga.ready")
    return page


@pytest.fixture(scope="session")
def nats_cluster(tmp_path_factory):
    """A 3-node NATS cluster with its MQTT listeners (provisioning/nats.py, docs/brokers.md):
    TLS from a project CA, a login per unit and topic rights as on the secure Mosquitto;
    `.admin()` manages units' credentials, `.kill_node(i)`/`.start_node(i)` fail a node."""
    from provisioning.nats import NatsCluster

    c = NatsCluster(tmp_path_factory.mktemp("nats-cluster")).start()
    yield c
    c.stop()
