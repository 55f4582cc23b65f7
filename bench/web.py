"""The dispatcher's map in a real headless Chromium against a real gateway and broker,
with 200 simulated units whose messages the firmware's own wire encoder makes:

- web.first_paint_ms_200_units: page load (navigation start) to all 200 markers drawn,
  measured in the page with performance.now(); the median of 5 loads, each in a fresh
  browser context (nothing cached);
- web.update_latency_p99_ms: a unit's change leaving the gateway's stream hub (the
  `emitted` time the hub stamps on each event) to its marker updated and drawn (the
  next animation frame), measured in the page; p99 of 600 position reports at 20 a
  second. One machine, one clock.

`python -m bench.web screenshot` saves docs/map.png: the demo fleet at 1920x1080.
"""

import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from playwright.sync_api import sync_playwright

from provisioning.mosquitto import Mosquitto
from provisioning.processes import free_port
from simulators.gateway_process import REPO, GatewayProcess, wait_until

CHROMIUM = "/usr/bin/chromium"
UNITS = 200
LOADS = 5
UPDATES, RATE = 600, 20.0
USER, PASSWORD = "bench", "bench-password-112"
CENTRE = (-2.2096, 113.9136)


def _wire():
    spec = importlib.util.spec_from_file_location("wire", REPO / "firmware" / "lib" / "wire.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wire = _wire()


class SimulatedFleet:
    """200 units on the wire: a birth, a press of "available at station", positions."""

    def __init__(self, port, count):
        self.ids = [f"web-{i:03d}" for i in range(count)]
        self.seq = dict.fromkeys(self.ids, 0)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-web-{time.monotonic_ns()}"
        )
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _send(self, unit, kind, payload):
        self.seq[unit] += 1
        return self.client.publish(wire.topic(unit, kind), payload, qos=1)

    def _json(self, unit, topic_kind, payload_type, **fields):
        now = int(time.time())
        payload = wire.encode_json(payload_type, 1, self.seq[unit] + 1, t=now, sent=now, **fields)
        return self._send(unit, topic_kind, payload)

    def position(self, i, step=0):
        unit, now = self.ids[i], int(time.time())
        lat = CENTRE[0] + ((i % 20) - 10) * 0.004 + step * 0.0002
        lon = CENTRE[1] + ((i // 20) - 5) * 0.005
        record = wire.encode_pos(1, self.seq[unit] + 1, now, lat, lon, 8.0, (step * 15) % 360, 9, 0.9, now)
        return self._send(unit, "pos", record)

    def start(self):
        infos = []
        for i, unit in enumerate(self.ids):
            infos.append(self._json(unit, "conn", "birth", fw="0.1.0", board="bench/1", reset="power_on"))
            infos.append(self.position(i))
            infos.append(self._json(unit, "status", "status", key=2))
        for info in infos:
            info.wait_for_publish(30)

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def _setup(tmp, town=False):
    """A broker and a gateway; `town`: with the demo town's map imported (streets, the
    river, its bridges: simulators/town.py), else with no base map (a closed port)."""
    broker = Mosquitto(Path(tmp) / "broker").start()
    data = Path(tmp) / "gateway"
    if town:
        from provisioning.mapimport import import_map
        from simulators.town import write_town

        import_map(write_town(Path(tmp) / "town.osm.pbf"), data, progress=False)
        extra = []
    else:
        extra = ["--tiles-url", f"http://127.0.0.1:{free_port()}/{{z}}/{{x}}/{{y}}.png"]
    gw = GatewayProcess(data, broker.port, extra=extra).start()
    status, body = gw.request("POST", "/api/v1/users", {"name": USER, "role": "viewer", "password": PASSWORD})
    if status != 201:
        raise RuntimeError(f"creating the bench's login: {status} {body}")
    return broker, gw


def _login(browser, gw):
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    reply = ctx.request.post(gw.url + "/api/v1/login", data={"username": USER, "password": PASSWORD})
    if not reply.ok:
        raise RuntimeError(f"login: {reply.status} {reply.text()}")
    return ctx


def first_paint(browser, gw):
    ctx = _login(browser, gw)
    page = ctx.new_page()
    page.goto(gw.url + "/")
    page.wait_for_function("window.__siaga.markersDrawnAt !== null", timeout=30000)
    drawn = page.evaluate("document.querySelectorAll('.unit-marker').length")
    if drawn != UNITS:
        raise RuntimeError(f"{drawn} markers drawn, {UNITS} expected")
    ms = page.evaluate("window.__siaga.markersDrawnAt")
    return ctx, page, ms


def update_latencies(page, fleet):
    page.evaluate("window.__siaga.updates.length = 0")
    start = time.time()
    infos = []
    for n in range(UPDATES):
        infos.append(fleet.position(n % UNITS, step=1 + n // UNITS))
        time.sleep(max(0.0, start + (n + 1) / RATE - time.time()))
    for info in infos:
        info.wait_for_publish(30)
    wait_until(
        lambda: page.evaluate("window.__siaga.updates.length") >= UPDATES, 30, 0.2, "every update drawn"
    )
    updates = page.evaluate("window.__siaga.updates")
    return [(u["drawn"] - u["emitted"]) * 1000 for u in updates if u["emitted"]]


def p99(values):
    return statistics.quantiles(values, n=100)[98]


def figures():
    with tempfile.TemporaryDirectory(prefix="siaga-bench-web-") as tmp:
        broker, gw = _setup(tmp)
        fleet = None
        try:
            for unit_id in [f"web-{i:03d}" for i in range(UNITS)]:
                gw.register(
                    unit_id, kind=("ambulance", "fire_truck", "rescue", "police")[int(unit_id[4:]) % 4]
                )
            fleet = SimulatedFleet(broker.port, UNITS)
            fleet.start()
            wait_until(
                lambda: sum(1 for u in gw.get("/api/v1/units")[1] if u["position"]) == UNITS,
                60,
                0.2,
                "200 units with a position",
            )
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM)
                paints = []
                for _ in range(LOADS):
                    ctx, page, ms = first_paint(browser, gw)
                    paints.append(ms)
                    ctx.close()
                ctx, page, _ = first_paint(browser, gw)
                latencies = update_latencies(page, fleet)
                ctx.close()
                browser.close()
        finally:
            if fleet:
                fleet.stop()
            gw.stop()
            broker.stop()
    return [
        ("web.first_paint_ms_200_units", round(statistics.median(paints), 1), "ms"),
        ("web.update_latency_p99_ms", round(p99(latencies), 1), "ms"),
    ]


def _stage(fleet, gw, specs):
    """A scene a dispatcher sees often: units at their stations, one driving to a call,
    one assigned, one out of service, one in an emergency."""
    for unit in fleet.units.values():
        unit.press(2)
    home = {s.unit_id: s.home for s in specs}
    wait_until(lambda: all(u["status"] for u in gw.get("/api/v1/units")[1]), 30, what="every unit's status")
    driving = fleet.units["dmk-01"]
    driving.press(3)
    driving.mover.drive_to(home["dmk-01"].x + 2500, home["dmk-01"].y + 1500, cruise=15)
    fleet.units["amb-03"].press(6)
    gw.request("POST", "/api/v1/units/amb-02/assign", {"lat": -2.2050, "lon": 113.9200, "kind": "medical"})
    time.sleep(40)  # dmk-01 drives: a track and a heading
    fleet.units["dmk-02"].press(0, long_press=True)
    wait_until(lambda: gw.unit("dmk-02")["availability"] == "emergency", 20, what="the emergency")


def screenshot(out=REPO / "docs" / "map.png"):
    """The demo fleet on the demo town's map at 1920x1080: one unit selected with its
    track, an incident with its nearest units, and an emergency's banner."""
    from simulators.fleet import Fleet, demo_specs
    from simulators.roaddrive import load_graph

    with tempfile.TemporaryDirectory(prefix="siaga-shot-") as tmp:
        broker, gw = _setup(tmp, town=True)
        gw.request("POST", "/api/v1/users", {"name": "rina", "role": "supervisor", "password": PASSWORD})
        specs = demo_specs(6)
        for spec in specs:
            gw.register(**spec.registration())
        roads = load_graph(Path(tmp) / "gateway")  # the units drive on the town's streets
        fleet = Fleet(specs, Path(tmp), ("127.0.0.1", broker.port), crews=False, roads=roads).start()
        try:
            wait_until(lambda: all(u["position"] for u in gw.get("/api/v1/units")[1]), 60, what="positions")
            _stage(fleet, gw, specs)
            with sync_playwright() as p:
                sound = ["--autoplay-policy=no-user-gesture-required"]  # as in a dispatch room
                browser = p.chromium.launch(executable_path=CHROMIUM, args=sound)
                page = browser.new_page(viewport={"width": 1920, "height": 1080})
                page.goto(gw.url + "/")
                page.fill("#login-user", "rina")
                page.fill("#login-pass", PASSWORD)
                page.click("#login-form button[type=submit]")
                page.wait_for_function("window.__siaga.ready")
                page.fill("#inc-lat", "-2.2150")
                page.fill("#inc-lon", "113.9050")
                page.select_option("#inc-kind", "traffic_accident")
                page.click("#incident-form button[type=submit]")
                page.click('#units tbody tr[data-unit="dmk-01"]')
                page.wait_for_timeout(1500)
                page.screenshot(path=str(out))
                browser.close()
        finally:
            fleet.stop()
            gw.stop()
            broker.stop()
    print(f"wrote {out}")


if __name__ == "__main__":
    if sys.argv[1:] == ["screenshot"]:
        screenshot()
    else:
        for name, value, unit in figures():
            print(f"{name} {value} {unit}")
