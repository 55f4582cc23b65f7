"""Malformed HTTP requests against the real gateway process: every query and body value is
checked at the edge and refused with 400 (or 404, 405, 413) and the one error body, never
a 500; what was refused is never stored. schemathesis tries the whole API in
tests/test_api_fuzz.py."""

import json
import time

import httpx
import pytest
from conftest import wait_until


def call(gateway, method, path, **kw):
    headers = {**gateway.headers, **kw.pop("headers", {})}
    return httpx.request(method, gateway.url + path, headers=headers, timeout=30, **kw)


def error(r):
    return r.status_code, r.json()["error"]["code"]


@pytest.mark.parametrize(
    "value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "yesterday", "2026-13-01T00:00Z"]
)
@pytest.mark.parametrize("name", ["from", "to"])
def test_a_track_query_with_no_real_time_is_refused(gateway, unit_id, name, value):
    gateway.register(unit_id)
    r = call(gateway, "GET", f"/api/v1/units/{unit_id}/track", params={name: value})
    assert error(r) == (400, "bad_request") and name in r.json()["error"]["message"]


def test_report_queries_are_checked_too(gateway):
    assert error(call(gateway, "GET", "/api/v1/assignments", params={"from": "nan"}))[0] == 400
    assert error(call(gateway, "GET", "/api/v1/response-times", params={"to": "inf"}))[0] == 400
    r = call(gateway, "GET", "/api/v1/nearest", params={"lat": "nan", "lon": "113.9"})
    assert error(r) == (400, "bad_request")


@pytest.mark.parametrize(
    "raw", ['{"values": {"gnss_max_hdop": NaN}}', '{"values": {"gnss_max_hdop": 1e999}}']
)
def test_settings_with_numbers_no_reply_can_carry_are_refused(gateway, unit_id, raw):
    gateway.register(unit_id)
    r = call(gateway, "PUT", f"/api/v1/units/{unit_id}/settings", content=raw)
    assert r.status_code == 400
    assert gateway.unit(unit_id)["settings_pushed"] is None  # nothing stored, and the unit reads fine


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"no_such_setting": 1}, "bad_request"),
        ({"broker_host": "10.9.9.9"}, "bad_request"),
        ({"report_batch": 0}, "bad_request"),
        ({"report_batch": 3.5}, "bad_request"),
        ({"report_batch": True}, "bad_request"),
        ({"gnss_max_hdop": "3"}, "bad_request"),
        ({"status_keys": [1, 1, 2]}, "bad_request"),
        ({"status_keys": [12]}, "bad_request"),
        ({}, "bad_request"),
    ],
)
def test_a_push_a_unit_would_refuse_never_leaves_the_gateway(gateway, unit_id, values, code):
    gateway.register(unit_id)
    r = call(gateway, "PUT", f"/api/v1/units/{unit_id}/settings", json={"values": values})
    assert error(r) == (400, code)


def test_a_pushed_setting_can_be_taken_back(gateway, unit_id):
    gateway.register(unit_id)
    r = call(
        gateway,
        "PUT",
        f"/api/v1/units/{unit_id}/settings",
        json={"values": {"report_batch": 8, "gnss_max_hdop": 3}},
    )
    assert r.status_code == 202 and r.json()["version"] == 1
    r = call(gateway, "DELETE", f"/api/v1/units/{unit_id}/settings/report_batch")
    assert r.status_code == 202 and r.json() == {
        "unit_id": unit_id,
        "version": 2,
        "values": {"gnss_max_hdop": 3},
    }
    assert error(call(gateway, "DELETE", f"/api/v1/units/{unit_id}/settings/report_batch")) == (
        404,
        "not_found",
    )
    assert gateway.unit(unit_id)["settings_pushed"] == {"version": 2, "values": {"gnss_max_hdop": 3}}


def test_registry_strings_are_bounded(gateway, unit_id):
    body = {"unit_id": unit_id, "kind": "ambulance", "callsign": "x" * 10_000_000}
    r = call(gateway, "POST", "/api/v1/units", json=body)
    assert error(r) == (413, "too_large")
    r = call(gateway, "POST", "/api/v1/units", json=dict(body, callsign="x" * 33))
    assert error(r) == (400, "bad_request") and "callsign" in r.json()["error"]["message"]
    r = call(gateway, "POST", "/api/v1/units", json=dict(body, callsign="A1", colour="red"))
    assert error(r) == (400, "bad_request")  # unknown fields are refused, not ignored
    raw = json.dumps(dict(body, callsign="A1")).replace("}", ', "home_lat": NaN}')
    assert call(gateway, "POST", "/api/v1/units", content=raw).status_code == 400
    assert call(gateway, "GET", "/api/v1/units").status_code == 200
    assert unit_id not in [u["unit_id"] for u in call(gateway, "GET", "/api/v1/units").json()]


def test_a_chunked_body_over_the_limit_is_refused(gateway, unit_id):
    def chunks():
        yield b'{"unit_id": "' + unit_id.encode() + b'", "callsign": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    r = call(gateway, "POST", "/api/v1/units", content=chunks(), headers={"Content-Type": "application/json"})
    assert error(r) == (413, "too_large")


@pytest.mark.parametrize(
    "path",
    [
        "/vendor/leaflet/%00",
        "/vendor/leaflet/..%2f..%2fREADME.md",
        "/vendor/protomaps-leaflet/%00",
        "/vendor/protomaps-leaflet/..%2f..%2f..%2fpackage.json",
        "/web/%00",
        "/web/../x",
    ],
)
def test_static_files_refuse_bad_paths_with_404(gateway, path):
    r = httpx.get(gateway.url + path)  # no login: these are public
    assert r.status_code == 404


def test_a_wrong_method_is_405_with_allow(gateway):
    r = call(gateway, "DELETE", "/api/v1/units")
    assert error(r) == (405, "method_not_allowed")
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}


def test_the_openapi_document_says_every_error(gateway):
    doc = httpx.get(gateway.url + "/api/v1/openapi.json").json()
    codes = {code for ops in doc["paths"].values() for op in ops.values() for code in op["responses"]}
    assert {"400", "401", "403", "404", "409", "413", "429", "503"} <= codes and "422" not in codes
    assign = doc["paths"]["/api/v1/units/{unit_id}/assign"]["post"]["responses"]
    assert {"400", "401", "403", "404", "409"} <= assign.keys()
    assert assign["409"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_a_technician_sees_a_unit_whose_clock_is_off(gateway, unit_id, mqtt_client):
    gateway.register(unit_id)
    ahead = int(time.time()) + 600  # its clock is 10 minutes ahead
    birth = {"_type": "birth", "boot": 1, "seq": 0, "t": ahead, "sent": ahead}
    tele = {"_type": "tele", "boot": 1, "seq": 1, "t": ahead, "sent": ahead, "heap_free": 1000}
    mqtt_client.publish(f"siaga/{unit_id}/conn", json.dumps(birth), qos=1).wait_for_publish(5)
    mqtt_client.publish(f"siaga/{unit_id}/tele", json.dumps(tele), qos=1).wait_for_publish(5)
    device = wait_until(lambda: (gateway.unit(unit_id).get("device") or {}).get("telemetry"), what="tele")
    device = gateway.unit(unit_id)["device"]
    assert device["clock_off"] is True and 590 < device["clock_offset_s"] < 610
