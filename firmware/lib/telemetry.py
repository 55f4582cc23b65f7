# The unit's figures for a technician: the `tele` message (docs/protocol.md) and the
# stats line of the console. The unit loads this module for each of them and gives it
# back (heap.borrow): telemetry goes every few minutes, and its code should not hold the
# heap in between (docs/firmware-memory.md).
import gc
import os
import time

import wire


def message(u):
    """Link, modem, memory and flash of the unit `u`, the `tele` message's payload."""
    now = u.clock.now()
    h = u.heap
    fields = dict(
        t=now,
        sent=now,
        up=time.ticks_diff(time.ticks_ms(), u.started_ms) // 1000,
        heap_free=gc.mem_free(),
        heap_peak=h.peak,
        heap_start=h.start,
        heap_high=h.high,
        heap_largest=h.largest_free(),
        heap_recovered=h.failures,
        waiting=u.outbox.waiting,
        unjournaled=len(u.outbox.unjournaled),
        write_errors=u.outbox.write_errors,
    )
    try:
        st = os.statvfs(u.storage)
        fields["flash_free"] = st[0] * st[3]
    except OSError:
        pass
    # fault counters go only when not 0: a healthy unit's telemetry stays short
    c = u.client
    for name, n in (
        ("mqtt_resent", c.resent if c else 0),
        ("mqtt_discards", c.discards if c else 0),
        ("mqtt_oversize", c.oversize if c else 0),
        ("mqtt_protocol_errors", c.protocol_errors if c else 0),
        ("io_errors", u.board.io_errors),
    ):
        if n:
            fields[name] = n
    volts = u.board.supply_volts()
    if volts is not None:
        fields["supply_v"] = volts
    if u.cell is not None:
        fields.update(u.cell.info())
    return wire.encode_json("tele", u.boot, u.seq_apart(), **fields)


def stats(u):
    """The stats line: the heap's figures, the reports sent, the GNSS decoder's and the
    fix filter's counts (bench/unit.py reads it)."""
    h = u.heap
    return (
        "stats: heap peak %d code %d high %d free %d largest %d recovered %d; reports %d;"
        " nmea ok %d errors %s; rejected %s"
        % (
            h.peak,
            h.start,
            h.high,
            gc.mem_free(),
            h.largest_free(),
            h.failures,
            u.reports,
            u.gnss.sentences,
            u.gnss.errors,
            u.fixes.rejected,
        )
    )
