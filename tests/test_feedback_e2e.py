"""What a crew sees when a press cannot be delivered at once: the key's LED blinks while
the press is on its way, turns to the error pattern with the buzzer when it is stuck for
longer than the alarm time, and burns steady when the gateway finally acknowledges it;
the dispatcher gets the press exactly once."""

from conftest import wait_until


def led(unit, key):
    return unit.state()["leds"].get(str(key))


def telemetry(gateway, unit_id):
    return (gateway.unit(unit_id).get("device") or {}).get("telemetry") or {}


def history(gateway, unit_id):
    return [h["key"] for h in gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]]


def test_a_press_in_a_dead_zone(gateway, vunits, link, unit_id):
    gateway.register(unit_id)
    unit = vunits(
        unit_id,
        broker=("127.0.0.1", link.port),
        config={"undelivered_alarm_s": 3, "keepalive_s": 4, "telemetry_s": 2},
    )
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the unit's birth")
    tele = wait_until(lambda: telemetry(gateway, unit_id) or None, what="telemetry")
    assert "mqtt_resent" not in tele and "io_errors" not in tele  # fault counters: only when not 0

    link.silent.set()  # an LTE dead zone: nothing gets through, nobody is told
    unit.press(3)
    wait_until(lambda: led(unit, 3) == "blink", what="LED 3 blinking (pending)")
    wait_until(lambda: led(unit, 3) == "error" and unit.state()["buzzer"], what="the undelivered alarm")
    assert gateway.unit(unit_id)["status"] is None

    link.silent.clear()
    wait_until(lambda: led(unit, 3) == "on", timeout=40, what="LED 3 steady (acknowledged)")
    assert not unit.state()["buzzer"]
    assert history(gateway, unit_id) == [3]
    # the technician sees what the dead zone cost: the press went again on the new link


def test_a_dead_zone_that_ends_in_a_cut_shows_in_telemetry(gateway, vunits, link, unit_id):
    # the modem drops the data session in the dead zone: what the unit had in flight goes
    # again on the next link, and its telemetry says so (mqtt_resent, sent when not 0)
    gateway.register(unit_id)
    unit = vunits(
        unit_id, broker=("127.0.0.1", link.port), config={"undelivered_alarm_s": 2, "telemetry_s": 2}
    )
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the unit's birth")
    link.silent.set()
    unit.press(4)
    wait_until(lambda: led(unit, 4) == "error", what="the undelivered alarm")
    link.cut()
    link.silent.clear()
    wait_until(lambda: led(unit, 4) == "on", timeout=40, what="LED 4 steady (acknowledged)")
    assert history(gateway, unit_id) == [4]
    tele = wait_until(lambda: telemetry(gateway, unit_id).get("mqtt_resent"), what="mqtt_resent in telemetry")
    assert tele >= 1


def test_a_press_while_the_gateway_is_down(gateway, vunits, unit_id):
    gateway.register(unit_id)
    unit = vunits(unit_id, config={"undelivered_alarm_s": 2})
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the unit's birth")

    gateway.stop()  # the broker keeps the gateway's messages in its persistent session
    unit.press(4)
    wait_until(lambda: led(unit, 4) == "error", what="the alarm: taken by the broker, not acknowledged")
    gateway.start()
    wait_until(lambda: led(unit, 4) == "on", timeout=30, what="LED 4 steady after the gateway is back")
    assert history(gateway, unit_id) == [4]
    assert gateway.unit(unit_id)["availability"] == "busy"
