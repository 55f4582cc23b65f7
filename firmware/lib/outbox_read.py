# Reading the outbox's journal back (outbox.py): at start, the acknowledgements, the
# segments and what waits in them; later, the presses that wait on flash only, read back
# into RAM as the ones there are confirmed. Loaded at start and then only when presses
# wait on flash only (more than `status_ram`): main.py lets go of it after the boot.
import os
import struct

from outbox import ACKED, RANGE_FMT, STATUS, STATUS_FMT, Segment, _frames, _ident


def journal(ob):
    """Read the journal: waiting statuses, acknowledgements, segment counts."""
    try:
        os.mkdir(ob.folder)
    except OSError:
        pass
    _load_stats(ob)
    numbers = sorted(int(n[:8]) for n in os.listdir(ob.folder) if n.endswith(".log"))
    for number in numbers:
        ob.segments.append(_scan_acks(ob, number))
    for seg in ob.segments:
        _scan_records(ob, seg)
    try:
        ob._new_segment((numbers[-1] if numbers else 0) + 1)
    except OSError as e:  # a full flash: the first write makes room, or says why
        ob.log("outbox: no new segment at start (%s)" % e)
    ob._collect()
    refill(ob)


def _load_stats(ob):
    try:
        with open(ob.folder + "/stats") as f:
            pos, st = f.read().split()
            ob.dropped["position"], ob.dropped["status"] = int(pos), int(st)
    except (OSError, ValueError):
        pass


def _scan_acks(ob, number):
    seg = Segment(number, os.stat(ob.path(number))[6])
    for kind, body in _frames(ob.path(number)):
        if kind == ACKED:
            for i in range(0, len(body), 10):
                ob.acked.add(*struct.unpack_from(RANGE_FMT, body, i))
    return seg


def _scan_records(ob, seg):
    for kind, body in _frames(ob.path(seg.number)):
        if kind is None:
            ob.torn += 1
            ob.log("outbox: torn record in segment %d skipped" % seg.number)
        elif kind != ACKED:
            boot, seq = _ident(kind, body)
            seg.note(boot, seq)
            if not ob.acked.has(boot, seq):
                seg.waiting += 1
                if kind == STATUS:
                    seg.presses += 1
                    ob.on_flash += 1  # into RAM, the oldest first, by refill()


def refill(ob):
    """Read presses that wait on flash only back into RAM: the oldest waiting ones, in
    order, with the newest of this boot kept last and those the flash could not take
    kept too. Reads the segments that hold presses."""
    if ob.on_flash <= 0:
        return
    last = ob.statuses[-1] if ob.statuses else None
    newest = last if last is not None and (last[0], last[1]) == ob._newest else None
    room = ob.status_ram - (newest is not None)
    oldest, total = [], 0
    for seg in ob.segments:
        if seg.presses <= 0:
            continue
        for kind, body in _frames(ob.path(seg.number)):
            if kind != STATUS:
                continue
            boot, seq = _ident(kind, body)
            if ob.acked.has(boot, seq) or _same(newest, boot, seq):
                continue
            if any(_same(r, boot, seq) for r in oldest):  # journaled twice
                continue
            total += 1
            if len(oldest) < room:
                oldest.append(struct.unpack(STATUS_FMT, body))
    taken = len(oldest)
    for rec in ob.unjournaled:
        if rec not in oldest and rec is not newest:
            oldest.append(rec)
    if len(oldest) > taken:  # read in journal order; those in RAM only go in their place
        oldest.sort(key=_order)
    if newest is not None:
        oldest.append(newest)
    sent = [None] * len(oldest)
    for i, rec in enumerate(oldest):  # when each went out, for those already in RAM
        j = ob._held(rec[0], rec[1])
        if j:
            sent[i] = ob.sent[j - 1]
    ob.statuses, ob.sent = oldest, sent
    ob.on_flash = total - taken


def _order(rec):
    return rec[0], rec[1]


def _same(rec, boot, seq):
    return rec is not None and rec[1] == seq and rec[0] == boot
