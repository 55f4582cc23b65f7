"""A unit's LTE modem, as its technician sees it: the firmware's modem driver talks AT to
the modem simulator over a pty, and the signal, registration and operator it reads reach
the gateway in the unit's telemetry. No network, no link: a unit whose registration is
denied stays off the broker, says why, and comes online once the network lets it in."""

import pytest
from conftest import wait_until

from simulators.modem import ModemSimulator

FAST = {"telemetry_s": 2, "modem_poll_s": 1, "register_s": 3}
# The modem driver is about 20 KB of bytecode, which the unix port loads onto the heap
# (a board runs it frozen, from flash): the unit with a modem gets that much more heap.
HEAP = "160K"


@pytest.fixture
def modem():
    sim = ModemSimulator(model="SIM7600", csq=20, operator="Telkomsel").start()
    yield sim
    sim.stop()


def telemetry(gateway, unit_id):
    device = gateway.unit(unit_id).get("device") or {}
    return device.get("telemetry") or {}


def test_signal_and_registration_reach_the_technician(gateway, vunits, unit_id, modem):
    gateway.register(unit_id, kind="ambulance")
    unit = vunits(unit_id, modem=modem, config=FAST, heap=HEAP)
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", 30, 0.2, "the unit online")
    tele = wait_until(lambda: telemetry(gateway, unit_id).get("rssi"), 30, 0.5, "telemetry with a signal")
    tele = telemetry(gateway, unit_id)
    assert tele["rssi"] == -73  # CSQ 20: -113 + 2 * 20 dBm (3GPP TS 27.007)
    assert tele["reg"] == "home" and tele["op"] == "Telkomsel"
    assert tele["modem_discards"] >= 0  # lines the driver dropped (docs/protocol.md)
    assert tele["heap_free"] > 0 and tele["waiting"] >= 0 and tele["flash_free"] > 0
    modem.csq = 8  # the ambulance drives into a weak cell
    wait_until(lambda: telemetry(gateway, unit_id).get("rssi") == -97, 30, 0.5, "the weaker signal reported")
    assert any("modem: up" in line for line in unit.lines)


def test_the_vehicle_supply_voltage_reaches_the_technician(gateway, vunits, unit_id):
    # the board's ADC reading of the vehicle supply (boards/esp32.py: supply_volts) goes
    # out in each telemetry message; a battery running down shows in the next one
    gateway.register(unit_id, kind="ambulance")
    unit = vunits(unit_id, config={"telemetry_s": 2}, supply_v=13.9)
    wait_until(lambda: telemetry(gateway, unit_id).get("supply_v") == 13.9, 30, 0.5, "13.9 V reported")
    unit.set_supply(11.2)  # engine off, lights on, for an hour
    wait_until(lambda: telemetry(gateway, unit_id).get("supply_v") == 11.2, 30, 0.5, "11.2 V reported")
    assert "rssi" not in telemetry(gateway, unit_id)  # the virtual board has no modem here


def test_a_board_that_cannot_measure_its_supply_leaves_the_field_out(gateway, vunits, unit_id):
    gateway.register(unit_id, kind="ambulance")
    vunits(unit_id, config={"telemetry_s": 2})
    tele = wait_until(lambda: telemetry(gateway, unit_id) or None, 30, 0.5, "telemetry")
    assert tele["heap_free"] > 0 and "supply_v" not in tele


def test_no_link_while_registration_is_denied_then_online(gateway, vunits, unit_id, modem):
    modem.reg = "denied"
    gateway.register(unit_id, kind="fire_truck")
    unit = vunits(unit_id, modem=modem, config=FAST, heap=HEAP)
    wait_until(
        lambda: any("registration_denied" in line for line in unit.lines), 30, 0.2, "the modem's reason"
    )
    assert gateway.unit(unit_id)["link"] != "online"
    assert any("no mobile network" in line for line in unit.lines)
    modem.reg = "home"  # the operator lets the SIM in
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", 60, 0.2, "the unit online")
    unit.press(3)
    wait_until(lambda: gateway.unit(unit_id)["status"], 30, 0.2, "the press after the network came")
