# The outbox on a flash folder: durable, framed, bounded, torn records skipped.
import os

from outbox import Outbox, sending, status_payload
import wire
import wire_decode

T = 1795862700


def pos(seq, t=None, boot=1):
    t = T + seq if t is None else t
    return wire.encode_pos(boot, seq, t, -2.21 + seq * 1e-5, 113.92, 5.0, 90.0, 9, 0.9, 0)


def box(**kw):
    kw.setdefault("log", lambda m: None)
    return Outbox("ob", **kw).open()


def seqs(records):
    return [wire_decode.decode_pos(r)["records"][0]["seq"] for r in records]


def test_waiting_records_survive_a_reboot_and_acknowledged_ones_do_not():
    ob = box()
    ob.add_status(1, 1, 3, T, 250, -2.2, 113.9)
    ob.add_status(1, 2, 4, T + 60, 0)
    for seq in range(3, 10):
        ob.add_position(pos(seq))
    ob.acknowledge(1, [1, 3, 4])
    ob.close()
    ob = box()
    assert [s[1] for s in ob.statuses] == [2]
    assert seqs(ob.backlog(100)) == [5, 6, 7, 8, 9]
    assert ob.waiting == 6


def test_backlog_is_oldest_first_in_batches_and_skips_what_is_in_flight():
    ob = box()
    for seq in range(1, 40):
        ob.add_position(pos(seq))
    assert seqs(ob.backlog(8)) == list(range(1, 9))
    ob.rewind()
    assert seqs(ob.backlog(3, skip={(1, 1), (1, 2)})) == [3, 4, 5]
    assert seqs([ob.newest_fresh()]) == [39]


def test_a_torn_record_is_skipped_and_what_follows_is_read():
    ob = box()
    for seq in range(1, 6):
        ob.add_position(pos(seq))
    ob.close()
    name = "ob/" + sorted(os.listdir("ob"))[0]
    with open(name, "rb") as f:
        data = f.read()
    frame = len(data) // 5
    with open(name, "wb") as f:  # the third record torn, as by a power cut mid-write
        f.write(data[: 2 * frame] + data[2 * frame : 3 * frame - 9] + data[3 * frame :])
    ob = box()
    assert ob.torn == 1
    assert seqs(ob.backlog(10)) == [1, 2, 4, 5]


def test_a_torn_tail_after_a_power_cut():
    ob = box()
    ob.add_status(1, 1, 3, T, 0)
    ob.close()
    name = "ob/" + sorted(os.listdir("ob"))[0]
    with open(name, "ab") as f:
        f.write(b"\xa5S\x15\x00\x01")  # the start of a frame, then nothing
    ob = box()
    assert ob.torn == 1 and [s[1] for s in ob.statuses] == [1]
    ob.add_status(2, 1, 4, T + 5, 0)  # a new boot writes a new segment
    ob.close()
    assert [s[1] for s in box().statuses] == [1, 1]


def test_acknowledged_segments_are_deleted_oldest_first():
    ob = box()
    for seq in range(1, 600):  # several segments
        ob.add_position(pos(seq))
    full = len(os.listdir("ob"))
    assert full >= 3
    ob.acknowledge(1, list(range(1, 600)))
    ob.flush()
    assert len([n for n in os.listdir("ob") if n.endswith(".log")]) == 1 and ob.waiting == 0


def test_full_outbox_thins_positions_keeps_statuses_and_counts():
    ob = box(max_bytes=12000)
    ob.add_status(1, 0, 3, T, 0)
    for seq in range(1, 900):
        ob.add_position(pos(seq))
    assert ob.size() <= 12000 + 8192
    assert ob.dropped["position"] > 0 and ob.dropped["status"] == 0
    assert [s[1] for s in ob.statuses] == [0]
    oldest = seqs(ob.backlog(50))
    assert oldest == sorted(oldest) and ob.waiting < 900
    assert seqs([ob.newest_fresh()]) == [899]
    dropped = ob.dropped["position"]
    ob.close()
    again = box(max_bytes=12000)
    assert again.dropped["position"] == dropped and [s[1] for s in again.statuses] == [0]


def test_statuses_beyond_the_hard_cap_drop_the_oldest_and_count():
    ob = box(status_cap=5)
    for seq in range(8):
        ob.add_status(1, seq, 3, T + seq, 0)
    assert [s[1] for s in ob.statuses] == [3, 4, 5, 6, 7] and ob.dropped["status"] == 3


def test_payloads_as_they_go_out():
    rec = pos(7)
    out = sending(rec, T + 100)
    got = wire_decode.decode_pos(out)["records"][0]
    assert got["seq"] == 7 and got["sent"] == T + 100 and got["t"] == T + 7
    ob = box()
    st = ob.add_status(1, 9, 0, T, 120, -2.21, 113.92)
    _, _, msg = wire_decode.decode("siaga/amb-01/status", status_payload(st, T + 3))
    assert msg["key"] == 0 and msg["ms"] == 120 and msg["sent"] == T + 3 and abs(msg["lat"] + 2.21) < 1e-6


def test_the_backlog_reader_goes_on_where_it_stopped_and_rewinds():
    ob = box()
    for seq in range(1, 30):
        ob.add_position(pos(seq))
    first = seqs(ob.backlog(10))
    second = seqs(ob.backlog(10))
    assert first == list(range(1, 11)) and second == list(range(11, 21))
    ob.acknowledge(1, second)
    ob.rewind()  # the first batch was never acknowledged: it comes again
    assert seqs(ob.backlog(12)) == list(range(1, 11)) + [21, 22]


def _littlefs(blocks):
    """A flash of `blocks` 4 KB blocks with littlefs on it, as the virtual board has."""
    from boards import vflash

    return vflash.mount("flash.bin", blocks, "/data")


def test_a_full_flash_drops_positions_oldest_first_and_keeps_every_press():
    where = _littlefs(10)  # 40 KB: far less than the outbox's own bound
    ob = Outbox(where + "/ob", max_bytes=256 * 1024, log=lambda m: None).open()
    presses = []
    for seq in range(1, 3001):
        if seq % 100 == 50:
            ob.add_status(1, seq, 3, T + seq, 0)
            presses.append(seq)
        else:
            ob.add_position(pos(seq))
    assert ob.write_errors > 0, "the flash never filled: the test proves nothing"
    assert ob.dropped["position"] > 0 and ob.dropped["status"] == 0
    assert not ob.unjournaled
    ob.close()
    again = Outbox(where + "/ob", max_bytes=256 * 1024, log=lambda m: None, status_ram=100).open()  # a reboot
    assert [s[1] for s in again.statuses] == presses
    first = last = None
    n = 0
    while True:
        batch = seqs(again.backlog(100))
        if not batch or batch[0] == first:  # read to the end: the reader starts over
            break
        first = batch[0] if first is None else first
        last, n = batch[-1], n + len(batch)
        if len(batch) < 100:
            break
    assert last == 3000  # the newest position is there ...
    assert first > 100  # ... the oldest went first
    assert n + again.dropped["position"] == 3000 - len(presses)


def test_a_press_on_a_flash_full_of_other_data_waits_in_memory_then_reaches_flash():
    where = _littlefs(16)
    ob = Outbox(where + "/ob", log=lambda m: None).open()
    ob.add_position(pos(1))
    f = open(where + "/other", "wb")
    try:
        while True:
            f.write(b"x" * 512)
            f.flush()
    except OSError as e:
        assert e.args[0] == 28  # ENOSPC, as on the board
    try:
        f.close()
    except OSError:
        pass
    for seq in range(2, 130):  # more than the segment's block still holds
        ob.add_status(1, seq, 3 + seq % 2, T + seq, 0)
    assert ob.unjournaled, "the flash took every press: not full"
    for rec in ob.unjournaled:  # still sent from memory: held in RAM past its bound
        assert rec in ob.statuses
    assert len(ob.statuses) + ob.on_flash == 128 and len(ob.statuses) > ob.status_ram
    os.remove(where + "/other")
    ob.add_position(pos(130))
    assert not ob.unjournaled
    ob.close()
    del ob
    again = Outbox(where + "/ob", log=lambda m: None).open()
    assert _drain(again) == list(range(2, 130))


def _seqs_are(statuses, first, end):
    return len(statuses) == end - first and all(s[1] == first + i for i, s in enumerate(statuses))


def _drain(ob):
    """Confirm the waiting presses oldest first, as the gateway would: their seqs, in
    that order (the ones on flash only read back as those in RAM leave)."""
    order = []
    while ob.statuses or ob.on_flash:
        if ob.on_flash and len(ob.statuses) < ob.status_ram:
            ob.refill()
        rec = ob.statuses[0]
        order.append(rec[1])
        ob.confirm(rec[0], rec[1])
    return order


def test_presses_past_the_ram_bound_wait_on_flash_and_come_back_in_order():
    ob = box(status_ram=3)
    for seq in range(10):
        ob.add_status(1, seq, 3, T + seq, 0)
        ob.add_position(pos(100 + seq))
    assert [s[1] for s in ob.statuses] == [0, 1, 9]  # the oldest, and the newest
    assert ob.on_flash == 7 and len(ob.sent) == 3
    ob.confirm(1, 9)  # the newest goes first, and is confirmed
    ob.confirm(1, 0)
    ob.refill()
    assert [s[1] for s in ob.statuses] == [1, 2, 3] and ob.on_flash == 5
    ob.add_status(1, 10, 4, T + 10, 0)  # a new press: the newest stays in RAM
    assert [s[1] for s in ob.statuses] == [1, 2, 10] and ob.on_flash == 6
    assert _drain(ob) == [1, 2, 3, 4, 5, 6, 7, 8, 10]
    assert ob.waiting == 10  # positions only: every press left


def test_after_a_reboot_the_oldest_presses_are_in_ram_the_rest_on_flash():
    ob = box(status_ram=4)
    for seq in range(12):
        ob.add_status(1, seq, 3, T + seq, 0)
    ob.confirm(1, 11)
    ob.close()
    again = box(status_ram=4)
    assert [s[1] for s in again.statuses] == [0, 1, 2, 3] and again.on_flash == 7
    assert _drain(again) == list(range(11))


def test_the_hard_cap_counts_the_presses_on_flash_too():
    ob = box(status_ram=2, status_cap=5)
    for seq in range(8):
        ob.add_status(1, seq, 3, T + seq, 0)
    assert ob.dropped["status"] == 3
    assert len(ob.statuses) + ob.on_flash == 5
    assert _drain(ob) == [3, 4, 5, 6, 7]


def test_a_press_tried_again_after_a_memory_error_is_kept_once():
    from outbox import status_record

    ob = box(status_ram=4)
    rec = status_record(1, 5, 3, T, 0)
    ob.add_press(rec)
    ob.add_press(rec)  # the unit's retry after a MemoryError halfway through the first
    assert [s[1] for s in ob.statuses] == [5] and not ob.unjournaled
    ob.close()
    assert [s[1] for s in box().statuses] == [5]


def test_shed_lets_go_of_fresh_positions_and_keeps_every_press():
    ob = box(status_ram=8)
    for seq in range(5):
        ob.add_status(1, seq, 3, T + seq, 0)
        ob.add_position(pos(100 + seq))
    ob.shed()  # out of heap
    assert not ob.fresh and ob.newest_fresh() is None
    assert seqs(ob.backlog(10)) == [100, 101, 102, 103, 104]  # on flash, still to send
    assert _drain(ob) == [0, 1, 2, 3, 4]


def test_acknowledged_ranges_stay_whole_over_seqs_never_journaled_and_dropped_positions():
    ob = box(max_bytes=12000)
    for seq in range(900):
        if seq % 10 == 9:
            ob.skip(1, seq)  # a telemetry message, a birth: a seq the outbox never holds
        else:
            ob.add_position(pos(seq))
    assert ob.dropped["position"] > 0  # thinned: every other waiting position dropped
    while True:
        batch = ob.backlog(50)
        if not batch:
            break
        for boot, seq in [wire.ident(r) for r in batch]:
            ob.acknowledge(boot, [seq])
    assert ob.waiting == 0
    assert ob.acked.ranges[1] == [[0, 899]]  # one range, not one per gap
