"""MQTT over the modem's own TCP stack (config `data_path: "modem_tcp"`), for modems or
module firmware without PPP: the unit's MQTT session is a TCP connection the modem opens
in transparent mode (AT+CIPOPEN on the SIM7600, AT+QIOPEN on the EC25). Here the modem
simulator pipes it to the real Mosquitto, so every byte the gateway gets from the unit
went through the AT protocol on the pty. A network drop mid-session ends the connection
(NO CARRIER); the unit hangs up, re-registers, opens a new one, and nothing is lost."""

import pytest
from conftest import wait_until

from simulators.modem import ModemSimulator

FAST = {"telemetry_s": 2, "modem_poll_s": 1, "register_s": 5, "keepalive_s": 10, "data_path": "modem_tcp"}
HEAP = "160K"  # the modem driver's bytecode on the unix port's heap (test_telemetry.py)


@pytest.fixture(params=["SIM7600", "EC25"])
def modem(request):
    sim = ModemSimulator(model=request.param, csq=20, operator="Telkomsel").start()
    yield sim
    sim.stop()


def keys(gateway, unit_id):
    """The unit's crew presses in press order (the API lists the newest first)."""
    return [s["key"] for s in reversed(gateway.get(f"/api/v1/units/{unit_id}/statuses")[1])]


def test_presses_travel_over_the_modems_own_tcp_stack_through_a_network_drop(gateway, vunits, unit_id, modem):
    gateway.register(unit_id, kind="ambulance")
    unit = vunits(unit_id, modem=modem, config=FAST, heap=HEAP)
    wait_until(lambda: gateway.unit(unit_id)["link"] == "online", 60, 0.2, "the unit online")
    assert modem.tcp_opened == 1 and modem.tcp_up > 0 and modem.tcp_down > 0
    unit.press(3)
    wait_until(lambda: keys(gateway, unit_id) == [3], 30, 0.2, "the first press stored")
    up = modem.tcp_up
    wait_until(lambda: modem.tcp_up > up, 30, 0.2, "more of the unit's traffic through the modem")

    modem.drop()  # the network goes: NO CARRIER in the data stream, the socket closed
    unit.press(5)  # pressed while the unit has no network
    wait_until(lambda: keys(gateway, unit_id) == [3, 5], 90, 0.5, "the second press after the drop")
    assert modem.tcp_opened >= 2, "a new TCP connection on the modem after the drop"
    assert any("modem: lost" in line for line in unit.lines)
    assert any("protocol violation" in line for line in unit.lines), "NO CARRIER read as no MQTT"
    unit.press(1)
    wait_until(lambda: keys(gateway, unit_id) == [3, 5, 1], 30, 0.2, "a press on the new connection")
    # the telemetry still comes from the modem (read in command mode, between sessions)
    tele = gateway.unit(unit_id)["device"]["telemetry"]
    assert tele["rssi"] == -73 and tele["reg"] == "home"


def test_modem_tcp_refuses_tls_with_a_clear_error(gateway, vunits, unit_id, modem, tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("not used: the unit refuses before it reads it\n")
    unit = vunits(unit_id, modem=modem, config=dict(FAST, broker_tls=True, broker_ca="ca.crt"), heap=HEAP)
    wait_until(
        lambda: any("TLS is not available over the modem's own TCP stack" in line for line in unit.lines),
        60,
        0.2,
        "the unit says why it does not connect",
    )
    assert modem.tcp_opened == 0
