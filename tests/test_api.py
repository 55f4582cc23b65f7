"""HTTP API edges: one JSON error body, OpenAPI published, registration validated."""


def test_errors_have_one_json_body(gateway):
    status, body = gateway.get("/api/v1/units/nobody")
    assert status == 404 and body["error"]["code"] == "not_found" and "nobody" in body["error"]["message"]
    status, body = gateway.get("/api/v1/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = gateway.request("POST", "/api/v1/units", {"unit_id": "Bad Id!"})
    assert status == 400 and body["error"]["code"] == "bad_request" and "unit_id" in body["error"]["message"]
    status, body = gateway.request("POST", "/api/v1/units", {"unit_id": "amb-77", "kind": "spaceship"})
    assert status == 400 and "kind" in body["error"]["message"] and "'ambulance'" in body["error"]["message"]


def test_openapi_is_published(gateway):
    status, spec = gateway.get("/api/v1/openapi.json")
    assert status == 200 and "/api/v1/units" in spec["paths"] and "/api/v1/health" in spec["paths"]


def test_health(gateway):
    status, body = gateway.get("/api/v1/health")
    assert status == 200 and body["status"] == "ok" and body["mqtt_connected"] is True


def test_a_unit_says_its_status_scheme_and_whether_it_is_decommissioned(gateway):
    gateway.register("amb-78")
    unit = gateway.unit("amb-78")
    assert unit["status_scheme"] == "default" and unit["decommissioned_at"] is None
    listed = [u for u in gateway.get("/api/v1/units")[1] if u["unit_id"] == "amb-78"]
    assert listed[0]["status_scheme"] == "default" and listed[0]["decommissioned_at"] is None
    status, config = gateway.get("/api/v1/map-config")
    assert status == 200 and list(config["schemes"]) == ["default"]
    assert config["schemes"]["default"] == config["statuses"]
    settable = [s["key"] for s in config["schemes"]["default"] if s["settable"]]
    assert settable == [1, 2, 3, 4, 6, 7, 8, 9]  # not 5 (a flag) nor 0 (the crew's emergency)
