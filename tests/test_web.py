"""The dispatcher's map, end to end in a real headless Chromium (Debian's, driven by
Playwright) against a real gateway process, a real broker and virtual units running the
firmware in MicroPython. Tiles point at a closed local port: the map must work without
its base map, and say so."""

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import log_in, wait_until
from placed import place
from playwright.sync_api import expect, sync_playwright

from provisioning.processes import free_port
from simulators.gateway_process import GatewayProcess

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "rahasia-112"
INCIDENT = (-2.2050, 113.9200)
# A second status scheme the gateway loads (--status-schemes), for a search and rescue
# team: its key 4 is not the default's "on scene".
SAR_SCHEME = [
    dict(zip(("key", "code", "label_id", "label_en", "availability"), row, strict=True))
    for row in (
        (1, "available_base", "Siaga di markas", "At base", "available"),
        (4, "searching", "Pencarian", "Searching", "busy"),
        (5, "request_talk", "Minta bicara", "Request to talk", "unchanged"),
        (6, "out_of_service", "Tidak siaga", "Out of service", "out_of_service"),
        (0, "emergency", "Darurat", "Emergency", "emergency"),
    )
]


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


@pytest.fixture
def gateway(broker, tmp_path):
    """The gateway with its tile source on a port where nothing listens, and a second
    status scheme, "sar"."""
    tiles = f"http://127.0.0.1:{free_port()}/{{z}}/{{x}}/{{y}}.png"
    schemes = tmp_path / "schemes"
    schemes.mkdir()
    (schemes / "sar.json").write_text(json.dumps(SAR_SCHEME))
    extra = ["--tiles-url", tiles, "--status-schemes", str(schemes)]
    gw = GatewayProcess(tmp_path / "gateway", broker.port, extra=extra)
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture
def open_map(browser, gateway):
    """open_map(role) -> a page logged in as a new user of that role, units drawn."""
    contexts = []

    def open_(role, name=None, **context):
        name = name or role
        status, body = gateway.request(
            "POST", "/api/v1/users", {"name": name, "role": role, "password": PASSWORD}
        )
        assert status == 201, body
        ctx = browser.new_context(**{"viewport": {"width": 1920, "height": 1080}, **context})
        contexts.append(ctx)
        page = ctx.new_page()
        log_in(page, gateway.url, name, PASSWORD)
        return page

    yield open_
    for ctx in contexts:
        ctx.close()


def ready(gateway, vunits, unit_id, kind="ambulance", key=2):
    gateway.register(unit_id, kind=kind)
    unit = vunits(unit_id)
    wait_until(lambda: gateway.unit(unit_id)["position"], what=f"{unit_id}'s first position")
    if key is not None:
        unit.press(key)
        wait_until(lambda: gateway.unit(unit_id)["status"], what=f"{unit_id}'s press")
    return unit


def marker(page, unit_id):
    return page.locator(f'.unit-marker[data-unit="{unit_id}"]')


def row(page, unit_id):
    return page.locator(f'#units tbody tr[data-unit="{unit_id}"]')


def test_every_unit_on_the_map_and_a_press_changes_marker_and_list(gateway, vunits, open_map, unit_id):
    a, b = unit_id + "a", unit_id + "b"
    unit_a = ready(gateway, vunits, a, key=None)
    ready(gateway, vunits, b, kind="fire_truck")
    page = open_map("viewer")

    expect(page.locator(".unit-marker")).to_have_count(2)
    expect(page.locator("#units tbody tr")).to_have_count(2)
    expect(marker(page, a)).to_have_attribute("data-availability", "out_of_service")
    expect(marker(page, a).locator(".callsign")).to_have_text(a.upper())
    expect(marker(page, b)).to_have_attribute("data-availability", "available")
    expect(page.locator("#tiles-down")).to_be_visible()  # no base map, and it says so
    expect(page.locator(".leaflet-control-scale")).to_be_visible()
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "ok")

    unit_a.press(3)  # en route: busy
    expect(marker(page, a)).to_have_attribute("data-availability", "busy", timeout=5000)
    expect(row(page, a)).to_have_attribute("data-availability", "busy", timeout=5000)
    expect(row(page, a).locator(".availability")).to_contain_text("Sibuk")
    assert page.evaluate("window.__siaga.markersDrawnAt") > 0

    page.select_option("#f-kind", "fire_truck")  # the filter hides a's row and marker
    expect(page.locator(".unit-marker")).to_have_count(1)
    expect(row(page, a)).to_be_hidden()
    page.select_option("#f-kind", "")

    callsigns = page.locator("#units tbody tr td.callsign")
    expect(callsigns.first).to_contain_text(a.upper())  # by callsign
    page.select_option("#sort", "availability")  # available before busy
    expect(callsigns.first).to_contain_text(b.upper())

    row(page, b).click()  # the detail: status, history, track
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#d-facts")).to_contain_text("2 Siaga di pos")
    expect(page.locator("#d-history li")).to_have_count(1)
    expect(page.locator("#d-device")).to_be_empty()  # a viewer sees no device health
    expect(page.locator("path.track")).to_have_count(1)  # the last hour's track

    unit_a.power_off()  # ignition off: the unit says goodbye
    expect(marker(page, a)).to_have_attribute("data-availability", "offline", timeout=10000)
    expect(marker(page, a)).to_have_class(re.compile(r"\bstale\b"))  # greyed and dashed
    expect(row(page, a)).to_have_class(re.compile(r"\bstale\b"))
    expect(marker(page, b)).to_have_class(re.compile(r"\bselected\b"))


def test_an_emergency_raises_the_banner_until_acknowledged(gateway, vunits, open_map, unit_id):
    unit = ready(gateway, vunits, unit_id)
    page = open_map("dispatcher", "rina")
    watcher = open_map("supervisor", "sari")
    expect(page.locator("#emergencies .emergency")).to_have_count(0)

    unit.press(0, long_press=True)
    for p in (page, watcher):
        banner = p.locator(f'#emergencies .emergency[data-unit="{unit_id}"]')
        expect(banner).to_be_visible(timeout=10000)
        expect(banner).to_contain_text(unit_id.upper())
        expect(banner).to_contain_text("WIB")
        assert p.evaluate("window.__siaga.beeping")
    expect(marker(page, unit_id)).to_have_attribute("data-availability", "emergency")

    page.click(f'#emergencies [data-ack="{unit_id}"]')
    for p in (page, watcher):  # one dispatcher acknowledges for all
        expect(p.locator("#emergencies .emergency")).to_have_count(0)
        wait_until(lambda p=p: not p.evaluate("window.__siaga.beeping"), what="the alarm to stop")
    u = gateway.unit(unit_id)
    assert u["availability"] == "emergency" and u["emergency"]["acknowledged_by"] == "rina"
    expect(marker(watcher, unit_id)).to_have_attribute("data-availability", "emergency")

    row(watcher, unit_id).click()  # a supervisor sees the device's health
    expect(watcher.locator("#d-facts")).to_contain_text("rina")
    expect(watcher.locator("#d-device")).to_contain_text("virtual/1")


def test_assign_reaches_the_unit_and_shows_the_crews_acknowledgement(gateway, vunits, open_map, unit_id):
    unit = ready(gateway, vunits, unit_id)
    page = open_map("dispatcher")
    page.fill("#inc-lat", str(INCIDENT[0]))
    page.fill("#inc-lon", str(INCIDENT[1]))
    page.select_option("#inc-kind", "medical")
    page.click("#incident-form button[type=submit]")
    near = page.locator(f'#nearest li[data-unit="{unit_id}"]')
    expect(near).to_contain_text(" m")  # its distance
    page.click(f'#nearest [data-assign="{unit_id}"]')

    state = page.locator("#assign-state")
    expect(state).to_have_attribute("data-state", "assigned")
    expect(marker(page, unit_id)).to_have_attribute("data-availability", "assigned")
    wait_until(lambda: any("assigned: incident" in line for line in unit.lines), what="the unit's downlink")

    unit.press(3)  # the crew acknowledges: en route
    expect(state).to_have_attribute("data-state", "acknowledged", timeout=10000)
    expect(marker(page, unit_id)).to_have_attribute("data-availability", "busy")


def test_a_viewer_cannot_assign(gateway, vunits, open_map, unit_id):
    ready(gateway, vunits, unit_id)
    page = open_map("viewer")
    page.fill("#inc-lat", str(INCIDENT[0]))
    page.fill("#inc-lon", str(INCIDENT[1]))
    page.select_option("#inc-kind", "medical")
    page.click("#incident-form button[type=submit]")
    expect(page.locator(f'#nearest li[data-unit="{unit_id}"]')).to_be_visible()
    expect(page.locator("#nearest [data-assign]")).to_have_count(0)  # no button
    row(page, unit_id).click()
    expect(page.locator("#d-actions button")).to_have_count(0)

    csrf = page.request.get(gateway.url + "/api/v1/me").json()["csrf"]  # and the API refuses
    reply = page.request.post(
        gateway.url + f"/api/v1/units/{unit_id}/assign",
        data={"lat": INCIDENT[0], "lon": INCIDENT[1], "kind": "medical"},
        headers={"X-CSRF-Token": csrf},
    )
    assert reply.status == 403 and reply.json()["error"]["code"] == "forbidden"
    assert gateway.unit(unit_id)["assignment"] is None


def test_the_language_switch_times_in_wib_and_the_shortcuts(gateway, vunits, open_map, unit_id):
    ready(gateway, vunits, unit_id)
    page = open_map("viewer", timezone_id="America/New_York")  # a browser far from Kalimantan
    expect(page.locator("#dispatch h2")).to_have_text("Kejadian")  # Bahasa Indonesia by default
    expect(row(page, unit_id).locator(".availability")).to_contain_text("Siaga")
    since = gateway.unit(unit_id)["status"]["since"]
    row(page, unit_id).click()
    wib = time.strftime("%H:%M:%S", time.gmtime(since + 7 * 3600))
    expect(page.locator("#d-facts")).to_contain_text(f"{wib} WIB")
    expect(page.locator("#clock")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d WIB$"))

    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    expect(page.locator("#shortcut-list")).to_contain_text("kejadian baru")
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    page.keyboard.press("/")
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.press("Escape")

    page.click("#lang")
    expect(page.locator("#dispatch h2")).to_have_text("Incident")
    expect(row(page, unit_id).locator(".availability")).to_contain_text("Available")
    expect(page.locator("#tiles-down")).to_contain_text("Base map unavailable")

    page.reload()  # remembered
    page.wait_for_function("window.__siaga.ready")
    expect(page.locator("#dispatch h2")).to_have_text("Incident")
    page.keyboard.press("l")  # and back by its shortcut
    expect(page.locator("#dispatch h2")).to_have_text("Kejadian")


def test_a_laptop_screen_shows_map_list_and_panel(gateway, vunits, open_map, unit_id):
    ready(gateway, vunits, unit_id)
    page = open_map("dispatcher", viewport={"width": 1366, "height": 768})
    expect(marker(page, unit_id)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366  # nothing off screen
    for part in ("#side", "#map", "#panel"):
        box = page.locator(part).bounding_box()
        assert box["width"] > 250 and box["x"] + box["width"] <= 1366, (part, box)

    row(page, unit_id).click()  # a dispatcher sets a status, with a reason; locks are a supervisor's
    expect(page.locator('#d-actions [data-action="lock"]')).to_have_count(0)
    page.select_option("#d-actions select[name=key]", "6")
    page.fill("#d-actions input[name=reason]", "oksigen habis")
    page.click("#d-actions .status-form button")
    expect(marker(page, unit_id)).to_have_attribute("data-availability", "out_of_service")
    expect(page.locator("#d-facts")).to_contain_text("oksigen habis")
    status = gateway.unit(unit_id)["status"]
    assert status["key"] == 6 and status["source"] == "dispatcher" and status["reason"] == "oksigen habis"


def test_without_leaflet_the_page_says_what_to_run(tmp_path, monkeypatch):
    from gateway import config
    from gateway.api import page
    from gateway.service import Gateway

    monkeypatch.setattr(page, "LEAFLET", tmp_path / "node_modules" / "leaflet" / "dist")
    gw = Gateway(config.resolve(None, environ={"SIAGA_DATA_DIR": str(tmp_path)}))
    try:
        transport = httpx.ASGITransport(app=gw.app)

        async def get():
            async with httpx.AsyncClient(transport=transport, base_url="http://map") as client:
                return await client.get("/")

        with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
            reply = pool.submit(asyncio.run, get()).result()
        assert reply.status_code == 503 and "make venv" in reply.text
    finally:
        gw.store.db.conn.close()


def test_a_lost_stream_is_shown_and_recovers(gateway, vunits, open_map, unit_id):
    unit = ready(gateway, vunits, unit_id)
    page = open_map("viewer")
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "ok")

    gateway.stop()
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "lost", timeout=10000)
    expect(page.locator("#stream-state")).to_contain_text("terputus")
    unit.press(3)  # while the page is blind

    gateway.start()
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "ok", timeout=20000)
    expect(marker(page, unit_id)).to_have_attribute("data-availability", "busy", timeout=20000)


def test_the_page_asks_for_a_login_and_tells_a_wrong_password(browser, gateway):
    gateway.request("POST", "/api/v1/users", {"name": "rina", "role": "dispatcher", "password": PASSWORD})
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.goto(gateway.url + "/")
        expect(page.locator("#login")).to_be_visible()
        page.fill("#login-user", "rina")
        page.fill("#login-pass", "not-the-password")
        page.click("#login-form button[type=submit]")
        expect(page.locator("#login-error")).not_to_be_empty()  # the gateway's message
        expect(page.locator("#login")).to_be_visible()
        page.fill("#login-pass", PASSWORD)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#login")).to_be_hidden()
        expect(page.locator("#who")).to_have_text("rina (dispatcher)")
    finally:
        ctx.close()


def test_a_decommissioned_unit_is_hidden_until_asked_for_then_shown(gateway, vunits, open_map, unit_id):
    a, b = unit_id + "a", unit_id + "b"
    ready(gateway, vunits, a)
    ready(gateway, vunits, b, key=None)
    page = open_map("supervisor")  # may dispatch and lock
    expect(marker(page, a)).to_have_attribute("data-availability", "available")

    assert (
        gateway.request("POST", f"/api/v1/units/{a}/decommission", {})[0] == 200
    )  # `siaga unit decommission`
    expect(marker(page, a)).to_have_count(0, timeout=10000)  # live: the unit sent nothing new
    expect(row(page, a)).to_be_hidden()
    expect(marker(page, b)).to_be_visible()
    expect(page.locator("#decommissioned-count")).to_have_text("(1)")

    page.check("#f-decommissioned")  # the dispatcher asks for it: its own look and label
    m = marker(page, a)
    expect(m).to_have_attribute("data-look", "decommissioned")
    expect(m).to_have_attribute("data-availability", "out_of_service")  # never available, never offline
    expect(m).to_have_attribute("title", "Dinonaktifkan")
    expect(m.locator(".badge")).to_have_text("⊘")  # a glyph, not colour alone
    expect(row(page, a).locator(".availability")).to_contain_text("Dinonaktifkan")
    expect(page.locator("#legend")).to_contain_text("Dinonaktifkan")
    row(page, a).click()
    expect(page.locator("#d-facts")).to_contain_text("Dinonaktifkan")
    expect(page.locator("#d-actions .status-form")).to_have_count(0)
    expect(page.locator('#d-actions [data-action="lock"]')).to_have_count(0)  # refused (409)

    page.fill("#inc-lat", str(INCIDENT[0]))  # never offered for an incident
    page.fill("#inc-lon", str(INCIDENT[1]))
    page.select_option("#inc-kind", "medical")
    page.click("#incident-form button[type=submit]")
    expect(page.locator("#nearest li.empty")).to_be_visible()
    expect(page.locator(f'#nearest li[data-unit="{a}"]')).to_have_count(0)

    assert gateway.request("POST", f"/api/v1/units/{a}/enable", {})[0] == 200  # `siaga unit enable`
    expect(marker(page, a)).to_have_attribute("data-look", "available", timeout=10000)
    expect(page.locator("#decommissioned-count")).to_have_text("")
    page.click("#incident-form button[type=submit]")
    expect(page.locator(f'#nearest li[data-unit="{a}"]')).to_be_visible()


def test_the_status_change_offers_the_units_own_scheme(gateway, open_map, unit_id, mqtt_client):
    sar, amb = unit_id + "s", unit_id + "d"
    gateway.register(sar, kind="rescue", status_scheme="sar")
    gateway.register(amb)
    now = int(time.time())  # sar is online (an offline unit shows offline, whatever its status)
    birth = {"_type": "birth", "boot": 1, "seq": 0, "t": now, "sent": now}
    mqtt_client.publish(f"siaga/{sar}/conn", json.dumps(birth), qos=1).wait_for_publish(5)
    wait_until(lambda: gateway.unit(sar)["link"] == "online", what="sar online")
    page = open_map("dispatcher")
    keys = page.locator("#d-actions select[name=key] option")

    row(page, sar).click()
    expect(keys).to_have_count(3)  # 1, 4, 6: not 5 (a flag) nor 0 (the crew's emergency)
    assert [o.get_attribute("value") for o in keys.all()] == ["1", "4", "6"]
    expect(keys.nth(1)).to_have_text("4 Pencarian")
    row(page, amb).click()  # the default scheme for a unit that names none
    expect(keys).to_have_count(8)
    expect(keys.nth(3)).to_have_text("4 Tiba di lokasi")

    row(page, sar).click()
    page.select_option("#d-actions select[name=key]", "4")
    page.fill("#d-actions input[name=reason]", "pencarian korban hanyut")
    page.click("#d-actions .status-form button")
    expect(marker(page, sar)).to_have_count(0)  # no position yet: in the list only
    expect(row(page, sar)).to_have_attribute("data-availability", "busy")
    expect(page.locator("#d-facts")).to_contain_text("4 Pencarian")
    status = gateway.unit(sar)["status"]
    assert status["key"] == 4 and status["label"] == "Pencarian" and status["source"] == "dispatcher"


def publish_health(mqtt_client, gateway, unit_id, supply_v):
    """A unit's birth and a telemetry message, with `supply_v` unless it is None (a board
    that cannot measure it leaves it out, docs/protocol.md), over the broker into the
    gateway's pipeline."""
    now = int(time.time())
    ids = {"boot": 1, "t": now, "sent": now}
    birth = {"_type": "birth", "seq": 0, **ids, "fw": "0.1.0", "board": "virtual/1"}
    tele = {"_type": "tele", "seq": 1, **ids, "up": 60}
    if supply_v is not None:
        tele["supply_v"] = supply_v
    mqtt_client.publish(f"siaga/{unit_id}/conn", json.dumps(birth), qos=1).wait_for_publish(5)
    mqtt_client.publish(f"siaga/{unit_id}/tele", json.dumps(tele), qos=1).wait_for_publish(5)
    wait_until(
        lambda: "up" in ((gateway.unit(unit_id).get("device") or {}).get("telemetry") or {}),
        what=f"{unit_id}'s telemetry",
    )


def test_the_technician_sees_the_supply_voltage_and_a_low_one_marked(
    gateway, vunits, mqtt_client, open_map, unit_id
):
    # b's firmware measures and sends it (the virtual board's ADC); the others' messages
    # are published as their firmware would send them
    gateway.register(unit_id + "b")
    vunits(unit_id + "b", config={"telemetry_s": 2}, supply_v=11.2)
    readings = {"a": 12.6, "c": 27.6, "d": 22.4, "e": None}  # c, d: 24 V trucks; e cannot measure
    for suffix, volts in readings.items():
        gateway.register(unit_id + suffix)
        publish_health(mqtt_client, gateway, unit_id + suffix, volts)
    wait_until(
        lambda: ((gateway.unit(unit_id + "b").get("device") or {}).get("telemetry") or {}).get("supply_v"),
        30,
        0.5,
        "the virtual unit's supply voltage",
    )
    page = open_map("technician")
    device = page.locator("#d-device")
    low = device.locator(".supply.low")

    for suffix, shown, is_low in (
        ("a", "12.6 V", False),
        ("b", "11.2 V", True),
        ("c", "27.6 V", False),
        ("d", "22.4 V", True),
    ):
        row(page, unit_id + suffix).click()
        expect(device).to_contain_text(f"Tegangan aki{'⚠ ' if is_low else ''}{shown}")
        if is_low:
            expect(low).to_have_text(f"⚠ {shown} · tegangan rendah")
        else:
            expect(low).to_have_count(0)
    row(page, unit_id + "e").click()
    expect(device).to_contain_text("Tegangan aki—")

    page.click("#lang")
    row(page, unit_id + "b").click()
    expect(low).to_have_text("⚠ 11.2 V · low voltage")
    expect(device).to_contain_text("Supply voltage")


def test_the_map_says_when_the_gateway_is_degraded(browser, tmp_path):
    from provisioning.mosquitto import Mosquitto

    own = Mosquitto(tmp_path / "broker").start()
    gw = GatewayProcess(tmp_path / "gw", own.port, extra=["--ingest-stall-after", "2"]).start()
    try:
        assert (
            gw.request("POST", "/api/v1/users", {"name": "vera", "role": "viewer", "password": PASSWORD})[0]
            == 201
        )
        page = browser.new_page()
        log_in(page, gw.url, "vera", PASSWORD)
        expect(page.locator("#degraded")).to_be_hidden()
        own.stop()  # the broker is gone: nothing from any unit can arrive
        expect(page.locator("#degraded")).to_be_visible(timeout=20_000)
        expect(page.locator("#degraded")).to_contain_text("broker unreachable")
        own.start()
        expect(page.locator("#degraded")).to_be_hidden(timeout=20_000)
        page.close()
    finally:
        gw.stop()
        own.stop()


# ---- issue 14: the dispatcher's map as a dispatcher tries it ------------------------------


def mark_incident(page, latlon, kind="medical"):
    page.fill("#inc-lat", str(latlon[0]))
    page.fill("#inc-lon", str(latlon[1]))
    page.select_option("#inc-kind", kind)
    page.click("#incident-form button[type=submit]")


def test_the_nearest_list_gives_eta_and_route_and_never_offers_the_unit_just_assigned(
    gateway, mqtt_client, open_map, unit_id, tmp_path
):
    from provisioning.mapimport import import_map
    from simulators.geo import to_latlon
    from simulators.town import write_town

    incident = to_latlon(0, -40)  # the demo town (tests/test_roads.py): the north bank
    across, same = unit_id + "x", unit_id + "s"
    place(gateway, mqtt_client, across, to_latlon(0, -240))  # across the river
    place(gateway, mqtt_client, same, to_latlon(-960, 480))  # far, but on the same bank
    page = open_map("dispatcher")

    mark_incident(page, incident)  # no road map yet: straight lines, and the page says so
    near = page.locator("#nearest li[data-unit]")
    expect(near.first).to_have_attribute("data-unit", across)
    expect(near.first).to_have_attribute("data-method", "straight")
    expect(near.first.locator(".straight")).to_have_text("garis lurus")
    near.first.click()
    expect(page.locator("path.route-straight")).to_have_count(1)

    import_map(write_town(tmp_path / "town.osm.pbf"), gateway.data_dir, progress=False, basemap=False)
    wait_until(
        lambda: gateway.get(f"/api/v1/nearest?lat={incident[0]}&lon={incident[1]}")[1][0]["method"] == "road",
        what="the gateway reading the map",
    )
    page.click("#incident-form button[type=submit]")
    expect(near.first).to_have_attribute("data-unit", same)  # by road: the same bank first
    expect(near.first).to_have_attribute("data-method", "road")
    expect(near.first.locator(".eta")).to_have_text(re.compile(r"^\d+ mnt$"))
    expect(near.first.locator(".road-km")).to_have_text(re.compile(r"^\d+\.\d km jalan$"))
    expect(page.locator("#nearest .straight")).to_have_count(0)
    near.nth(1).click()  # the unit across the river: its route crosses a bridge
    expect(page.locator("path.route-road")).to_have_count(1)
    assert len(page.locator("path.route-road").get_attribute("d").split("L")) > 2  # not a straight line
    expect(near.nth(1)).to_have_class(re.compile(r"\bselected\b"))

    before = page.locator(f'#nearest .near-age[data-unit="{across}"]').text_content()
    expect(page.locator(f'#nearest .near-age[data-unit="{across}"]')).not_to_have_text(before)  # it ticks

    page.click(f'#nearest [data-assign="{same}"]')
    expect(page.locator(f'#nearest li[data-unit="{same}"]')).to_have_count(0)  # never offered again
    expect(near.first).to_have_attribute("data-unit", across)
    expect(page.locator("#assign-state")).to_have_attribute("data-state", "assigned")

    # the unit is assigned: the API refuses it again unless the dispatcher confirms why
    row(page, same).click()
    page.keyboard.press("a")
    expect(page.locator("#override")).to_be_visible()
    expect(page.locator("#override-ask")).to_contain_text("Ditugaskan")
    page.fill("#override-reason", "unit lain terhalang banjir")
    page.click("#override button[type=submit]")
    expect(page.locator("#override")).to_be_hidden()
    rows = gateway.get(f"/api/v1/assignments?unit_id={same}")[1]
    assert [r["override_reason"] for r in rows] == [None, "unit lain terhalang banjir"]
    assert rows[1]["assigned_by"] == "dispatcher"

    page.reload()  # the incident, its list and the wait for the crew survive a reload
    page.wait_for_function("window.__siaga.ready")
    expect(page.locator(".incident")).to_have_count(1)
    expect(page.locator("#inc-lat")).to_have_value(f"{incident[0]:.5f}")
    expect(page.locator(f'#nearest li[data-unit="{across}"]')).to_be_visible()
    expect(page.locator("#assign-state")).to_have_attribute("data-state", "assigned")
    expect(page.locator("#assign-state")).to_have_attribute("data-unit", same)

    other = page.context.browser.new_context(viewport={"width": 1920, "height": 1080})
    try:  # another browser of the same dispatcher: the gateway knows the assignment
        again = other.new_page()
        log_in(again, gateway.url, "dispatcher", PASSWORD)
        expect(again.locator("#assign-state")).to_have_attribute("data-unit", same)
        expect(again.locator(".incident")).to_have_count(1)
        expect(again.locator(f'#nearest li[data-unit="{across}"]')).to_be_visible()
    finally:
        other.close()


def test_the_list_fits_a_laptop_and_a_wall_screen(gateway, mqtt_client, open_map, unit_id):
    agency = "BPBD Kota Palangka Raya"
    for i, callsign in enumerate(("AMBULANS PKR-01", "DAMKAR KAHAYAN-12")):
        place(
            gateway, mqtt_client, f"{unit_id}{i}", (-2.21, 113.91 + i / 100), callsign=callsign, agency=agency
        )
    fits = """el => {
        const side = document.querySelector('#side').getBoundingClientRect();
        const box = el.getBoundingClientRect();
        return el.scrollWidth <= el.clientWidth && box.right <= side.right && box.left >= side.left;
    }"""
    one_line = """el => {
        const r = document.createRange();
        r.selectNodeContents(el);
        return r.getClientRects().length === 1;
    }"""
    for size in ({"width": 1366, "height": 768}, {"width": 1920, "height": 1080}):
        page = open_map("viewer", f"viewer{size['width']}", viewport=size)
        header = page.locator("#units th", has_text="Umur posisi")
        expect(header).to_have_count(1)
        assert header.evaluate(fits), size  # not cut off
        for cell in page.locator("#units td.callsign .cs").all():
            assert cell.evaluate(one_line), (size, cell.text_content())  # callsigns do not wrap
        expect(page.locator("#units tbody")).not_to_contain_text(agency)  # not repeated on every row
        assert page.locator("#f-agency option", has_text=agency).count() == 1  # the filter has it


def test_a_lost_stream_greys_the_list_and_markers_and_says_since_when(
    gateway, mqtt_client, open_map, unit_id
):
    place(gateway, mqtt_client, unit_id, (-2.21, 113.91))
    page = open_map("viewer")
    expect(page.locator("#data-old")).to_be_hidden()
    gateway.stop()
    expect(page.locator("#data-old")).to_be_visible(timeout=10000)
    expect(page.locator("#data-old")).to_have_text(re.compile(r"Data lama sejak \d\d:\d\d:\d\d WIB"))
    grey = "el => getComputedStyle(el).filter"
    assert "grayscale" in page.locator("#units tbody").evaluate(grey)
    assert "grayscale" in page.locator(".leaflet-marker-pane").evaluate(grey)
    page.click("#lang")
    expect(page.locator("#data-old")).to_contain_text("Data old since")
    gateway.start()
    expect(page.locator("#data-old")).to_be_hidden(timeout=20000)
    assert page.locator("#units tbody").evaluate(grey) == "none"


def test_the_emergency_banner_selects_and_centres_the_unit(gateway, mqtt_client, open_map, unit_id):
    far = place(gateway, mqtt_client, unit_id + "a", (-2.16, 113.86))
    place(gateway, mqtt_client, unit_id + "b", (-2.26, 113.96))
    page = open_map("dispatcher")
    far.press(0)  # the crew's emergency
    banner = page.locator(f'#emergencies .emergency[data-unit="{unit_id}a"]')
    expect(banner).to_be_visible(timeout=10000)
    banner.locator(".siren").click()
    expect(row(page, unit_id + "a")).to_have_class(re.compile(r"\bselected\b"))
    expect(page.locator("#detail")).to_be_visible()
    centre = page.evaluate("window.__siaga.view().centre")
    assert abs(centre["lat"] + 2.16) < 1e-4 and abs(centre["lng"] - 113.86) < 1e-4, centre
    expect(banner).to_be_visible()  # still unacknowledged: selecting is not acknowledging


def test_the_map_fits_the_units_again_when_the_window_is_resized(gateway, mqtt_client, open_map, unit_id):
    west, east = (
        (-2.21, 113.76),
        (-2.21, 114.06),
    )  # 0.3° apart: at the wall screen's zoom, wider than a laptop's map
    place(gateway, mqtt_client, unit_id + "w", west)
    place(gateway, mqtt_client, unit_id + "e", east)
    page = open_map("viewer")

    def shows_both():
        v = page.evaluate("window.__siaga.view()")
        box = page.locator("#map").bounding_box()
        inside = all(
            v["west"] < lon < v["east"] and v["south"] < lat < v["north"] for lat, lon in (west, east)
        )
        return inside and v["width"] == round(box["width"]) and v["height"] == round(box["height"])

    assert shows_both()
    page.set_viewport_size({"width": 1366, "height": 768})
    wait_until(shows_both, 10, what="the map fitted to the smaller window")
    page.set_viewport_size({"width": 1920, "height": 1080})
    wait_until(shows_both, 10, what="the map fitted to the larger window")


def test_done_follows_a_language_switch_at_once(gateway, mqtt_client, open_map, unit_id):
    place(gateway, mqtt_client, unit_id, (-2.21, 113.91))
    page = open_map("dispatcher")
    row(page, unit_id).click()
    page.select_option("#d-actions select[name=key]", "6")
    page.fill("#d-actions input[name=reason]", "ban bocor")
    page.click("#d-actions .status-form button")
    expect(page.locator("#toast")).to_have_text("Selesai.")
    page.locator("#lang").click()
    expect(page.locator("#toast")).to_be_visible()
    expect(page.locator("#toast")).to_have_text("Done.")


def test_the_nearest_list_follows_the_crews_presses(gateway, mqtt_client, open_map, unit_id):
    a = place(gateway, mqtt_client, unit_id + "a", (-2.2060, 113.9200))
    place(gateway, mqtt_client, unit_id + "b", (-2.2100, 113.9200))
    page = open_map("viewer")
    mark_incident(page, INCIDENT)
    listed = page.locator("#nearest li[data-unit]")
    expect(listed).to_have_count(2)
    a.press(3)  # en route elsewhere: busy, no longer offered
    expect(page.locator(f'#nearest li[data-unit="{unit_id}a"]')).to_have_count(0)
    expect(listed).to_have_count(1)
    a.press(2)  # back at the station: offered again, nearest first
    expect(listed).to_have_count(2)
    expect(listed.first).to_have_attribute("data-unit", unit_id + "a")
