"""What a crew sees when a press cannot be delivered at once: the key's LED blinks while
the press is on its way, turns to the error pattern with the buzzer when it is stuck for
longer than the alarm time, and burns steady when the gateway finally acknowledges it;
the dispatcher gets the press exactly once."""

from conftest import wait_until


def led(unit, key):
    return unit.state()["leds"].get(str(key))


def history(gateway, unit_id):
    return [h["key"] for h in gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]]


def test_a_press_in_a_dead_zone(gateway, vunits, link, unit_id):
    gateway.register(unit_id)
    unit = vunits(
        unit_id, broker=("127.0.0.1", link.port), config={"undelivered_alarm_s": 3, "keepalive_s": 4}
    )
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", what="the unit's birth")

    link.silent.set()  # an LTE dead zone: nothing gets through, nobody is told
    unit.press(3)
    wait_until(lambda: led(unit, 3) == "blink", what="LED 3 blinking (pending)")
    wait_until(lambda: led(unit, 3) == "error" and unit.state()["buzzer"], what="the undelivered alarm")
    assert gateway.unit(unit_id)["status"] is None

    link.silent.clear()
    wait_until(lambda: led(unit, 3) == "on", timeout=40, what="LED 3 steady (acknowledged)")
    assert not unit.state()["buzzer"]
    assert history(gateway, unit_id) == [3]


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
