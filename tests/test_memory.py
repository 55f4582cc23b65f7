"""The firmware on a city drive (replayed faster than real time) under a 96 KB heap:
no MemoryError, every report through a real broker, position reports within 64 bytes on
the wire. `make bench` runs the full 30-minute drive and prints the figures."""

from bench.unit import heap_peak, live_report_bytes, run_drive


def test_a_drive_under_a_96k_heap(tmp_path):
    unit, link = run_drive(tmp_path, duration_s=300, heap="96K", presses=(3, 4, 9))
    peak, code = heap_peak(unit)  # raises if the unit died or ran out of memory
    print(f"heap peak {peak} B, of which code and start-up objects {code} B")
    assert 0 < code < peak < 96 * 1024
    assert not [line for line in unit.lines if "Traceback" in line], unit.lines[-20:]
    smallest, largest = live_report_bytes(link)
    assert largest <= 64
    published = [p for p in link.packets if p.kind == "PUBLISH" and p.direction == "up"]
    published = [p for p in published if not p.topic.endswith("/tele")]  # telemetry: QoS 0
    acks = [p for p in link.packets if p.kind == "PUBACK" and p.direction == "down"]
    statuses = [p for p in published if p.topic.endswith("/status")]
    assert len(statuses) == 3 and len(acks) == len(published)  # every QoS 1 message acknowledged
