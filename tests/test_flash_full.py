"""A full flash loses no press: a unit whose journal lives on a real littlefs far smaller
than its outbox bound (48 KB against 256 KB) is cut off long enough to fill it with
positions, its crew presses all the while, the power is cut once; when the link comes
back every press reaches the gateway exactly once, in order, and the unit reports how
many positions it had to drop."""

import time

import pytest
from conftest import wait_until

from simulators.gateway_process import GatewayProcess
from simulators.route import city_drive
from simulators.vunit import VirtualUnit

EVERY_FIX = {
    "report_max_period_s": 1,
    "report_min_period_s": 1,
    "report_heartbeat_s": 1,
    "keepalive_s": 4,
    "report_stop_s": 100000,
}
BLOCKS = 12  # 4 KB littlefs blocks: a 48 KB data partition
RATE = 40  # fixes a second, each one a report: the flash fills in under a minute


@pytest.fixture
def gateway(broker, tmp_path):
    """GNSS is replayed RATE times faster than real time, so the unit's clock runs ahead of
    the gateway's by what the drive has gained (docs/trust.md "Times"): this gateway
    takes fixes and presses up to a day ahead."""
    gw = GatewayProcess(tmp_path / "gateway", broker.port, extra=["--max-clock-ahead", "86400"]).start()
    yield gw
    gw.stop()


def test_presses_survive_a_full_flash_and_a_power_cut(gateway, link, tmp_path, unit_id):
    gateway.register(unit_id, kind="ambulance")
    samples = city_drive(seed=4, duration_s=20000, start_t=time.time())

    def power_on():
        u = VirtualUnit(
            unit_id,
            tmp_path / "flash",
            tmp_path / "sim",
            ("127.0.0.1", link.port),
            seed=4,
            config=EVERY_FIX,
            flash_blocks=BLOCKS,
        )
        return u.replay(samples[int(time.time() - t0) * RATE :], RATE).start()

    t0 = time.time()
    unit = power_on()
    console = []
    try:
        wait_until(lambda: gateway.unit(unit_id)["link"] == "online", 30, 0.2, "the unit online")
        link.silent.set()  # a dead zone: nothing gets through, nobody is told
        pressed = []
        for i in range(10):
            time.sleep(4)
            key = (3, 4, 6, 1)[i % 4]
            unit.press(key, hold_s=0.3)  # a crew holds a key a good while
            pressed.append(key)
            if i == 5:  # the power goes, mid-write or not
                time.sleep(0.5)
                console += unit.lines
                unit.kill()
                unit = power_on()
        time.sleep(2)
        console += unit.lines
        assert any("flash full" in line for line in console), (
            "the flash never filled: the test proves nothing\n" + "\n".join(console[-30:])
        )
        link.cut()
        link.silent.clear()
        try:
            wait_until(
                lambda: len(gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]) >= len(pressed),
                120,
                0.5,
                "every press at the gateway",
            )
        finally:
            stored = gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]
            print("stored", [(h["key"], h["seq"]) for h in stored])
        time.sleep(3)  # anything sent twice would be stored by now
        history = gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]
        stored = [h["key"] for h in reversed(history)]  # the API lists newest first
        print(f"pressed {len(pressed)}, stored {len(stored)}")
        assert stored == pressed
        times = [h["pressed_at"] for h in reversed(history)]
        assert times == sorted(times)
        device = wait_until(lambda: gateway.unit(unit_id)["device"], 30, 0.5, "the unit's birth")
        assert device["dropped"]["position"] > 0  # counted and told, not silently lost
        assert device["dropped"]["status"] == 0
    finally:
        console += unit.lines
        unit.kill()
        print(*console[-40:], sep="\n")
