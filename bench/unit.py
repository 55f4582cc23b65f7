"""A virtual unit on the reference drive, replayed faster than real time, through a
recording link to a real Mosquitto: the firmware's heap peak and the bytes of a live
position report on the wire."""

import re
import tempfile
import time
from pathlib import Path

from provisioning.mosquitto import Mosquitto
from simulators.link import Link
from simulators.route import city_drive
from simulators.vunit import VirtualUnit

RATE = 20.0  # fixes per second of wall time


def run_drive(workdir, duration_s=1800, heap="96K", presses=(3, 4, 7, 8, 9, 2), rate=RATE):
    """Returns (unit, link) after the unit drove the whole drive and shut down."""
    broker = Mosquitto(Path(workdir) / "broker").start()
    link = Link(broker.port).start()
    samples = city_drive(seed=7, duration_s=duration_s, start_t=time.time())
    unit = VirtualUnit(
        "amb-01", Path(workdir) / "flash", Path(workdir) / "sim", ("127.0.0.1", link.port), heap=heap, seed=7
    )
    unit.replay(samples, rate).start()
    try:
        gap = duration_s / rate / (len(presses) + 1)
        for key in presses:
            if unit.replay_done.wait(gap):
                break
            unit.press(key)
        unit.replay_done.wait(duration_s / rate + 30)
        time.sleep(1)
        unit.stop(clean=True)
    finally:
        unit.stop(clean=False)
        link.stop()
        broker.stop()
    return unit, link


def heap_peak(unit):
    """(peak live heap, of which code and start-up objects) from the unit's last stats."""
    found = [
        m.groups() for line in unit.lines if (m := re.search(r"stats: heap peak (\d+) code (\d+)", line))
    ]
    errors = [line for line in unit.lines if "MemoryError" in line]
    if errors or not found:
        raise RuntimeError("the unit did not finish the drive: " + "\n".join(unit.lines[-20:]))
    return int(found[-1][0]), int(found[-1][1])


def live_report_bytes(link):
    sizes = {
        p.size
        for p in link.packets
        if p.kind == "PUBLISH" and p.direction == "up" and p.topic and p.topic.endswith("/pos")
    }
    return min(sizes), max(sizes)


def figures():
    with tempfile.TemporaryDirectory() as tmp:
        unit, link = run_drive(tmp)
    smallest, largest = live_report_bytes(link)
    peak, code = heap_peak(unit)
    return [
        ("firmware.heap_peak_bytes", peak, "bytes"),
        ("firmware.heap_peak_data_bytes", peak - code, "bytes"),
        ("firmware.live_report_bytes", largest, "bytes"),
    ]
