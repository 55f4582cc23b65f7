"""Dispatcher actions through the HTTP API against a running gateway and a virtual unit:
nearest available, assignment to the unit's downlink and the crew's acknowledgement,
response times, overrides and locks, the live stream."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import wait_until
from placed import place

INCIDENT = {"lat": -2.2050, "lon": 113.9200, "kind": "medical", "note": "Jl. Yos Sudarso 12"}


@pytest.fixture
def gateway(gateway_on_each_store):
    """Each test here runs on both stores: SQLite and PostgreSQL."""
    return gateway_on_each_store


def post(gateway, path, body=None):
    return gateway.request("POST", path, body or {})


def ready_unit(gateway, vunits, unit_id, **kw):
    gateway.register(unit_id, **kw)
    unit = vunits(unit_id)
    wait_until(lambda: gateway.unit(unit_id)["position"], what="the unit's first position")
    unit.press(2)
    wait_until(lambda: gateway.unit(unit_id)["availability"] == "available", what="available")
    return unit


def test_nearest_assign_acknowledge_and_response_times(gateway, vunits, unit_id):
    unit = ready_unit(gateway, vunits, unit_id, kind="ambulance")
    status, near = gateway.get(
        f"/api/v1/nearest?lat={INCIDENT['lat']}&lon={INCIDENT['lon']}&incident_kind=medical"
    )
    assert status == 200
    mine = [u for u in near if u["unit_id"] == unit_id]
    assert mine and mine[0]["distance_m"] > 0 and "age" in mine[0]["position"]
    status, near = gateway.get("/api/v1/nearest?lat=-2.2&lon=113.9&incident_kind=fire")
    assert unit_id not in [u["unit_id"] for u in near]  # an ambulance does not fit a fire

    status, body = post(gateway, f"/api/v1/units/{unit_id}/assign", INCIDENT)
    assert status == 200 and body["unit"]["availability"] == "assigned"
    assert body["unit"]["assignment"]["acknowledged"] is False
    wait_until(lambda: any("assigned: incident" in line for line in unit.lines), what="the downlink")
    wait_until(  # the buzzer called the crew (the panel's lines are read by a thread of their own)
        lambda: any(line == "B 1" for _, line in unit.panel_log), what="the buzzer"
    )

    for key in (3, 4, 7, 8):
        time.sleep(1.1)  # presses a second apart, so every interval is measurable
        unit.press(key)
        wait_until(lambda k=key: gateway.unit(unit_id)["status"]["key"] == k, what=f"key {key}")
    u = gateway.unit(unit_id)
    assert u["availability"] == "busy" and u["assignment"]["acknowledged"] is True

    rows = gateway.get(f"/api/v1/assignments?unit_id={unit_id}")[1]
    assert len(rows) == 1
    r = rows[0]
    assert r["incident"]["kind"] == "medical"
    for name in ("turnout", "travel", "on_scene", "transport"):
        assert r[name] is not None and r[name] > 0, (name, r)  # unit clock: whole seconds
    assert (
        r["assigned_at"] < r["en_route_at"] < r["on_scene_at"] < r["transporting_at"] < r["at_destination_at"]
    )
    summary = gateway.get("/api/v1/response-times?group=unit")[1]
    assert [s for s in summary if s["unit"] == unit_id][0]["turnout"]["count"] == 1
    assert gateway.get("/api/v1/response-times?group=day")[1][0]["assignments"] >= 1

    unit.press(9)
    wait_until(lambda: gateway.unit(unit_id)["assignment"] is None, what="the mission's end")
    assert gateway.unit(unit_id)["availability"] == "available"


def test_override_lock_and_emergency(gateway, vunits, unit_id):
    unit = ready_unit(gateway, vunits, unit_id)
    status, body = post(gateway, f"/api/v1/units/{unit_id}/status", {"key": 6, "reason": "oksigen habis"})
    assert status == 200 and body["unit"]["availability"] == "out_of_service"
    assert body["unit"]["status"]["source"] == "dispatcher" and body["unit"]["overridden"]["key"] == 2

    post(gateway, f"/api/v1/units/{unit_id}/lock", {"reason": "menunggu teknisi"})
    unit.press(1)
    wait_until(
        lambda: (gateway.unit(unit_id)["overridden"] or {}).get("key") == 1, what="the crew's press shown"
    )
    u = gateway.unit(unit_id)
    assert u["availability"] == "out_of_service" and "status_locked" in u["flags"]

    post(gateway, f"/api/v1/units/{unit_id}/unlock")
    unit.press(1)
    wait_until(lambda: gateway.unit(unit_id)["availability"] == "available", what="the crew's press counts")

    history = gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]
    sources = [(h["key"], h["source"]) for h in history]
    assert (6, "dispatcher") in sources and sources.count((1, "crew")) == 2
    assert [h for h in history if h["source"] == "dispatcher"][0]["reason"] == "oksigen habis"

    unit.press(0, long_press=True)
    wait_until(lambda: gateway.unit(unit_id)["availability"] == "emergency", what="the emergency")
    unit.press(2)
    time.sleep(1)
    assert gateway.unit(unit_id)["availability"] == "emergency"  # only a dispatcher clears it
    post(gateway, f"/api/v1/units/{unit_id}/clear-emergency", {"reason": "crew safe, by radio"})
    assert gateway.unit(unit_id)["availability"] == "available"


def test_bad_requests_are_clear(gateway, unit_id):
    gateway.register(unit_id)
    cases = [
        ("/api/v1/units/nobody/assign", INCIDENT, 404),
        (f"/api/v1/units/{unit_id}/assign", dict(INCIDENT, kind="alien"), 400),
        (f"/api/v1/units/{unit_id}/assign", dict(INCIDENT, lat=95), 400),
        (f"/api/v1/units/{unit_id}/status", {"key": 5, "reason": "x"}, 400),
        (f"/api/v1/units/{unit_id}/status", {"key": 0, "reason": "x"}, 400),
        (f"/api/v1/units/{unit_id}/status", {"key": 6}, 400),
    ]
    for path, body, want in cases:
        status, err = post(gateway, path, body)
        assert status == want and err["error"]["message"], (path, body, err)
    for path in (
        "/api/v1/nearest?lon=113.9",
        "/api/v1/nearest?lat=1&lon=2&incident_kind=alien",
        f"/api/v1/units/{unit_id}/track?from=yesterday",
        f"/api/v1/units/{unit_id}/track?from=2026-11-28T10:00:00",
        f"/api/v1/units/{unit_id}/track?from=2000&to=1000",
    ):
        status, err = gateway.get(path)
        assert status == 400 and err["error"]["code"] == "bad_request", (path, err)


def test_track_as_geojson(gateway, vunits, unit_id):
    ready_unit(gateway, vunits, unit_id)
    status, fc = gateway.get(f"/api/v1/units/{unit_id}/track")
    assert status == 200 and fc["type"] == "FeatureCollection"
    line = fc["features"][0]
    assert line["geometry"]["type"] == "LineString" and line["properties"]["points"] >= 1
    lon, lat = line["geometry"]["coordinates"][0]
    assert abs(lat + 2.21) < 0.05 and abs(lon - 113.915) < 0.05


def test_the_live_stream_carries_a_press(gateway, vunits, unit_id):
    unit = ready_unit(gateway, vunits, unit_id)
    seen = []
    connected = threading.Event()

    def pressed_4(event):
        return event["status"] and event["status"]["key"] == 4

    t = threading.Thread(target=listen_for, args=(gateway, unit_id, pressed_4, seen, connected), daemon=True)
    t.start()
    connected.wait(10)
    time.sleep(0.3)
    unit.press(4)
    t.join(20)
    assert seen and seen[-1]["status"]["key"] == 4 and seen[-1]["availability"] == "busy"
    assert seen[-1]["callsign"] == unit_id.upper()


def listen_for(gateway, unit_id, until, seen, connected):
    """Follow the live stream into `seen` until an event of `unit_id` satisfies `until`."""
    with httpx.stream("GET", gateway.url + "/api/v1/stream", headers=gateway.headers, timeout=30) as resp:
        connected.set()
        for line in resp.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["unit_id"] == unit_id:
                    seen.append(event)
                    if until(event):
                        return


def test_a_decommissioned_unit_is_out_of_service_never_nearest_and_not_assignable(gateway, vunits, unit_id):
    ready_unit(gateway, vunits, unit_id, kind="ambulance")
    nearest = f"/api/v1/nearest?lat={INCIDENT['lat']}&lon={INCIDENT['lon']}&incident_kind=medical&limit=100"
    assert gateway.unit(unit_id)["decommissioned_at"] is None
    assert unit_id in [u["unit_id"] for u in gateway.get(nearest)[1]]

    seen, connected = [], threading.Event()
    listener = threading.Thread(
        target=listen_for,
        args=(gateway, unit_id, lambda ev: ev["decommissioned_at"] is not None, seen, connected),
        daemon=True,
    )
    listener.start()
    connected.wait(10)
    # what `siaga unit decommission` asks of the gateway (its broker side: tests/test_security.py)
    status, body = post(gateway, f"/api/v1/units/{unit_id}/decommission", {"reason": "engine fire"})
    assert status == 200, body
    at = body["unit"]["decommissioned_at"]
    assert at is not None and body["unit"]["availability"] == "out_of_service"

    u = gateway.unit(unit_id)
    assert u["decommissioned_at"] == at and u["availability"] == "out_of_service"
    listed = [x for x in gateway.get("/api/v1/units")[1] if x["unit_id"] == unit_id]
    assert listed[0]["decommissioned_at"] == at and listed[0]["availability"] == "out_of_service"
    assert unit_id not in [x["unit_id"] for x in gateway.get("/api/v1/units?availability=available")[1]]
    assert unit_id not in [x["unit_id"] for x in gateway.get(nearest)[1]]

    status, err = post(gateway, f"/api/v1/units/{unit_id}/assign", INCIDENT)
    assert status == 409 and err["error"]["code"] == "decommissioned", err
    assert "decommissioned" in err["error"]["message"] and "siaga unit enable" in err["error"]["message"]
    assert gateway.unit(unit_id)["assignment"] is None
    for path, body in (("status", {"key": 1, "reason": "test"}), ("lock", {"reason": "test"})):
        status, err = post(gateway, f"/api/v1/units/{unit_id}/{path}", body)
        assert status == 409 and "cannot be" in err["error"]["message"], (path, err)
    assert [h["key"] for h in gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]] == [2]  # history stays

    listener.join(15)  # the map hears of it though the unit sent nothing new
    assert seen and seen[-1]["decommissioned_at"] == at and seen[-1]["availability"] == "out_of_service"

    assert post(gateway, f"/api/v1/units/{unit_id}/enable")[0] == 200  # `siaga unit enable`
    u = gateway.unit(unit_id)
    assert u["decommissioned_at"] is None and u["availability"] == "available"
    assert unit_id in [x["unit_id"] for x in gateway.get(nearest)[1]]
    status, body = post(gateway, f"/api/v1/units/{unit_id}/assign", INCIDENT)
    assert status == 200 and body["unit"]["availability"] == "assigned"


def test_a_unit_that_is_not_available_is_assigned_only_with_a_confirmed_override(
    gateway, mqtt_client, unit_id
):
    unit = place(gateway, mqtt_client, unit_id, (INCIDENT["lat"] + 0.01, INCIDENT["lon"]))
    status, body = post(gateway, f"/api/v1/units/{unit_id}/assign", INCIDENT)
    assert status == 200 and body["unit"]["availability"] == "assigned"
    first = body["action_id"]
    assert body["unit"]["assignment"]["assigned_by"] == gateway.unit(unit_id)["assignment"]["assigned_by"]
    nearest = f"/api/v1/nearest?lat={INCIDENT['lat']}&lon={INCIDENT['lon']}&incident_kind=medical&limit=100"
    assert unit_id not in [u["unit_id"] for u in gateway.get(nearest)[1]]  # never offered again

    status, err = post(gateway, f"/api/v1/units/{unit_id}/assign", INCIDENT)  # the second click
    assert status == 409 and err["error"]["code"] == "not_available", err
    assert "assigned" in err["error"]["message"] and "override_reason" in err["error"]["message"]
    assert gateway.unit(unit_id)["assignment"]["id"] == first  # nothing changed
    assert len(gateway.get(f"/api/v1/assignments?unit_id={unit_id}")[1]) == 1

    for bad in ({"override_reason": ""}, {"override_reason": 1}, {"override": "x"}):
        status, err = post(gateway, f"/api/v1/units/{unit_id}/assign", dict(INCIDENT, **bad))
        assert status == 400 and err["error"]["code"] == "bad_request", (bad, err)

    why = "unit terdekat lain di bengkel"
    status, body = post(gateway, f"/api/v1/units/{unit_id}/assign", dict(INCIDENT, override_reason=why))
    assert status == 200 and body["unit"]["assignment"]["id"] != first
    rows = gateway.get(f"/api/v1/assignments?unit_id={unit_id}")[1]
    assert [r["override_reason"] for r in rows] == [None, why]  # recorded with the action
    assert rows[1]["assigned_by"] == rows[0]["assigned_by"] == body["unit"]["assignment"]["assigned_by"]

    unit.press(6)  # the crew: out of service
    wait_until(lambda: gateway.unit(unit_id)["status"]["key"] == 6, what="the crew's press")
    post(gateway, f"/api/v1/units/{unit_id}/release", {})
    status, err = post(gateway, f"/api/v1/units/{unit_id}/assign", INCIDENT)
    assert status == 409 and "out_of_service, status 6" in err["error"]["message"], err


def test_concurrent_assignments_of_one_unit_give_it_once(gateway, mqtt_client, unit_id):
    place(gateway, mqtt_client, unit_id, (INCIDENT["lat"] + 0.01, INCIDENT["lon"]))
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda _: post(gateway, f"/api/v1/units/{unit_id}/assign", INCIDENT)[0], range(4))
        )
    assert sorted(answers) == [200, 409, 409, 409]
    assert len(gateway.get(f"/api/v1/assignments?unit_id={unit_id}")[1]) == 1


def test_the_openapi_document_lists_the_assignments_409_and_its_override(gateway):
    doc = httpx.get(gateway.url + "/api/v1/openapi.json").json()
    assign = doc["paths"]["/api/v1/units/{unit_id}/assign"]["post"]
    assert "not_available" in assign["responses"]["409"]["description"]
    body = doc["components"]["schemas"]["AssignIn"]
    assert body["additionalProperties"] is False and "override_reason" in body["properties"]
    assert "override_reason" not in body.get("required", [])


def test_text_with_a_nul_is_refused_at_the_edge_on_either_store(gateway, unit_id):
    # a PostgreSQL text column cannot hold NUL: the API refuses it (400) before any store sees it
    gateway.register(unit_id)
    for path, body in (
        (f"/api/v1/units/{unit_id}/status", {"key": 6, "reason": "ra\u0000dio"}),
        (f"/api/v1/units/{unit_id}/release", {"reason": "\u0000"}),
        ("/api/v1/units", {"unit_id": unit_id, "callsign": "A\u00001"}),
        ("/api/v1/login", {"username": "dina\u0000", "password": "x"}),
    ):
        status, err = post(gateway, path, body)
        assert status == 400 and err["error"]["code"] == "bad_request", (path, status, err)
    assert gateway.request("POST", "/api/v1/users/bad%00name/disable")[0] in (400, 404)
    status, body = post(gateway, f"/api/v1/units/{unit_id}/status", {"key": 6, "reason": "radio"})
    assert status == 200, body  # and the gateway goes on
