# The unit's outbox: every status press and position goes to a journal on flash before
# it is sent, and leaves only when the broker has acknowledged it (PUBACK). Power cuts,
# reboots and outages lose nothing that reached the journal.
#
# On flash: a folder of segment files, ob/00000001.log, ob/00000002.log, ... Each boot
# appends to a segment of its own (so a torn tail can only be at the end of an older
# segment), and a segment that grows past SEGMENT_BYTES is closed for a new one. A
# segment is a sequence of frames:
#     0xA5, kind, body length, CRC-32 of (kind, length, body) little-endian, body
#     kind 'S' status  body >HIBIHii: boot, seq, key, t, ms, lat*1e7, lon*1e7 (NO_POS: none)
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
import binascii
import os
import struct

import wire

MAGIC = 0xA5
HEADER = 7
STATUS = ord("S")
POSITION = ord("P")
ACKED = ord("A")
STATUS_FMT = ">HIBIHii"
RANGE_FMT = ">HII"
NO_POS = 0x7FFFFFFF
SEGMENT_BYTES = 8192
ENOSPC = 28


def _frame(kind, body):
    head = bytes((kind, len(body)))
    crc = binascii.crc32(body, binascii.crc32(head)) & 0xFFFFFFFF
    return bytes((MAGIC,)) + head + struct.pack("<I", crc) + body


def _good(head, body):
    if len(head) < HEADER or head[0] != MAGIC or len(body) != head[2]:
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
            head = f.read(HEADER)
            if not head:
                return
            body = f.read(head[2]) if len(head) == HEADER else b""
            if not _good(head, body):
                if not bad:
                    yield None, pos
                    bad = True
                pos += 1
                continue
            bad = False
            pos += HEADER + len(body)
            if where is not None:
                where[0] = pos
            yield head[1], body


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


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
    ack_flush = 16  # acknowledgements buffered before they are written

    def __init__(self, folder="ob", max_bytes=None, status_cap=None, log=print):
        self.folder = folder
        if max_bytes:
            self.max_bytes = max_bytes
        if status_cap:
            self.status_cap = status_cap
        self.log = log
        self.acked = Acked()
        self.segments = []
        self.statuses = []  # waiting statuses, oldest first: (boot, seq, key, t, ms, lat, lon)
        self.fresh = []  # positions added since the sender last looked (newest last)
        self.dropped = {"position": 0, "status": 0}
        self.torn = 0
        self.write_errors = 0
        self.unjournaled = []  # statuses a full flash could not take yet, oldest first
        self._acks = []  # acknowledged, not yet written: (boot, seq)
        self._file = None
        self._mine = None  # the number of the segment this boot appends to
        self._cursor = None  # (segment index, offset) of the backlog reader

    # start-up

    def path(self, number):
        return "%s/%08d.log" % (self.folder, number)

    def open(self):
        """Read the journal: waiting statuses, acknowledgements, segment counts."""
        try:
            os.mkdir(self.folder)
        except OSError:
            pass
        self._load_stats()
        numbers = sorted(int(n[:8]) for n in os.listdir(self.folder) if n.endswith(".log"))
        for number in numbers:
            self.segments.append(self._scan_acks(number))
        for seg in self.segments:
            self._scan_records(seg)
        try:
            self._new_segment((numbers[-1] if numbers else 0) + 1)
        except OSError as e:  # a full flash: the first write makes room, or says why
            self.log("outbox: no new segment at start (%s)" % e)
        self._collect()
        return self

    def _scan_acks(self, number):
        seg = Segment(number, os.stat(self.path(number))[6])
        for kind, body in _frames(self.path(number)):
            if kind == ACKED:
                for i in range(0, len(body), 10):
                    self.acked.add(*struct.unpack_from(RANGE_FMT, body, i))
        return seg

    def _scan_records(self, seg):
        for kind, body in _frames(self.path(seg.number)):
            if kind is None:
                self.torn += 1
                self.log("outbox: torn record in segment %d skipped" % seg.number)
            elif kind != ACKED:
                boot, seq = _ident(kind, body)
                seg.note(boot, seq)
                if not self.acked.has(boot, seq):
                    seg.waiting += 1
                    if kind == STATUS:
                        self.statuses.append(struct.unpack(STATUS_FMT, body))

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
                if e.args[0] != ENOSPC or not self._free_space():
                    raise

    def _write(self, frame):
        seg = self.segments[-1] if self.segments else None
        if seg is None or seg.number != self._mine or seg.size + len(frame) > SEGMENT_BYTES:
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

    def _free_space(self):
        """The flash is full. Free room, least harm first: acknowledged records; then
        the positions of the oldest segment that has any (the whole segment when it holds
        no waiting status). Statuses are never dropped here. True if room was made."""
        before = self.size()
        if self._acks:
            self.flush()
        if self.size() < before:
            return True
        for seg in self.segments:
            if seg.number == self._mine:
                break
            if seg.size and not any(seg.holds(s[0], s[1]) for s in self.statuses):
                self.segments.remove(seg)
                os.remove(self.path(seg.number))
                self._cursor = None
                self.dropped["position"] += max(seg.waiting, 0)
                self._save_stats()
                self.log("outbox: flash full: %d positions of segment %d dropped" % (seg.waiting, seg.number))
                return True
            try:
                n = self._thin(seg, keep_every=0)
                if n:
                    self.log("outbox: flash full: %d positions of segment %d dropped" % (n, seg.number))
                    return True
            except OSError:  # not even room for the statuses' copy: try the next one
                _remove(self.path(seg.number) + ".tmp")
        return False

    def add_status(self, boot, seq, key, t, ms, lat=None, lon=None):
        rec = (
            boot,
            seq,
            key,
            t,
            ms,
            NO_POS if lat is None else int(round(lat * 1e7)),
            NO_POS if lon is None else int(round(lon * 1e7)),
        )
        self._make_room()
        if len(self.statuses) >= self.status_cap:
            old = self.statuses.pop(0)
            self.dropped["status"] += 1
            self.acknowledge(old[0], [old[1]])  # given up: leaves the journal like a sent one
        self.statuses.append(rec)
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
                seg.note(rec[0], rec[1])
                seg.waiting += 1
            self.unjournaled.pop(0)
        return True

    def add_position(self, record):
        """A 29-byte wire position record (its `sent` is set when it is sent)."""
        self._make_room()
        try:
            if not self._journal():  # statuses first: a position takes no room they need
                raise OSError(ENOSPC)
            seg = self._append(POSITION, record)
        except OSError:
            self.dropped["position"] += 1
            return False
        boot, seq = _ident(POSITION, record)
        seg.note(boot, seq)
        seg.waiting += 1
        self.fresh.append(record)
        del self.fresh[:-4]  # the newest few; older ones wait in the backlog
        return True

    # acknowledgement

    def acknowledge(self, boot, seqs):
        """The broker took these records (PUBACK): they leave the outbox."""
        for seq in seqs:
            if self.acked.has(boot, seq):
                continue
            self.acked.add(boot, seq, seq)
            self._acks.append((boot, seq))
            for seg in self.segments:
                if seg.holds(boot, seq):
                    seg.waiting -= 1
                    break
            if len(self._acks) >= self.ack_flush:
                self.flush()
        self.statuses = [s for s in self.statuses if not self.acked.has(s[0], s[1])]
        self.fresh = [r for r in self.fresh if not self.acked.has(*_ident(POSITION, r))]

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
            self._write_acks(b"".join(struct.pack(RANGE_FMT, *r) for r in ranges[i : i + 25]))
        self._collect()

    def _write_acks(self, body):
        try:
            self._append(ACKED, body)
        except OSError:
            pass  # the records are sent again after a reboot: a duplicate, not a loss

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
        """Read the backlog from its start again (after a send failed)."""
        self._cursor = None

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
        if self.size() <= self.max_bytes or len(self.segments) < 2:
            return
        self.flush()
        for seg in self.segments[:-1]:  # the oldest segment that still has positions
            try:
                if self.size() <= self.max_bytes or self._thin(seg):
                    return
            except OSError:  # a full flash: _append makes room its own way
                _remove(self.path(seg.number) + ".tmp")
                return

    def _thin(self, seg, keep_every=2):
        """Rewrite a segment keeping every `keep_every`-th waiting position (0: none);
        returns how many waiting positions it had (0: nothing to thin, nothing written)."""
        keep, n, gone = [], 0, 0
        for kind, body in _frames(self.path(seg.number)):
            if kind is None or kind == ACKED:
                continue
            boot, seq = _ident(kind, body)
            if self.acked.has(boot, seq):
                continue
            if kind == POSITION:
                n += 1
                if not keep_every or n % keep_every:
                    gone += 1
                    continue
            keep.append(_frame(kind, body))
        if n == 0:
            return 0
        tmp = self.path(seg.number) + ".tmp"
        with open(tmp, "wb") as f:
            for frame in keep:
                f.write(frame)
        os.rename(tmp, self.path(seg.number))
        self.dropped["position"] += gone
        seg.size = sum(len(f) for f in keep)
        seg.waiting = len(keep)
        self._save_stats()
        self.log("outbox: full, thinned segment %d: %d records kept" % (seg.number, len(keep)))
        return n

    # drop counts survive reboots

    def _load_stats(self):
        try:
            with open(self.folder + "/stats") as f:
                pos, st = f.read().split()
                self.dropped["position"], self.dropped["status"] = int(pos), int(st)
        except (OSError, ValueError):
            pass

    def _save_stats(self):
        tmp = self.folder + "/stats.tmp"
        try:
            with open(tmp, "w") as f:
                f.write("%d %d" % (self.dropped["position"], self.dropped["status"]))
            os.rename(tmp, self.folder + "/stats")
        except OSError:
            pass  # a full flash: the counts still go out in memory, and are saved later

    def close(self):
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


def sending(record, sent):
    """The record with its send time set, as it goes on the wire."""
    return record[:25] + struct.pack(">I", sent)


def status_fields(rec):
    boot, seq, key, t, ms, lat, lon = rec
    fields = {"key": key, "t": t, "ms": ms}
    if lat != NO_POS:
        fields["lat"] = lat / 1e7
        fields["lon"] = lon / 1e7
    return boot, seq, fields


def status_payload(rec, sent):
    boot, seq, fields = status_fields(rec)
    fields["sent"] = sent
    return wire.encode_json("status", boot, seq, **fields)
