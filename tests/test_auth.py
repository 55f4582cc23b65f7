"""Logins, roles, sessions, CSRF and API tokens, against a real gateway process over
real HTTP, and the `siaga user` / `siaga token` commands on its database."""

import json
import os
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
from conftest import REPO, wait_until
from fastapi.routing import APIRoute, iter_route_contexts

from gateway import auth, config
from gateway.api import logins
from gateway.errors import Conflict
from simulators.gateway_process import GatewayProcess, make_token

PASSWORD = "rahasia-112"


@pytest.fixture
def gateway(gateway_on_each_store):
    """Each test here runs on both stores: SQLite and PostgreSQL."""
    return gateway_on_each_store


def siaga(*args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("SIAGA_TOKEN", "SIAGA_PASSWORD")}
    return subprocess.run(
        [sys.executable, "-m", "siaga", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**clean, **env},
        timeout=60,
    )


def call(gateway, method, path, token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, gateway.url + path, headers=headers, timeout=10, **kw)


def add_user(gateway, name, role, password=PASSWORD):
    status, body = gateway.request(
        "POST", "/api/v1/users", {"name": name, "role": role, "password": password}
    )
    assert status == 201, body
    return body


def login(gateway, name, password=PASSWORD):
    """A browser-like client holding the session cookie, and the session's CSRF token."""
    client = httpx.Client(base_url=gateway.url, timeout=10)
    r = client.post("/api/v1/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return client, r.json()["csrf"]


def error(response):
    return response.status_code, response.json()["error"]["code"]


def test_every_route_of_the_app_is_in_the_permission_table(tmp_path):
    from gateway.service import Gateway

    gw = Gateway(config.resolve(None, environ={"SIAGA_DATA_DIR": str(tmp_path)}))
    seen = 0
    for route in iter_route_contexts(gw.app.routes):
        if isinstance(route.original_route, APIRoute):
            # what Auth.authorize reads (scope["route"]) is the route as served
            assert route.original_route.path_format == route.path_format, "give APIRouter its prefix"
            for method in route.methods:
                assert logins.required(method, route.path_format), (
                    f"{method} {route.path_format} is not in ROUTES"
                )
                seen += 1
        else:  # served outside FastAPI's dependencies: only static files and the docs may be
            path = route.path_format
            assert path in logins.PUBLIC_PATHS or path.startswith(logins.PUBLIC_PREFIXES), path
    assert seen >= 25
    gw.store.close()


def test_every_non_public_route_refuses_an_anonymous_call(gateway):
    spec = call(gateway, "GET", "/api/v1/openapi.json").json()
    refused = 0
    for path, methods in spec["paths"].items():
        for method in methods:
            concrete = path.replace("{unit_id}", "nobody").replace("{name}", "nobody")
            r = call(gateway, method.upper(), concrete, json={})
            if logins.required(method.upper(), path) == logins.PUBLIC:
                assert r.status_code != 401, (method, path)
                continue
            assert error(r) == (401, "unauthenticated"), (method, path, r.text)
            assert "Authorization: Bearer" in r.json()["error"]["message"]
            refused += 1
    assert refused >= 20
    assert call(gateway, "GET", "/api/v1/health").status_code == 200


def test_login_sets_an_http_only_strict_cookie_and_wrong_credentials_are_refused(gateway):
    add_user(gateway, "dina", "dispatcher")
    for name, password in (("dina", "salah-sandi"), ("nobody", PASSWORD), ("dina", "")):
        r = call(gateway, "POST", "/api/v1/login", json={"username": name, "password": password})
        assert error(r) == (401, "bad_credentials")
        assert "siaga_session" not in r.headers.get("set-cookie", "")

    r = call(gateway, "POST", "/api/v1/login", json={"username": "dina", "password": PASSWORD})
    assert r.status_code == 200
    assert r.json()["user"] == "dina" and r.json()["role"] == "dispatcher" and len(r.json()["csrf"]) > 20
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith("siaga_session=") and "httponly" in cookie
    assert "samesite=strict" in cookie and "path=/" in cookie

    client = httpx.Client(base_url=gateway.url, cookies={"siaga_session": r.cookies["siaga_session"]})
    me = client.get("/api/v1/me").json()
    assert me == {
        "user": "dina",
        "role": "dispatcher",
        "permissions": ["dispatch", "view"],
        "csrf": r.json()["csrf"],
    }
    assert client.get("/api/v1/units").status_code == 200
    assert client.post("/api/v1/logout", headers={"X-CSRF-Token": me["csrf"]}).status_code == 200
    client.cookies.set("siaga_session", r.cookies["siaga_session"])  # a copy kept by an attacker
    assert error(client.get("/api/v1/me")) == (401, "unauthenticated")


def test_repeated_failed_logins_throttle_that_name_only(gateway):
    add_user(gateway, "budi", "viewer")
    add_user(gateway, "sari", "viewer")
    for _ in range(auth.LOGIN_FAILURES_ALLOWED):
        r = call(gateway, "POST", "/api/v1/login", json={"username": "budi", "password": "tebak-tebak"})
        assert error(r) == (401, "bad_credentials")
    r = call(gateway, "POST", "/api/v1/login", json={"username": "budi", "password": PASSWORD})
    assert error(r) == (429, "throttled") and "try again" in r.json()["error"]["message"]
    login(gateway, "sari")


def test_a_session_lasts_while_used_and_expires_after_its_lifetime_idle(broker, tmp_path):
    lifetime = 3.0
    gw = GatewayProcess(tmp_path / "gw", broker.port, extra=["--session-lifetime", str(lifetime)]).start()
    try:
        add_user(gw, "dina", "dispatcher")
        client, _ = login(gw, "dina")
        used_until = time.monotonic() + 2 * lifetime  # in use longer than a lifetime: it slides
        while time.monotonic() < used_until:
            assert client.get("/api/v1/me").status_code == 200
            time.sleep(lifetime / 6)
        with client.stream("GET", "/api/v1/stream", timeout=30) as r:  # keeps no one logged in
            assert r.status_code == 200
            lines = list(r.iter_lines())  # until the gateway ends it: the session expired
        assert lines[0] == "retry: 1000"
        assert error(client.get("/api/v1/me")) == (401, "unauthenticated")
        assert error(client.get("/api/v1/units")) == (401, "unauthenticated")
    finally:
        gw.stop()


def test_roles_decide_who_assigns_who_locks_and_who_manages_users(gateway, unit_id, mqtt_client):
    gateway.register(unit_id)
    now = int(time.time())  # the unit is online and available: only an available unit is assigned
    birth = {"_type": "birth", "boot": 1, "seq": 0, "t": now, "sent": now}
    status = {"_type": "status", "boot": 1, "seq": 1, "key": 2, "t": now, "sent": now}
    mqtt_client.publish(f"siaga/{unit_id}/conn", json.dumps(birth), qos=1).wait_for_publish()
    mqtt_client.publish(f"siaga/{unit_id}/status", json.dumps(status), qos=1).wait_for_publish()
    wait_until(lambda: gateway.unit(unit_id)["availability"] == "available", what="the unit available")
    viewer = make_token(gateway.data_dir, "viewer", "wallboard", database_url=gateway.database_url)
    assign = {"lat": -2.21, "lon": 113.92, "kind": "medical"}

    r = call(gateway, "POST", f"/api/v1/units/{unit_id}/assign", viewer, json=assign)
    assert error(r) == (403, "forbidden")
    assert r.json()["error"]["message"].endswith("needs the dispatch permission; you are a viewer")
    assert call(gateway, "GET", "/api/v1/units", viewer).status_code == 200

    add_user(gateway, "dina", "dispatcher")
    dina, csrf = login(gateway, "dina")
    r = dina.post(f"/api/v1/units/{unit_id}/assign", json=assign, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["unit"]["availability"] == "assigned"
    r = dina.post(
        f"/api/v1/units/{unit_id}/status",
        json={"key": 6, "reason": "ban bocor"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200
    history = gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]
    assert history[0]["source"] == "dispatcher" and history[0]["user"] == "dina"  # who acted, from the login
    r = dina.post(f"/api/v1/units/{unit_id}/lock", headers={"X-CSRF-Token": csrf})
    assert error(r) == (403, "forbidden") and "needs the lock permission; you are a dispatcher" in r.text
    r = dina.post(
        "/api/v1/users",
        json={"name": "eko", "role": "supervisor", "password": PASSWORD},
        headers={"X-CSRF-Token": csrf},
    )
    assert error(r) == (403, "forbidden")

    add_user(gateway, "sinta", "supervisor")
    sinta, csrf = login(gateway, "sinta")
    r = sinta.post(f"/api/v1/units/{unit_id}/lock", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and "status_locked" in r.json()["unit"]["flags"]
    r = sinta.post(
        "/api/v1/users",
        json={"name": "eko", "role": "viewer", "password": PASSWORD},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 201 and r.json()["role"] == "viewer"
    assert {u["name"]: u["role"] for u in sinta.get("/api/v1/users").json()}["eko"] == "viewer"
    r = sinta.post("/api/v1/users/eko/disable", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["disabled_at"] is not None
    r = call(gateway, "POST", "/api/v1/login", json={"username": "eko", "password": PASSWORD})
    assert error(r) == (401, "bad_credentials")


def test_technician_sees_device_health_and_viewer_does_not(gateway, unit_id, mqtt_client):
    gateway.register(unit_id)
    now = int(time.time())
    birth = {"_type": "birth", "boot": 1, "seq": 0, "t": now, "sent": now, "fw": "0.1.0"}
    birth.update(board="virtual/1", reset="watchdog", cfg=0)
    mqtt_client.publish(f"siaga/{unit_id}/conn", json.dumps(birth), qos=1).wait_for_publish()
    add_user(gateway, "teguh", "technician")
    teguh, _ = login(gateway, "teguh")

    def device():
        return teguh.get(f"/api/v1/units/{unit_id}").json().get("device")

    seen = wait_until(device, what="the birth in the unit's device health")
    assert seen["fw"] == "0.1.0" and seen["reset"] == "watchdog"
    viewer = make_token(gateway.data_dir, "viewer", "wallboard", database_url=gateway.database_url)
    shown = call(gateway, "GET", f"/api/v1/units/{unit_id}", viewer).json()
    assert shown["unit_id"] == unit_id and "device" not in shown and "settings_pushed" not in shown


def test_changes_from_a_session_need_its_csrf_token(gateway, unit_id):
    gateway.register(unit_id)
    add_user(gateway, "dina", "dispatcher")
    dina, csrf = login(gateway, "dina")
    path, body = f"/api/v1/units/{unit_id}/release", {"reason": "selesai"}
    for headers in ({}, {"X-CSRF-Token": "bukan-token"}, {"X-CSRF-Token": ""}):
        r = dina.post(path, json=body, headers=headers)
        assert error(r) == (403, "csrf"), headers
    other, other_csrf = login(gateway, "dina")  # another session's token is not this one's
    assert error(dina.post(path, json=body, headers={"X-CSRF-Token": other_csrf})) == (403, "csrf")
    assert dina.post(path, json=body, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert other.post(path, json=body, headers={"X-CSRF-Token": other_csrf}).status_code == 200
    assert dina.get(f"/api/v1/units/{unit_id}").status_code == 200  # reading needs none


def test_bearer_tokens_from_the_cli_work_until_revoked(gateway):
    run = siaga("token", "create", "--role", "viewer", "--name", "wallboard", *gateway.store_flags())
    assert run.returncode == 0, run.stderr
    token = run.stdout.strip()
    assert token.startswith("siaga_") and "shown this once" in run.stderr
    r = call(gateway, "GET", "/api/v1/me", token)
    assert r.json() == {"user": "wallboard", "role": "viewer", "permissions": ["view"], "csrf": None}
    assert call(gateway, "GET", "/api/v1/units", token).status_code == 200
    r = call(gateway, "POST", "/api/v1/units", token, json={"unit_id": "amb-99"})
    assert error(r) == (403, "forbidden")  # no CSRF needed, but the role still counts
    assert error(call(gateway, "GET", "/api/v1/units", token + "x")) == (401, "unauthenticated")

    listed = siaga("token", "list", *gateway.store_flags())
    assert "wallboard" in listed.stdout and token not in listed.stdout
    run = siaga("token", "revoke", "wallboard", *gateway.store_flags())
    assert run.returncode == 0 and "revoked 1 token" in run.stdout
    assert error(call(gateway, "GET", "/api/v1/units", token)) == (401, "unauthenticated")
    assert siaga("token", "revoke", "wallboard", *gateway.store_flags()).returncode == 2


def test_cli_user_add_list_disable(gateway):
    data = gateway.store_flags()
    run = siaga("user", "add", "nadia", "--role", "dispatcher", *data, SIAGA_PASSWORD=PASSWORD)
    assert run.returncode == 0, run.stderr
    nadia, _ = login(gateway, "nadia")
    again = siaga("user", "add", "nadia", "--role", "viewer", *data, SIAGA_PASSWORD=PASSWORD)
    assert again.returncode == 2 and "exists" in again.stderr
    short = siaga("user", "add", "nia", "--role", "viewer", *data, SIAGA_PASSWORD="pendek")
    assert short.returncode == 2 and "at least" in short.stderr
    listed = siaga("user", "list", *data)
    assert [line.split()[:2] for line in listed.stdout.splitlines() if line.startswith("nadia")] == [
        ["nadia", "dispatcher"]
    ]
    assert siaga("user", "disable", "nadia", *data).returncode == 0
    assert error(nadia.get("/api/v1/me")) == (401, "unauthenticated")  # her session ended
    r = call(gateway, "POST", "/api/v1/login", json={"username": "nadia", "password": PASSWORD})
    assert error(r) == (401, "bad_credentials")


def test_password_hashes_are_slow_salted_and_not_the_password(tmp_path):
    store = auth.open_db(tmp_path)
    with store.atomic() as db:
        auth.add_user(db, "ani", "viewer", PASSWORD)
        auth.add_user(db, "ina", "viewer", PASSWORD)
    rows = dict(sqlite3.connect(store.path).execute("select name, password_hash from users").fetchall())
    assert rows["ani"] != rows["ina"] and all(PASSWORD not in h for h in rows.values())
    assert all(h.startswith("scrypt$") for h in rows.values())
    assert auth.check_password(PASSWORD, rows["ani"]) and not auth.check_password(PASSWORD + "x", rows["ani"])
    with pytest.raises(Conflict), store.atomic() as db:
        auth.add_user(db, "ani", "supervisor", PASSWORD)


def test_the_live_stream_needs_a_login(gateway):
    with httpx.stream("GET", gateway.url + "/api/v1/stream", timeout=10) as r:
        assert r.status_code == 401
    add_user(gateway, "budi", "viewer")
    budi, _ = login(gateway, "budi")
    with budi.stream("GET", "/api/v1/stream") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert next(r.iter_lines()) == "retry: 1000"


def test_cli_commands_that_call_the_api_send_the_token(gateway):
    run = siaga("units", "--api", gateway.url)
    assert run.returncode == 2 and "SIAGA_TOKEN" in run.stderr and "siaga token create" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    run = siaga("units", "--api", gateway.url, "--token", "siaga_wrong")
    assert run.returncode == 2 and "refused the API token" in run.stderr
    assert siaga("units", "--api", gateway.url, SIAGA_TOKEN=gateway.token).returncode == 0
    assert siaga("units", "--api", gateway.url, "--token", gateway.token).returncode == 0
