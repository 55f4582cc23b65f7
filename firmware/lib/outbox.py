# The unit's outbox: every status press and position goes to a journal on flash before
# it is sent, and leaves only when it is known delivered: a position when the broker has
# acknowledged it (PUBACK), a press when the gateway has stored it (its `ack` downlink;
# a press not confirmed in time is sent again). Power cuts, reboots and outages lose
# nothing that reached the journal.
#
# On flash: a folder of segment files, ob/00000001.log, ob/00000002.log, ... Each boot
# appends to a segment of its own (so a torn tail can only be at the end of an older
# segment), and a segment that grows past _SEGMENT_BYTES is closed for a new one. A
# segment is a sequence of frames:
#     0xA5, kind, body length, CRC-32 of (kind, length, body) little-endian, body
#     kind 'S' status  body >HIBIHii: boot, seq, key, t, ms, lat*1e7, lon*1e7 (_NO_POS: none)
#     kind 'P' position body: the 29-byte wire record (docs/protocol.md), `sent` set at send
#     kind 'A' acknowledged body: (boot u16, first seq u32, last seq u32) ranges
# A torn or corrupt frame (power cut mid-write) fails its CRC: it is skipped, counted in
# `torn`, never trusted, and reading resumes at the next good frame.
# Records are named by (boot, seq) for ever, so acknowledgements stay true when a
# segment is rewritten. A segment whose records are all acknowledged is deleted, oldest
# first (so no acknowledgement that a live segment needs is lost).
#
# Bounded: past `max_bytes` the oldest segment is rewritten (temp file, then rename:
# atomic on littlefs) with every other waiting position dropped (thinned, so the route
# keeps its shape), statuses kept; beyond `status_cap` waiting statuses the oldest status
# is dropped. Every drop is counted in `dropped` and kept in ob/stats; the unit reports
# it in its birth message. Flash wear: appends only; a rewrite touches one segment.
#
# Bounded in RAM too: whole press records are held for at most `status_ram` waiting
# presses (the oldest, and the newest, which goes out first); the others wait on flash
# only (`on_flash`) and are read back as the ones in RAM are confirmed. So a long gateway
# outage costs flash, not heap. Fresh positions: the newest `fresh_cap`.
#
# What a normal day does not use is loaded only when it is used (docs/firmware-memory.md):
# reading the journal back (outbox_read.py: at start, and the presses that wait on flash
# only) and making room (outbox_room.py: thinning, a full flash).
import binascii
import os
import struct

from micropython import const

import wire

# (a name that starts with _ and is a const() costs the heap nothing: no global, no qstr)
_MAGIC = const(0xA5)
_HEADER = const(7)
STATUS = ord("S")
POSITION = ord("P")
ACKED = ord("A")
STATUS_FMT = ">HIBIHii"
RANGE_FMT = ">HII"
_NO_POS = const(0x7FFFFFFF)
_SEGMENT_BYTES = const(8192)
_ENOSPC = const(28)


def _frame(kind, body):
    head = bytes((kind, len(body)))
    crc = binascii.crc32(body, binascii.crc32(head)) & 0xFFFFFFFF
    return bytes((_MAGIC,)) + head + struct.pack("<I", crc) + body


def _good(head, body):
    if len(head) < _HEADER or head[0] != _MAGIC or len(body) != head[2]:
        return False
    crc = binascii.crc32(body, binascii.crc32(head[1:3])) & 0xFFFFFFFF
    return struct.unpack_from("<I", head, 3)[0] == crc


def _frames(path, pos=0, where=None):
    """(kind, body) of each good frame in a segment file from offset `pos`, read a frame
    at a time (no large buffers). A bad stretch (a torn or corrupt frame) yields
    (None, offset) once and reading resumes at the next good frame. `where`, a list,
    gets the offset after each frame."""
    with open(path, "rb") as f:
        bad = False
        while True:
            f.seek(pos)
            head = f.read(_HEADER)
            if not head:
                return
            body = f.read(head[2]) if len(head) == _HEADER else b""
            if not _good(head, body):
                if not bad:
                    yield None, pos
                    bad = True
                pos += 1
                continue
            bad = False
            pos += _HEADER + len(body)
            if where is not None:
                where[0] = pos
            yield head[1], body


def _ident(kind, body):
    if kind == POSITION:
        return struct.unpack_from(">HI", body, 1)
    return struct.unpack_from(">HI", body, 0)


class Acked:
    """The acknowledged (boot, seq) as merged ranges per boot: small whatever the count."""

    def __init__(self):
        self.ranges = {}  # boot -> sorted [[lo, hi], ...]

    def has(self, boot, seq):
        for lo, hi in self.ranges.get(boot, ()):
            if lo <= seq <= hi:
                return True
        return False

    def add(self, boot, lo, hi):
        rs = self.ranges.setdefault(boot, [])
        if rs and rs[-1][0] <= lo <= rs[-1][1] + 1 and hi >= rs[-1][1]:
            rs[-1][1] = hi  # the common case: the next records in order, nothing allocated
            return
        rs.append([lo, hi])
        rs.sort()
        merged = [rs[0]]
        for r in rs[1:]:
            if r[0] <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], r[1])
            else:
                merged.append(r)
        self.ranges[boot] = merged


class Segment:
    def __init__(self, number, size=0):
        self.number = number
        self.size = size
        self.waiting = 0  # records not yet acknowledged
        self.presses = 0  # presses in it not yet confirmed (never less: a repeat may count twice)
        self.boots = {}  # boot -> [first seq, last seq] of its records

    def note(self, boot, seq):
        r = self.boots.get(boot)
        if r is None:
            self.boots[boot] = [seq, seq]
        else:
            r[0], r[1] = min(r[0], seq), max(r[1], seq)

    def holds(self, boot, seq):
        r = self.boots.get(boot)
        return r is not None and r[0] <= seq <= r[1]


class Outbox:
    max_bytes = 256 * 1024
    status_cap = 500
    status_ram = 8  # waiting presses held whole in RAM; the others wait on flash only
    fresh_cap = 4  # the newest positions held in RAM for sending at once
    ack_flush = 16  # acknowledgements buffered before they are written

    def __init__(self, folder="ob", max_bytes=None, status_cap=None, log=print, status_ram=None):
        self.folder = folder
        if max_bytes:
            self.max_bytes = max_bytes
        if status_cap:
            self.status_cap = status_cap
        if status_ram:
            self.status_ram = status_ram
        self.log = log
        self.acked = Acked()
        self.segments = []
        # waiting presses in RAM, oldest first, and the newest at the end:
        # (boot, seq, key, t, ms, lat, lon); `sent`: for each, the ticks it last went out
        # (None: not since the last rewind)
        self.statuses = []
        self.sent = []
        self.on_flash = 0  # waiting presses on flash only
        self._newest = None  # the newest press added in this boot
        self.fresh = []  # positions added since the sender last looked (newest last)
        self.dropped = {"position": 0, "status": 0}
        self.torn = 0
        self.write_errors = 0
        self.unjournaled = []  # statuses a full flash could not take yet, oldest first
        self._acks = []  # acknowledged, not yet written: (boot, seq)
        self._file = None
        self._mine = None  # the number of the segment this boot appends to
        self._cursor = None  # (segment index, offset) of the backlog reader

    def path(self, number):
        return "%s/%08d.log" % (self.folder, number)

    def open(self):
        """Read the journal: waiting statuses, acknowledgements, segment counts."""
        import outbox_read

        outbox_read.journal(self)
        return self

    def refill(self):
        """Presses that wait on flash only back into RAM, the oldest first."""
        if self.on_flash > 0:
            import outbox_read

            outbox_read.refill(self)

    def _segment(self, boot, seq):
        """The segment that holds the record (boot, seq), or None."""
        for seg in self.segments:
            if seg.holds(boot, seq):
                return seg
        return None

    def _new_segment(self, number):
        f = open(self.path(number), "ab")  # first: a full flash leaves the old one open
        if self._file is not None:
            self._file.close()
        self._file = f
        self.segments.append(Segment(number))
        self._mine = number

    # writing

    def _append(self, kind, body):
        """Write a frame; on a full flash (ENOSPC) make room and try again. Raises
        OSError when there is no room to be made."""
        frame = _frame(kind, body)
        while True:
            try:
                return self._write(frame)
            except OSError as e:
                self.write_errors += 1
                if e.args[0] != _ENOSPC:
                    raise
                import outbox_room

                if not outbox_room.free_space(self):
                    raise

    def _write(self, frame):
        seg = self.segments[-1] if self.segments else None
        if seg is None or seg.number != self._mine or seg.size + len(frame) > _SEGMENT_BYTES:
            self._new_segment(seg.number + 1 if seg else 1)
            seg = self.segments[-1]
        elif self._file is None:  # a write failed: this boot's segment goes on
            self._file = open(self.path(seg.number), "ab")
        try:
            self._file.write(frame)
            self._file.flush()
        except OSError:
            try:
                self._file.close()  # whatever part of the frame got written stays torn;
            except OSError:  # the next frame starts clean after it
                pass
            self._file = None
            raise
        seg.size += len(frame)
        return seg

    def add_status(self, boot, seq, key, t, ms, lat=None, lon=None):
        return self.add_press(status_record(boot, seq, key, t, ms, lat, lon))

    def add_press(self, rec):
        """A press (a status_record) into the outbox. A repeat of one that did not get all
        the way in (a MemoryError) is taken once: its (boot, seq) names it."""
        self._make_room()
        boot, seq = rec[0], rec[1]
        if not self._held(boot, seq):
            if len(self.statuses) + self.on_flash >= self.status_cap:
                self.refill()
                old = self.statuses[0]
                self.dropped["status"] += 1
                self.confirm(old[0], old[1])  # given up: leaves the journal like a confirmed one
            if len(self.statuses) < self.status_ram:
                self.refill()  # the oldest in RAM first, so the bound keeps the right ones
            self._newest = (boot, seq)
            self._evict()
            self.statuses.append(rec)
            self.sent.append(None)
            self.unjournaled.append(rec)
        elif rec not in self.unjournaled and self._segment(boot, seq) is None:
            self.unjournaled.append(rec)
        self._journal()
        return rec

    def _journal(self):
        """Write the statuses not yet on flash; False if the flash has no room."""
        while self.unjournaled:
            rec = self.unjournaled[0]
            if not self.acked.has(rec[0], rec[1]):
                try:
                    seg = self._append(STATUS, struct.pack(STATUS_FMT, *rec))
                except OSError as e:
                    self.log("outbox: press %d not on flash (%s): held in memory until sent" % (rec[1], e))
                    return False
                seg.waiting += 1  # counted before anything that allocates: a count too
                seg.presses += 1  # high keeps a segment, one too low could lose a press
                seg.note(rec[0], rec[1])
            self.unjournaled.pop(0)
        return True

    def add_position(self, record):
        """A 29-byte wire position record (its `sent` is set when it is sent)."""
        self._make_room()
        try:
            if not self._journal():  # statuses first: a position takes no room they need
                raise OSError(_ENOSPC)
            seg = self._append(POSITION, record)
        except OSError:
            self.dropped["position"] += 1
            return False
        seg.waiting += 1
        seg.note(*_ident(POSITION, record))
        if len(self.fresh) >= self.fresh_cap:  # the newest few; older ones wait in the backlog
            self.fresh.pop(0)
        self.fresh.append(record)
        return True

    # presses in RAM: the oldest waiting, in order, and the newest of this boot last

    def _held(self, boot, seq):
        """1 + the index of the press in RAM, or 0."""
        for i, s in enumerate(self.statuses):
            if s[1] == seq and s[0] == boot:
                return i + 1
        return 0

    def _evict(self):
        """Room for one more press in RAM: the newest but one goes to flash only (unless
        the flash could not take it: then it stays, past the bound)."""
        if len(self.statuses) >= self.status_ram and self.statuses[-1] not in self.unjournaled:
            self.statuses.pop()
            self.sent.pop()
            self.on_flash += 1

    def mark_sent(self, rec, ticks):
        i = self._held(rec[0], rec[1])
        if i:
            self.sent[i - 1] = ticks

    def confirm(self, boot, seq):
        """The gateway stored this press: it leaves the outbox."""
        if self.acked.has(boot, seq):
            return
        i = self._held(boot, seq)
        if i:
            self.statuses.pop(i - 1)
            self.sent.pop(i - 1)
        elif self.on_flash > 0:
            self.on_flash -= 1
        seg = self._segment(boot, seq)
        if seg is not None:
            seg.presses -= 1
        self.acknowledge(boot, (seq,))

    def shed(self):
        """Out of heap: the fresh positions go (they are on flash, in the backlog)."""
        self.fresh = []

    # acknowledgement

    def acknowledge(self, boot, seqs):
        """The broker took these records (PUBACK): they leave the outbox."""
        for seq in seqs:
            if self.acked.has(boot, seq):
                continue
            self.acked.add(boot, seq, seq)
            self._acks.append((boot, seq))
            seg = self._segment(boot, seq)
            if seg is not None:
                seg.waiting -= 1
            fresh = self.fresh
            for i in range(len(fresh)):
                if struct.unpack_from(">I", fresh[i], 3)[0] == seq:
                    fresh.pop(i)
                    break
            if len(self._acks) >= self.ack_flush:
                self.flush()

    def skip(self, boot, seq):
        """A seq the unit gave to a message it does not journal: counted acknowledged,
        in RAM only (no record of it is on flash to be read back), so that the ranges
        stay one per stretch of waiting records, not one per such message."""
        self.acked.add(boot, seq, seq)

    def flush(self):
        """Write buffered acknowledgements (losing them to a power cut only means a
        duplicate send, which the gateway recognises)."""
        ranges = []
        for boot, seq in sorted(self._acks):
            if ranges and ranges[-1][0] == boot and ranges[-1][2] == seq - 1:
                ranges[-1][2] = seq
            else:
                ranges.append([boot, seq, seq])
        self._acks = []
        for i in range(0, len(ranges), 25):  # 25 ranges of 10 bytes fit a frame
            try:
                self._append(ACKED, b"".join(struct.pack(RANGE_FMT, *r) for r in ranges[i : i + 25]))
            except OSError:
                pass  # the records are sent again after a reboot: a duplicate, not a loss
        self._collect()

    def _collect(self):
        """Delete fully acknowledged segments, oldest first."""
        while len(self.segments) > 1 and self.segments[0].waiting <= 0:
            seg = self.segments.pop(0)
            os.remove(self.path(seg.number))
            self._cursor = None

    # reading for the sender

    @property
    def waiting(self):
        return sum(s.waiting for s in self.segments)

    def newest_fresh(self):
        return self.fresh[-1] if self.fresh else None

    def rewind(self):
        """Read the backlog from its start again, and send every press in RAM again (a
        send failed, a new session: the gateway may not have them)."""
        self._cursor = None
        for i in range(len(self.sent)):
            self.sent[i] = None

    def backlog(self, n, skip=()):
        """Up to n waiting positions, oldest first, each read once between rewinds: the
        reader goes on from where it stopped, so a long backlog is read once, not once a
        batch."""
        out = []
        start_seg, start_pos = self._cursor or (0, 0)
        where = [0]
        for seg in self.segments:
            if seg.number < start_seg or seg.waiting <= 0:
                continue
            pos = start_pos if seg.number == start_seg else 0
            for kind, body in _frames(self.path(seg.number), pos, where):
                if kind != POSITION:
                    continue
                boot, seq = _ident(kind, body)
                if not self.acked.has(boot, seq) and (boot, seq) not in skip:
                    out.append(body)
                    if len(out) >= n:
                        self._cursor = (seg.number, where[0])
                        return out
        self._cursor = None  # read to the end: the next call starts over
        return out

    # bounds

    def size(self):
        return sum(s.size for s in self.segments)

    def _make_room(self):
        if self.size() > self.max_bytes and len(self.segments) > 1:
            import outbox_room

            outbox_room.make_room(self)

    def close(self):
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


def sending(record, sent, buf=None, off=0):
    """The record with its send time set, as it goes on the wire: new bytes, or written
    into `buf` at `off`."""
    if buf is None:
        return record[:25] + struct.pack(">I", sent)
    buf[off : off + 29] = record
    struct.pack_into(">I", buf, off + 25, sent)


def status_record(boot, seq, key, t, ms, lat=None, lon=None):
    """A press as the outbox keeps it: (boot, seq, key, t, ms, lat, lon), lat and lon in
    1e-7 degrees (_NO_POS: no position)."""
    return (
        boot,
        seq,
        key,
        t,
        ms,
        _NO_POS if lat is None else int(round(lat * 1e7)),
        _NO_POS if lon is None else int(round(lon * 1e7)),
    )


def status_payload(rec, sent):
    boot, seq, key, t, ms, lat, lon = rec
    fields = {"key": key, "t": t, "ms": ms, "sent": sent}
    if lat != _NO_POS:
        fields["lat"] = lat / 1e7
        fields["lon"] = lon / 1e7
    return wire.encode_json("status", boot, seq, **fields)
