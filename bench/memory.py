"""The firmware's heap under stress, in the unix port under -X heapsize=96K, through a
real Mosquitto (docs/firmware-memory.md):

(a) the reference drive with no gateway, so that no press is ever confirmed and every
    one is sent again (every 5 s here), RUNS times in a row: not one MemoryError;
(b) a 12-hour shift compressed (GNSS replayed at SHIFT_RATE times real time, telemetry
    as often in shift time as in a real one): two missions an hour, 50 presses, outages
    of the gateway (stopped) and of the link (silent, cut), the heap sampled each
    second: its growth per hour of shift, the slope of a least-squares line through the
    samples;
(c) the heap filled on purpose (the virtual board's fault hook takes every block of it):
    held for a moment, the unit recovers and keeps every press (how many allocations it
    recovered from is the figure); held for good, it resets, and says "memory".

tests/test_memory.py runs shorter forms of each."""

import statistics
import tempfile
import time
from pathlib import Path

from bench.unit import heap_stats, memory_trouble, run_drive, stored
from provisioning.mosquitto import Mosquitto
from simulators.gateway_process import GatewayProcess, wait_until
from simulators.link import Link
from simulators.route import city_drive
from simulators.vunit import VirtualUnit

RUNS = 10
DRIVE_RATE = 40.0  # drive (a): fixes per wall second
NO_GATEWAY = {"confirm_after_s": 5}  # drive (a): every press goes again every 5 s
SHIFT_RATE = 120.0  # soak (b): the shift's seconds per wall second
FAST_TELE = {"telemetry_s": 2}


def drives_without_gateway(workdir, runs=RUNS, duration_s=1800, broker_port=None, unit_id="amb-01"):
    """Drive (a), `runs` times: the heap stats of each (RuntimeError on any trouble)."""
    out = []
    for i in range(runs):
        unit, _ = run_drive(
            Path(workdir) / f"run{i}",
            duration_s=duration_s,
            rate=DRIVE_RATE,
            broker_port=broker_port,
            unit_id=unit_id,
            config=NO_GATEWAY,
        )
        resent = [line for line in unit.lines if "not confirmed by the gateway: sent again" in line]
        if not resent:
            raise RuntimeError("no press was sent again: drive (a) proves nothing")
        out.append(heap_stats(unit))
    return out


# soak (b)


def shift_plan(hours=12, presses=50):
    """What happens in the shift, by shift second: ("press", key), ("gateway", up),
    ("silent", on), ("cut", None). Two missions an hour (3 en route, 4 on scene, then 9
    returning for what is left of `presses`). In every hour but the first and the last
    (so those two compare like with like) the gateway stops for 20 minutes, and the link
    either goes silent for half an hour (a dead zone: nothing gets through, nobody is
    told) or is cut."""
    events = []
    missions = hours * 2
    for m in range(missions):
        start = m * 1800 + 300
        keys = [3, 4, 9][: 2 + (m < presses - 2 * missions)]
        for i, key in enumerate(keys):
            events.append((start + i * 600, "press", key))
    for h in range(1, hours - 1):
        at = h * 3600
        events += [(at + 300, "gateway", False), (at + 1500, "gateway", True)]
        if h % 2:
            events += [(at + 1800, "silent", True), (at + 3600 - 60, "silent", False)]
        else:
            events.append((at + 2400, "cut", None))
    return sorted(events, key=lambda e: e[0])


def shift(workdir, hours=12, presses=50, rate=SHIFT_RATE, broker_port=None, unit_id="amb-01", heap="96K"):
    """Soak (b): returns {"samples": [(shift hours, heap bytes)], "pressed": [...],
    "stored": [...], "unit": VirtualUnit}. RuntimeError on any memory trouble."""
    workdir = Path(workdir)
    own = None
    if broker_port is None:
        own = Mosquitto(workdir / "broker").start()
        broker_port = own.port
    link = Link(broker_port).start()
    gateway = GatewayProcess(workdir / "gateway", broker_port).start()
    gateway.register(unit_id, kind="ambulance")
    samples = []
    start = [None]

    def on_line(line):
        if line.startswith("heap: "):
            if start[0] is None:
                start[0] = time.monotonic() - 1.0  # the first sample: a second after start
            samples.append(((time.monotonic() - start[0]) * rate / 3600, int(line.split()[1])))

    # GNSS time runs `rate` times faster than the wall clock: the shift starts that far in
    # the past and ends now, as a gateway refuses presses from the future
    drive = city_drive(seed=11, duration_s=int(hours * 3600) + 60, start_t=time.time() - hours * 3600)
    unit = VirtualUnit(
        unit_id,
        workdir / "flash",
        workdir / "sim",
        ("127.0.0.1", link.port),
        heap=heap,
        seed=11,
        # the heap sampled each second; telemetry as often in shift time as in a real
        # shift (every 300 s), not 300 wall seconds, which would be hours of the shift
        config={"heap_log_s": 1, "telemetry_s": max(1, round(300 / rate))},
    )
    unit.on_line = on_line
    pressed = []
    try:
        unit.replay(drive, rate).start()
        t0 = time.monotonic()
        for at, what, arg in shift_plan(hours, presses):
            time.sleep(max(0.0, t0 + at / rate - time.monotonic()))
            if what == "press":
                unit.press(arg)
                pressed.append(arg)
            elif what == "gateway":
                gateway.start() if arg else gateway.stop()
            elif what == "silent":
                link.silent.set() if arg else link.silent.clear()
            else:
                link.cut()
        unit.replay_done.wait(hours * 3600 / rate + 60)
        got = wait_stored(gateway, unit_id, len(pressed), 90)
        unit.stop(clean=True)
    finally:
        unit.stop(clean=False)
        gateway.stop()
        link.stop()
        if own is not None:
            own.stop()
    trouble = memory_trouble(unit)
    if trouble:
        raise RuntimeError("memory trouble in the shift: " + "\n".join(trouble[-20:]))
    return {"samples": samples, "pressed": pressed, "stored": got, "unit": unit}


def growth_per_hour(samples):
    """The least-squares slope of the heap samples, bytes per hour of shift."""
    xs = [x for x, _ in samples]
    ys = [y for _, y in samples]
    return statistics.linear_regression(xs, ys).slope


def hour_medians(samples, hours):
    """(median of the first hour's samples, median of the last hour's)."""
    first = [y for x, y in samples if x < 1]
    last = [y for x, y in samples if hours - 1 <= x < hours]
    return statistics.median(first), statistics.median(last)


# heap filled (c)


def fill_heap(workdir, hold_ms, broker_port, gateway, unit_id="amb-01", heap="96K", config=None):
    """The heap filled while the crew presses: held hold_ms (0: for good, and the unit
    has to reset). Returns (unit, the keys pressed, the presses the gateway stored) once
    the unit told of its recovery (in its telemetry) or of its reset (in its birth)."""
    gateway.register(unit_id, kind="ambulance")
    unit = VirtualUnit(
        unit_id,
        Path(workdir) / "flash",
        Path(workdir) / "sim",
        ("127.0.0.1", broker_port),
        heap=heap,
        seed=3,
        config=dict(FAST_TELE, **(config or {})),
    ).start()
    try:
        wait_until(lambda: gateway.unit(unit_id)["link"] == "online", 30, 0.2, "the unit online")
        unit.press(3)
        wait_until(lambda: stored(gateway, unit_id), 30, 0.2, "the first press")
        unit.fill_heap(hold_ms)
        time.sleep(0.3)
        for key in (4, 7, 8):  # pressed while the heap is full
            unit.press(key)
            time.sleep(0.3)
        got = wait_stored(gateway, unit_id, 4, 90)
        if hold_ms:  # the unit lives on and tells what it went through
            wait_until(lambda: telemetry(gateway, unit_id).get("heap_recovered"), 60, 0.5, "a recovery told")
        else:  # it had to start again, and says why
            wait_until(lambda: gateway.unit(unit_id)["device"]["boot"] == 1, 60, 0.5, "the birth after it")
    finally:
        unit.stop(clean=False)
    return unit, [3, 4, 7, 8], got


def wait_stored(gateway, unit_id, n, timeout):
    """The presses stored for the unit, once there are n of them."""
    wait_until(lambda: len(stored(gateway, unit_id)) >= n, timeout, 0.5, f"{n} presses stored")
    return stored(gateway, unit_id)


def telemetry(gateway, unit_id):
    device = gateway.unit(unit_id).get("device") or {}
    return device.get("telemetry") or {}


def recoveries(workdir):
    """(c) with the heap held 3 s: how many allocations the unit recovered from, as its
    telemetry tells; RuntimeError when it reset or lost a press."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        broker = Mosquitto(Path(tmp) / "broker").start()
        gateway = GatewayProcess(Path(tmp) / "gateway", broker.port).start()
        try:
            unit, pressed, got = fill_heap(tmp, 3000, broker.port, gateway)
            device = gateway.unit("amb-01")["device"]
        finally:
            gateway.stop()
            broker.stop()
    if [k for _, _, k in got] != pressed or device["reset"] != "power_on" or device["boot"] != 0:
        raise RuntimeError(f"the fill cost a press or a reset: {got} {device}")
    return device["telemetry"]["heap_recovered"]


def figures():
    with tempfile.TemporaryDirectory() as tmp:
        runs = drives_without_gateway(tmp)
        soak = shift(Path(tmp) / "shift")
        recovered = recoveries(tmp)
    if [k for _, _, k in soak["stored"]] != soak["pressed"]:
        raise RuntimeError(f"the shift lost or reordered presses: {soak['pressed']} {soak['stored']}")
    return [
        ("firmware.heap_peak_no_gateway_bytes", max(r["peak"] for r in runs), "bytes"),
        ("firmware.heap_high_no_gateway_bytes", max(r["high"] for r in runs), "bytes"),
        ("firmware.heap_growth_bytes_per_h", round(growth_per_hour(soak["samples"]), 1), "bytes/h"),
        ("firmware.memory_recoveries", recovered, "count"),
    ]
