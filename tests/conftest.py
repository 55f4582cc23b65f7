"""Fixtures on real parts: a Mosquitto on a free port from the repository's config, the
gateway as its own process, virtual units running the firmware in MicroPython."""

import itertools
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from provisioning.mosquitto import Mosquitto, die_with_parent, free_port
from simulators.link import Link
from simulators.vunit import VirtualUnit

REPO = Path(__file__).resolve().parent.parent
# MicroPython test modules: run in the unix port by tests/test_firmware.py, not by pytest.
collect_ignore_glob = ["firmware/*"]
_ids = itertools.count(1)


def wait_until(predicate, timeout=15.0, interval=0.05, what="condition"):
    """Poll `predicate` until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value {last!r}")


@pytest.fixture
def unit_id():
    """A unit id of its own for each test: the broker is shared by the session."""
    return f"t{os.getpid() % 1000:03d}-{next(_ids):04d}"


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    m = Mosquitto(tmp_path_factory.mktemp("broker")).start()
    yield m
    m.stop()


class GatewayProc:
    def __init__(self, data_dir, mqtt_port, extra=()):
        self.data_dir = Path(data_dir)
        self.mqtt_port = mqtt_port
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.extra = ["--mqtt-client-id", f"gw-{self.http_port}", *extra]
        self.proc = None

    def start(self):
        self.log = open(self.data_dir / "gateway.log", "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "gateway",
                "--mqtt",
                f"127.0.0.1:{self.mqtt_port}",
                "--http",
                str(self.http_port),
                "--data",
                str(self.data_dir),
                *self.extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
            cwd=REPO,
        )
        wait_until(self._ready, 20, what="the gateway's health endpoint")
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("gateway exited: " + (self.data_dir / "gateway.log").read_text()[-2000:])
        try:
            return self.get("/api/v1/health")[1]["mqtt_connected"]
        except OSError:
            return False

    def request(self, method, path, body=None):
        req = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def get(self, path):
        return self.request("GET", path)

    def unit(self, unit_id):
        return self.get(f"/api/v1/units/{unit_id}")[1]

    def register(self, unit_id, kind="ambulance", **extra):
        status, body = self.request(
            "POST", "/api/v1/units", {"unit_id": unit_id, "kind": kind, "callsign": unit_id.upper(), **extra}
        )
        assert status == 201, body
        return body

    def stop(self, sig=None):
        if self.proc and self.proc.poll() is None:
            if sig:
                self.proc.send_signal(sig)
            else:
                self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def gateway(broker, tmp_path):
    gw = GatewayProc(tmp_path / "gateway", broker.port)
    gw.data_dir.mkdir()
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
