"""A crew's press travels the whole chain on real parts: the firmware in MicroPython,
Mosquitto, the gateway process, its HTTP API; and back: the gateway's ack lights the
key's LED steady."""

import json
import sqlite3

from conftest import wait_until


def test_press_reaches_the_dispatcher_and_the_crew_sees_it_delivered(gateway, vunits, unit_id):
    gateway.register(unit_id, kind="ambulance")
    unit = vunits(unit_id)
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the unit's birth")
    wait_until(lambda: gateway.unit(unit_id)["position"], what="a first position")

    unit.press(3)
    u = wait_until(lambda: (lambda u: u["status"] and u)(gateway.unit(unit_id)), what="the press")
    assert u["status"]["key"] == 3 and u["status"]["label"] == "Menuju lokasi"
    assert u["availability"] == "busy"
    wait_until(lambda: unit.state()["leds"].get("3") == "on", what="LED 3 steady (acknowledged)")

    unit.press(0, long_press=True)
    wait_until(lambda: gateway.unit(unit_id)["availability"] == "emergency", what="the emergency")
    wait_until(lambda: unit.state()["leds"].get("0") == "on", what="LED 0 steady")
    assert unit.state()["leds"]["3"] == "off"

    status, units = gateway.get("/api/v1/units")
    mine = [x for x in units if x["unit_id"] == unit_id][0]
    for field in ("unit_id", "kind", "availability", "status", "position", "last_seen"):
        assert field in mine
    for field in ("lat", "lon", "speed", "heading", "fix_time"):
        assert field in mine["position"]
    assert abs(mine["position"]["lat"] - -2.21) < 0.05 and abs(mine["position"]["lon"] - 113.915) < 0.05

    history = gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]
    assert [h["key"] for h in history] == [0, 3]
    assert all(h["source"] == "crew" for h in history)


def test_a_short_press_on_the_emergency_key_does_nothing(gateway, vunits, unit_id):
    gateway.register(unit_id)
    unit = vunits(unit_id)
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the unit's birth")
    unit.press(0)  # a brush, not a long press
    unit.press(2)
    wait_until(lambda: gateway.unit(unit_id)["status"], what="the press")
    assert gateway.unit(unit_id)["availability"] == "available"
    assert [h["key"] for h in gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]] == [2]


def test_ignition_off_is_a_clean_shutdown_and_a_power_cut_is_a_lost_link(gateway, vunits, unit_id):
    gateway.register(unit_id)
    unit = vunits(unit_id)
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the unit's birth")
    unit.power_off()
    wait_until(lambda: gateway.unit(unit_id)["link"] == "shutdown", what="the goodbye")
    assert gateway.unit(unit_id)["availability"] == "offline"
    unit.stop()

    unit = vunits(unit_id)  # a reboot: boot counter +1, a new birth
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the birth after reboot")
    unit.kill()  # power cut: the broker sends the last will after the keepalive runs out
    wait_until(lambda: gateway.unit(unit_id)["link"] == "lost", timeout=60, what="the last will")


def test_garbage_is_refused_counted_and_kept_and_the_gateway_goes_on(gateway, vunits, unit_id, mqtt_client):
    gateway.register(unit_id)
    before = gateway.get("/api/v1/health")[1]["refused"]
    for topic, payload in (
        (f"siaga/{unit_id}/pos", b"\xde\xad\xbe\xef"),
        (f"siaga/{unit_id}/status", b"{not json"),
        (
            "siaga/zz-unknown/status",
            json.dumps(
                {"_type": "status", "boot": 1, "seq": 1, "key": 3, "t": 1795862700, "sent": 1795862700}
            ).encode(),
        ),
    ):
        mqtt_client.publish(topic, payload, qos=1).wait_for_publish(5)

    def counted():
        refused = gateway.get("/api/v1/health")[1]["refused"]
        return all(refused.get(k, 0) > before.get(k, 0) for k in ("bad_length", "bad_json", "unknown_unit"))

    wait_until(counted, what="three refusals counted")
    kept = gateway.get("/api/v1/health")[1]["quarantined"]
    assert kept["bad_length"] >= 1 and kept["bad_json"] >= 1 and kept["unknown_unit"] >= 1
    with sqlite3.connect(gateway.data_dir / "siaga.db") as db:
        kept = db.execute(
            "select reason, payload from quarantine where topic = ?", (f"siaga/{unit_id}/pos",)
        ).fetchall()
    assert kept == [("bad_length", b"\xde\xad\xbe\xef")]
    assert gateway.get("/api/v1/units/zz-unknown")[0] == 404
    assert gateway.unit(unit_id)["status"] is None

    unit = vunits(unit_id)  # and the gateway still works
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the unit's birth")
    unit.press(1)
    wait_until(lambda: gateway.unit(unit_id)["availability"] == "available", what="the press")


def test_settings_pushed_by_the_gateway_are_kept_and_reported(gateway, vunits, unit_id):
    gateway.register(unit_id)
    unit = vunits(unit_id)
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the unit's birth")
    assert gateway.unit(unit_id)["device"]["cfg"] == 0

    status, body = gateway.request(
        "PUT",
        f"/api/v1/units/{unit_id}/settings",
        {"values": {"report_max_period_s": 20, "report_heartbeat_s": 90}},
    )
    assert status == 202 and body["version"] == 1
    wait_until(lambda: any("settings 1 in force" in line for line in unit.lines), what="settings in force")
    kept = json.loads((unit.flash / "settings.json").read_text())
    assert kept == {"version": 1, "values": {"report_max_period_s": 20, "report_heartbeat_s": 90}}

    # what a unit would refuse never leaves the gateway (the unit's own refusal of a bad
    # push: tests/firmware/test_config.py)
    status, body = gateway.request(
        "PUT", f"/api/v1/units/{unit_id}/settings", {"values": {"broker_host": "10.9.9.9"}}
    )
    assert status == 400 and "broker_host: not a field this takes" in body["error"]["message"]

    # a pushed setting taken back: the unit returns to its own value for it
    status, body = gateway.request("DELETE", f"/api/v1/units/{unit_id}/settings/report_heartbeat_s")
    assert status == 202 and body == {"unit_id": unit_id, "version": 2, "values": {"report_max_period_s": 20}}
    wait_until(
        lambda: any("settings 2 in force" in line for line in unit.lines), what="the take-back in force"
    )
    kept = json.loads((unit.flash / "settings.json").read_text())
    assert kept == {"version": 2, "values": {"report_max_period_s": 20}}

    unit.stop()
    vunits(unit_id)  # reboot: the birth reports the settings in force
    wait_until(lambda: (gateway.unit(unit_id)["device"] or {}).get("boot") == 1, what="the new birth")
    assert gateway.unit(unit_id)["device"]["cfg"] == 2
    assert gateway.unit(unit_id)["settings_pushed"]["version"] == 2


def test_a_hung_task_stops_the_watchdog_and_the_unit_restarts(gateway, vunits, unit_id):
    gateway.register(unit_id)
    unit = vunits(unit_id, watchdog_s=3)
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the unit's birth")
    unit.press(2)
    wait_until(lambda: gateway.unit(unit_id)["availability"] == "available", what="available")
    for how, boot in (("stall", 1), ("busy", 2)):  # a task that stops; a loop that never yields
        unit._panel_write(f"H {how}\n")
        wait_until(
            lambda b=boot: (gateway.unit(unit_id)["device"] or {}).get("boot") == b,
            timeout=30,
            what=f"the reboot after the watchdog ({how})",
        )
        device = gateway.unit(unit_id)["device"]
        assert device["reset"] == "watchdog"
    assert unit.resets == 2
    assert any("watchdog: task keys is hung" in line for line in unit.lines)
    unit.press(3)  # the unit works again, and nothing was lost across the resets
    wait_until(lambda: gateway.unit(unit_id)["availability"] == "busy", what="the press after the reboots")
    assert [h["key"] for h in gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]] == [3, 2]
