"""A virtual unit on the reference drive, replayed faster than real time, through a
recording link to a real Mosquitto and a real gateway (which confirms every press): the
firmware's heap (at start, its peak at quiet points, its high-water mark at busy ones)
and the bytes of a live position report on the wire. bench/memory.py drives it without a
gateway, for hours, and with its heap filled on purpose."""

import re
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from provisioning.mosquitto import Mosquitto
from simulators.gateway_process import GatewayProcess, wait_until
from simulators.link import Link
from simulators.route import city_drive
from simulators.vunit import VirtualUnit

RATE = 20.0  # fixes per second of wall time
STATS = re.compile(r"stats: heap peak (\d+) code (\d+) high (\d+) free (\d+) largest (\d+) recovered (\d+)")


def run_drive(
    workdir,
    duration_s=1800,
    heap="96K",
    presses=(3, 4, 7, 8, 9, 2),
    rate=RATE,
    broker_port=None,
    gateway=None,
    unit_id="amb-01",
    config=None,
):
    """Returns (unit, link) after the unit drove the whole drive and shut down. Without
    `broker_port` a Mosquitto of its own; `gateway`, a started GatewayProcess on that
    broker (the unit is registered with it), confirms the presses; without one, none is."""
    workdir = Path(workdir)
    with ExitStack() as stack:
        if broker_port is None:
            broker = Mosquitto(workdir / "broker").start()
            stack.callback(broker.stop)
            broker_port = broker.port
        link = Link(broker_port).start()
        stack.callback(link.stop)
        if gateway is not None:
            gateway.register(unit_id, kind="ambulance")
        # replayed faster than real time, so GNSS time runs ahead of the wall clock: the
        # drive starts that far in the past and ends now (a gateway refuses presses from
        # the future)
        samples = city_drive(seed=7, duration_s=duration_s, start_t=time.time() - duration_s)
        unit = VirtualUnit(
            unit_id,
            workdir / "flash",
            workdir / "sim",
            ("127.0.0.1", link.port),
            heap=heap,
            seed=7,
            config=config,
        )
        unit.replay(samples, rate).start()
        stack.callback(unit.stop, clean=False)
        gap = duration_s / rate / (len(presses) + 1)
        for key in presses:
            if unit.replay_done.wait(gap):
                break
            unit.press(key)
        unit.replay_done.wait(duration_s / rate + 30)
        time.sleep(1)
        if gateway is not None:  # every press stored before the unit goes
            wait_until(lambda: len(stored(gateway, unit_id)) >= len(presses), 30, 0.2, "every press")
        unit.stop(clean=True)
    return unit, link


def stored(gateway, unit_id):
    """The presses the gateway stored for a unit, oldest first: [(boot, seq, key)]."""
    rows = gateway.get(f"/api/v1/units/{unit_id}/statuses?limit=1000")[1]
    return sorted((r["boot"], r["seq"], r["key"]) for r in rows if r["source"] == "crew")


def memory_trouble(unit):
    """Console lines that tell of a MemoryError, a recovery from one or a reset."""
    marks = ("MemoryError", "memory: ", "unit: reset", "Traceback")
    return [line for line in unit.lines if any(m in line for m in marks)]


def heap_stats(unit):
    """The unit's last stats line, as numbers: peak (sampled at quiet points, after a
    collection), code (in use at start: code and start-up objects), high (the high-water
    mark, sampled at quiet points and with each message framed), free, largest (free
    block), recovered (MemoryErrors recovered from). RuntimeError if the unit met any
    memory trouble or never said."""
    found = [m.groups() for line in unit.lines if (m := STATS.search(line))]
    trouble = memory_trouble(unit)
    if trouble or not found:
        raise RuntimeError("the unit did not drive cleanly: " + "\n".join((trouble or unit.lines)[-20:]))
    names = ("peak", "code", "high", "free", "largest", "recovered")
    return dict(zip(names, map(int, found[-1]), strict=True))


def heap_peak(unit):
    """(peak live heap, of which code and start-up objects) from the unit's last stats."""
    st = heap_stats(unit)
    return st["peak"], st["code"]


def live_report_bytes(link):
    sizes = {
        p.size
        for p in link.packets
        if p.kind == "PUBLISH" and p.direction == "up" and p.topic and p.topic.endswith("/pos")
    }
    return min(sizes), max(sizes)


def figures():
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker").start()
        gateway = GatewayProcess(Path(tmp) / "gateway", broker.port).start()
        try:
            unit, link = run_drive(tmp, broker_port=broker.port, gateway=gateway)
        finally:
            gateway.stop()
            broker.stop()
    smallest, largest = live_report_bytes(link)
    st = heap_stats(unit)
    return [
        ("firmware.heap_peak_bytes", st["peak"], "bytes"),
        ("firmware.heap_high_bytes", st["high"], "bytes"),
        ("firmware.heap_start_bytes", st["code"], "bytes"),
        ("firmware.heap_peak_data_bytes", st["peak"] - st["code"], "bytes"),
        ("firmware.live_report_bytes", largest, "bytes"),
    ]
