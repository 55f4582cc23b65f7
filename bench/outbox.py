"""The outbox after an outage, on real parts: a virtual unit builds a backlog of 2,000
positions while its link is silent, then the link comes back.

- outbox.drain_records_per_s: backlog records delivered per second (PUBLISH payloads on
  the wire, first backlog message to last);
- firmware.press_delay_during_drain_ms: the p99 extra delay from a key press to its
  status on the wire while the backlog drains, over the median with an idle link,
  measured in the same run.
"""

import statistics
import tempfile
import time
from pathlib import Path

from provisioning.mosquitto import Mosquitto
from simulators.gateway_process import wait_until
from simulators.link import Link
from simulators.route import city_drive
from simulators.vunit import VirtualUnit

BACKLOG = 2000
EVERY_FIX = {
    "report_max_period_s": 1,
    "report_min_period_s": 1,
    "report_heartbeat_s": 1,
    "keepalive_s": 4,
    "report_stop_s": 100000,
}


def positions_sent(link, since):
    return [
        p
        for p in link.packets
        if p.t >= since and p.direction == "up" and p.kind == "PUBLISH" and p.topic.endswith("/pos")
    ]


def status_sent_after(link, t, start):
    """When the first status after `t` crossed the link, looking from packet `start` on
    (the packet list is long and grows: a full scan per poll would starve the link)."""
    packets = link.packets
    for i in range(start[0], len(packets)):
        p = packets[i]
        if p.t >= t and p.direction == "up" and p.kind == "PUBLISH" and p.topic.endswith("/status"):
            start[0] = i + 1
            return p.t
    start[0] = max(start[0], len(packets) - 50)
    return None


def press_delays(unit, link, n, gap):
    """Press n keys `gap` seconds apart; the delay of each from press to the wire."""
    delays, start = [], [len(link.packets)]
    for i in range(n):
        t = time.time() + 0.05  # the press counts once debounced (50 ms)
        unit.press((3, 4)[i % 2], hold_s=0.15)  # a crew's press (a 60 ms tap can miss a poll)
        sent = wait_until(lambda t=t: status_sent_after(link, t, start), 10, 0.01, "the status on the wire")
        delays.append((sent - t) * 1000)
        time.sleep(gap)
    return delays


def measure(work, backlog=BACKLOG, rate=100.0):
    broker = Mosquitto(Path(work) / "broker").start()
    link = Link(broker.port).start()
    samples = city_drive(seed=3, duration_s=backlog * 4, start_t=time.time())  # outlasts the run
    unit = VirtualUnit(
        "amb-01", Path(work) / "flash", Path(work) / "sim", ("127.0.0.1", link.port), seed=3, config=EVERY_FIX
    )
    unit.replay(samples, rate).start()
    try:
        wait_until(lambda: positions_sent(link, 0), 20, 0.05, "the unit online")
        idle = press_delays(unit, link, 15, 0.2)
        link.silent.set()  # every fix is a report: `rate` reports a second pile up
        time.sleep(backlog / rate + 2)
        link.cut()  # the connections held in the dead zone go first ...
        healed = time.time()
        link.silent.clear()  # ... then the unit reconnects and drains
        first = wait_until(
            lambda: _records(positions_sent(link, healed)) >= 100 and positions_sent(link, healed),
            60,
            0.01,
            "the drain under way",
        )
        drain_delays = press_delays(unit, link, 15, 0.1)
        wait_until(lambda: _records(positions_sent(link, healed)) >= backlog, 120, 0.05, "the whole backlog")
        sent = positions_sent(link, healed)
        records = _records(sent)
        rate_out = records / (sent[-1].t - first[0].t)
    finally:
        unit.kill()
        link.stop()
        broker.stop()
    ranked = sorted(drain_delays)
    p99 = ranked[min(len(ranked) - 1, int(0.99 * len(ranked)))]
    return rate_out, p99 - statistics.median(idle), records


def _records(packets):
    return sum(p.payload // 29 for p in packets)


def figures():
    with tempfile.TemporaryDirectory() as tmp:
        rate, extra, records = measure(tmp)
    if records < BACKLOG:
        raise RuntimeError(f"only {records} backlog records drained, {BACKLOG} wanted")
    return [
        ("outbox.drain_records_per_s", round(rate), "records/s"),
        ("firmware.press_delay_during_drain_ms", round(extra, 1), "ms"),
    ]
