"""Several gateways of one centre (docs/high-availability.md "Dispatchers on either
gateway"): `siaga` and its HTTP client (gateway/client.py) take a list of addresses and
ask the next when one does not answer; the page goes to the next gateway when its own
dies. On real parts: small real HTTP servers and closed ports for the client, real
gateway processes and Debian's Chromium for the command and the page."""

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import log_in
from playwright.sync_api import expect, sync_playwright

from gateway.client import Client, addresses, default_url
from gateway.errors import SiagaError
from provisioning.processes import free_port
from simulators.gateway_process import GatewayProcess

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "rahasia-112"


class Server:
    """A tiny real HTTP server on a free port that answers as `mode` says: "ok" (JSON 200,
    what a gateway does), "json503" (a gateway's own 503), "proxy503" and "proxy502" (a
    proxy's HTML with no gateway behind it), "slow" (the reply comes after `delay` s).
    `hits` counts the requests by method."""

    def __init__(self, mode="ok", delay=0.0):
        self.mode, self.delay, self.hits = mode, delay, {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.answer(self)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.answer(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, handler):
        self.hits[handler.command] = self.hits.get(handler.command, 0) + 1
        if self.mode == "slow":
            time.sleep(self.delay)
        status, kind, body = {
            "json503": (
                503,
                "application/json",
                json.dumps({"error": {"code": "unavailable", "message": "no"}}),
            ),
            "proxy503": (503, "text/html", "<html><body><h1>503 Service Unavailable</h1></body></html>"),
            "proxy502": (502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>"),
        }.get(self.mode, (200, "application/json", json.dumps({"from": self.url})))
        data = body.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        try:
            handler.wfile.write(data)
        except OSError:  # the client gave up waiting
            pass

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    """servers(mode, ...) -> a Server, stopped after the test."""
    started = []

    def start(mode="ok", **kw):
        started.append(Server(mode, **kw))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def dead():
    """An address where nothing listens: the connection is refused."""
    return f"http://127.0.0.1:{free_port()}"


def test_a_list_of_addresses_is_read_in_order_each_once():
    assert addresses(" http://a:1/ ,http://b:2,, http://a:1") == ["http://a:1", "http://b:2"]
    assert default_url("http://a:1/,http://b:2/") == "http://a:1,http://b:2"
    assert default_url("http://one:8080/") == "http://one:8080"  # a single address, as before
    with pytest.raises(SiagaError, match="not http://HOST:PORT"):
        addresses("http://a:1,gw2:8080")


def test_a_dead_address_is_passed_over_and_the_client_stays_with_the_one_that_answered(servers):
    proxy, live = servers("proxy503"), servers()
    client = Client(f"{dead()},{proxy.url},{live.url}", token="t")
    assert client.get("/api/v1/units") == {"from": live.url}
    assert client.url == live.url and proxy.hits == {"GET": 1}
    assert client.post("/api/v1/units", {"unit_id": "x"}) == {"from": live.url}
    assert proxy.hits == {"GET": 1} and live.hits == {"GET": 1, "POST": 1}  # it stays


def test_when_none_answers_the_error_names_every_address_and_why(servers):
    a, b, proxy = dead(), dead(), servers("proxy503")
    with pytest.raises(SiagaError) as e:
        Client(f"{a},{b},{proxy.url}").get("/api/v1/units")
    message = e.value.message
    assert message.startswith("cannot reach the gateway at ")
    assert f"{a} (cannot connect" in message and f"{b} (cannot connect" in message
    assert f"{proxy.url} (HTTP 503 from a proxy" in message


def test_a_gateways_own_503_is_an_answer(servers):
    degraded, live = servers("json503"), servers()
    client = Client(f"{degraded.url},{live.url}")
    assert client.request("GET", "/api/v1/health")[0] == 503
    assert client.url == degraded.url and live.hits == {}


def test_a_post_that_may_have_been_applied_is_not_sent_again(servers):
    """Sent and not answered in time: the gateway may have applied it. A GET is asked of
    the next gateway; a POST is not (it would be applied twice) and the error says so."""
    slow, live = servers("slow", delay=1.5), servers()
    client = Client(f"{slow.url},{live.url}", timeout=0.5)
    with pytest.raises(SiagaError) as e:
        client.post("/api/v1/units/a/assign", {"lat": 1, "lon": 2})
    assert "may have been applied" in e.value.message and f"not sent to {live.url}" in e.value.message
    assert live.hits == {}
    assert client.get("/api/v1/units") == {"from": live.url}  # a read is safe to ask again


def test_a_proxys_502_moves_a_get_on_but_not_a_post(servers):
    proxy, live = servers("proxy502"), servers()
    with pytest.raises(SiagaError, match="may have been applied"):
        Client(f"{proxy.url},{live.url}").post("/api/v1/units", {})
    assert live.hits == {}
    assert Client(f"{proxy.url},{live.url}").get("/api/v1/units") == {"from": live.url}


def siaga(*args):
    return subprocess.run(
        [sys.executable, "-m", "siaga", *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def test_siaga_units_passes_over_a_gateway_that_does_not_answer(gateway, unit_id):
    gateway.register(unit_id, kind="fire_truck")
    run = siaga("units", "--api", f"{dead()},{gateway.url}", "--token", gateway.token)
    assert run.returncode == 0, run.stderr
    assert re.search(rf"^{unit_id}\s.*fire_truck\s+offline", run.stdout, re.M)
    both_dead = siaga("units", "--api", f"{dead()},{dead()}", "--token", gateway.token)
    assert both_dead.returncode == 2 and both_dead.stderr.count("cannot connect") == 2


def test_map_config_says_no_other_gateways_by_default(gateway):
    assert gateway.get("/api/v1/map-config")[1]["gateways"] == []


# ---- the page ------------------------------------------------------------------------


def listing_both(broker, tmp_path, database_url=""):
    """Gateways A and B, A with `gateways` = "A,B" (as a person writes it: a / and a
    space); on `database_url` both, else each on a SQLite data folder of its own."""
    b = GatewayProcess(tmp_path / "b", broker.port, database_url=database_url)
    port_a = free_port()
    listed = ["--gateways", f"http://127.0.0.1:{port_a}/, {b.url}"]
    a = GatewayProcess(tmp_path / "a", broker.port, port_a, extra=listed, database_url=database_url)
    return a, b


@pytest.fixture
def two_gateways(broker, tmp_path):
    """A and B each on a SQLite data folder of its own (two gateways on one SQLite file
    are not safe): each knows the same dispatcher and unit, not the other's sessions."""
    a, b = listing_both(broker, tmp_path)
    try:
        yield a.start(), b.start()
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def two_gateways_one_database(broker, tmp_path, database_url):
    """A and B on one PostgreSQL database, as a centre runs them."""
    a, b = listing_both(broker, tmp_path, database_url)
    try:
        yield a.start(), b.start()
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def chromium():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        yield browser.new_page()
        browser.close()


def add_dispatcher_and_unit(gw, unit_id):
    user = {"name": "disp", "role": "dispatcher", "password": PASSWORD}
    assert gw.request("POST", "/api/v1/users", user)[0] == 201
    gw.register(unit_id, kind="ambulance")


def mark_an_incident_then_kill(page, a, b):
    """On A's page, mark an incident; kill A; the page says it moves, and lands on B."""
    log_in(page, a.url, "disp", PASSWORD)
    expect(page.locator("#units tbody tr")).to_have_count(1)
    page.fill("#inc-lat", "-2.205")
    page.fill("#inc-lon", "113.92")
    page.fill("#inc-note", "rumah terbakar")
    page.click("#incident-form button[type=submit]")

    a.kill()
    moving = page.locator("#gateway-move")
    expect(moving).to_have_attribute("data-key", "gateway_moving", timeout=20000)
    expect(moving).to_have_text(f"Gateway {a.url} tidak menjawab; pindah ke {b.url}…")
    page.wait_for_url(lambda url: url.startswith(b.url + "/"), timeout=10000)


def the_map_is_back_as_it_was(page, a, b):
    page.wait_for_function("window.__siaga.ready")
    expect(page.locator("#units tbody tr")).to_have_count(1)
    expect(page.locator("#gateway-move")).to_have_text(f"Gateway {a.url} tidak menjawab; pindah ke {b.url}")
    expect(page.locator("#inc-lat")).to_have_value("-2.20500")  # the incident came along
    expect(page.locator("#inc-note")).to_have_value("rumah terbakar")
    assert "#" not in page.url  # what came in the fragment is not taken twice


def test_the_page_moves_to_the_next_gateway_when_its_own_dies(two_gateways, unit_id, chromium):
    a, b = two_gateways
    for gw in (a, b):
        add_dispatcher_and_unit(gw, unit_id)
    assert a.get("/api/v1/map-config")[1]["gateways"] == [a.url, b.url]

    mark_an_incident_then_kill(chromium, a, b)
    # B's database does not know A's session (one host: the cookie came along)
    expect(chromium.locator("#login")).to_be_visible(timeout=10000)
    chromium.fill("#login-user", "disp")
    chromium.fill("#login-pass", PASSWORD)
    chromium.click("#login-form button[type=submit]")
    the_map_is_back_as_it_was(chromium, a, b)


def test_on_one_database_the_dispatcher_stays_logged_in_when_the_page_moves(
    two_gateways_one_database, unit_id, chromium
):
    """One host, two ports: the browser sends A's session cookie to B (cookies ignore
    ports), and B finds the session in the database they share."""
    a, b = two_gateways_one_database
    add_dispatcher_and_unit(a, unit_id)

    mark_an_incident_then_kill(chromium, a, b)
    the_map_is_back_as_it_was(chromium, a, b)
    expect(chromium.locator("#login")).to_be_hidden()
