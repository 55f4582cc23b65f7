# Making room in the outbox (outbox.py), loaded only when it is needed: past its bound,
# positions are thinned (every other one dropped, so the route keeps its shape); on a full
# flash (ENOSPC), acknowledged records go first, then the positions of the oldest segment.
# Presses are never dropped here. Every drop is counted and kept in ob/stats.
import os
from array import array

from outbox import ACKED, POSITION, _frame, _frames, _ident


def make_room(ob):
    """Past max_bytes: thin the oldest segments that still have positions."""
    ob.flush()
    for seg in ob.segments[:-1]:  # the oldest segment that still has positions
        try:
            if ob.size() <= ob.max_bytes or thin(ob, seg):
                return
        except OSError:  # a full flash: _append makes room its own way
            _remove(ob.path(seg.number) + ".tmp")
            return


def free_space(ob):
    """The flash is full. Free room, least harm first: acknowledged records; then the
    positions of the oldest segment that has any (the whole segment when it holds no
    waiting press). Presses are never dropped here. True if room was made."""
    before = ob.size()
    if ob._acks:
        ob.flush()
    if ob.size() < before:
        return True
    for seg in ob.segments:
        if seg.number == ob._mine:
            break
        if seg.size and seg.presses <= 0:
            ob.segments.remove(seg)
            os.remove(ob.path(seg.number))
            ob._cursor = None
            ob.dropped["position"] += max(seg.waiting, 0)
            save_stats(ob)
            ob.log("outbox: flash full: %d positions of segment %d dropped" % (seg.waiting, seg.number))
            return True
        try:
            n = thin(ob, seg, keep_every=0)
            if n:
                ob.log("outbox: flash full: %d positions of segment %d dropped" % (n, seg.number))
                return True
        except OSError:  # not even room for the presses' copy: try the next one
            _remove(ob.path(seg.number) + ".tmp")
    return False


def thin(ob, seg, keep_every=2):
    """Rewrite a segment keeping every `keep_every`-th waiting position (0: none);
    returns how many waiting positions it had (0: nothing to thin, nothing written).
    Read twice and written as it is read, so the segment is never held in RAM; the
    positions dropped are counted acknowledged, so the acknowledged ranges close over
    them (one range a stretch, not one a dropped position)."""
    path = ob.path(seg.number)
    n = sum(1 for kind, body in _frames(path) if kind == POSITION and not ob.acked.has(*_ident(kind, body)))
    if n == 0:
        return 0
    dropped = array("I")  # boot, seq of each position dropped
    kept = size = i = 0
    with open(path + ".tmp", "wb") as f:
        for kind, body in _frames(path):
            if kind is None or kind == ACKED:
                continue
            boot, seq = _ident(kind, body)
            if ob.acked.has(boot, seq):
                continue
            if kind == POSITION:
                i += 1
                if not keep_every or i % keep_every:
                    dropped.append(boot)
                    dropped.append(seq)
                    continue
            frame = _frame(kind, body)
            f.write(frame)
            kept += 1
            size += len(frame)
    os.rename(path + ".tmp", path)
    for j in range(0, len(dropped), 2):
        ob.skip(dropped[j], dropped[j + 1])
    ob.dropped["position"] += len(dropped) // 2
    seg.size = size
    seg.waiting = kept
    save_stats(ob)
    ob.log("outbox: full, thinned segment %d: %d records kept" % (seg.number, kept))
    return n


def save_stats(ob):
    """The drop counts, kept across reboots (read back by outbox_read.py)."""
    tmp = ob.folder + "/stats.tmp"
    try:
        with open(tmp, "w") as f:
            f.write("%d %d" % (ob.dropped["position"], ob.dropped["status"]))
        os.rename(tmp, ob.folder + "/stats")
    except OSError:
        pass  # a full flash: the counts still go out in memory, and are saved later


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
