"""`make demo` as a new user meets it: everything starts on embedded defaults, the demo
town is imported as the map, six units drive in Palangka Raya on its roads and report,
the nearest units are ranked by drive time, and SIGTERM leaves no process behind."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import REPO, wait_until

from provisioning.processes import free_port
from simulators.geo import to_latlon, to_xy
from simulators.roaddrive import load_graph
from simulators.route import BLOCK_M


def processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if text in cmdline or text in cwd:
            found.append((pid, cmdline))
    return found


def test_demo_runs_the_fleet_and_stops_cleanly(tmp_path):
    http = free_port()
    env = dict(
        os.environ, SIAGA_DATA_DIR=str(tmp_path), SIAGA_MQTT_PORT=str(free_port()), SIAGA_HTTP_PORT=str(http)
    )
    env["SIAGA_DEMO_PASSWORD"] = "demo-sandi-112"  # else one made at the first start, kept
    demo = subprocess.Popen(
        [sys.executable, "-m", "siaga", "demo"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    dispatcher = httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=2)
    try:

        def units():  # as the demo's dispatcher, logged in
            try:
                if "siaga_session" not in dispatcher.cookies:
                    login = {"username": "dispatcher", "password": "demo-sandi-112"}
                    dispatcher.post("/api/v1/login", json=login).raise_for_status()
                return dispatcher.get("/api/v1/units").raise_for_status().json()
            except httpx.HTTPError:
                return []

        def fleet_reporting():
            us = units()
            return len(us) == 6 and all(u["position"] for u in us) and us

        fleet = wait_until(fleet_reporting, 60, 0.5, "six units with positions")
        kinds = sorted(u["kind"] for u in fleet)
        assert kinds == ["ambulance"] * 3 + ["fire_truck"] * 3
        for u in fleet:
            assert abs(u["position"]["lat"] + 2.21) < 0.05 and abs(u["position"]["lon"] - 113.915) < 0.05
        wait_until(
            lambda: all(u["availability"] == "available" for u in units()),
            30,
            0.5,
            "the crews reporting at their stations",
        )
        assert load_graph(tmp_path).nodes == 17 * 17  # the demo town, imported before the gateway
        for u in units():  # on its streets (every BLOCK_M east or north), inside the town
            x, y = to_xy(u["position"]["lat"], u["position"]["lon"])
            assert min(abs(v - round(v / BLOCK_M) * BLOCK_M) for v in (x, y)) < 2, (u["unit_id"], x, y)
            assert max(abs(x), abs(y)) < 8 * BLOCK_M + 2
        lat, lon = to_latlon(0, 1000)  # an incident on the north bank
        nearest = dispatcher.get("/api/v1/nearest", params={"lat": lat, "lon": lon, "limit": 6})
        assert nearest.status_code == 200 and nearest.headers["X-Nearest-Method"] == "road"
        assert nearest.json() and all(c["method"] == "road" and c["eta_min"] > 0 for c in nearest.json())
    finally:
        demo.send_signal(signal.SIGTERM)
        out, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, out
    assert "stopped." in out and f":{http}/api/v1/units" in out
    assert f"map       http://127.0.0.1:{http}/  login dispatcher / demo-sandi-112" in out
    assert f'curl -H "Authorization: Bearer $SIAGA_TOKEN" http://127.0.0.1:{http}/api/v1/units' in out
    assert "starting the broker" in out.splitlines()[1]  # it says what it does from the start
    assert "importing the demo map" in out.splitlines()[2] and "roads     the demo town" in out
    meta = json.loads((tmp_path / "map" / "meta.json").read_text())
    assert meta["demo"] is True and meta["source"] == "demo-town.osm.pbf"
    assert processes_mentioning(str(tmp_path)) == []


def test_the_demo_keeps_its_password_and_leaves_no_old_token_valid(tmp_path, monkeypatch):
    from gateway import auth
    from simulators.demo import demo_password
    from simulators.gateway_process import make_token

    monkeypatch.delenv("SIAGA_DEMO_PASSWORD", raising=False)
    first = demo_password(tmp_path)
    assert demo_password(tmp_path) == first and (tmp_path / "demo.password").stat().st_mode & 0o077 == 0
    old = make_token(tmp_path, "supervisor", "gateway-process", replace=True)
    new = make_token(tmp_path, "supervisor", "gateway-process", replace=True)  # the next start's
    store = auth.open_db(tmp_path)
    try:
        assert auth.token_principal(store.reader(), old) is None
        assert auth.token_principal(store.reader(), new).role == "supervisor"
    finally:
        store.db.conn.close()


def test_the_demo_runs_on_a_nats_cluster_too(tmp_path):
    """`make demo-nats`: the same fleet, provisioned with logins of their own on the
    cluster, reporting through it; SIGTERM leaves no process behind."""
    http = free_port()
    env = dict(os.environ, SIAGA_DATA_DIR=str(tmp_path), SIAGA_HTTP_PORT=str(http))
    env["SIAGA_DEMO_PASSWORD"] = "demo-sandi-112"
    demo = subprocess.Popen(
        [sys.executable, "-m", "siaga", "demo", "--broker", "nats"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    dispatcher = httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=2)
    try:

        def reporting():
            try:
                if "siaga_session" not in dispatcher.cookies:
                    login = {"username": "dispatcher", "password": "demo-sandi-112"}
                    dispatcher.post("/api/v1/login", json=login).raise_for_status()
                us = dispatcher.get("/api/v1/units").raise_for_status().json()
            except httpx.HTTPError:
                return False
            return len(us) == 6 and all(u["position"] and u["link"] == "online" for u in us)

        wait_until(reporting, 90, 0.5, "six units online with positions, through the cluster")
        users = json.loads((tmp_path / "nats" / "users.json").read_text())
        assert {"amb-01", "dmk-01"} <= set(users["units"])  # each unit its own login on the cluster
    finally:
        demo.send_signal(signal.SIGTERM)
        out, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, out
    assert "NATS cluster, MQTT over TLS on 127.0.0.1:" in out and "stopped." in out
    assert processes_mentioning(str(tmp_path)) == []
