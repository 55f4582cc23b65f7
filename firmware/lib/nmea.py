# Streaming NMEA 0183 decoder for the Siaga firmware.
#
# Runs unchanged under MicroPython (device and unix port) and CPython. Bytes
# go in, in chunks of any size; a Fix object comes out, updated in place:
#
#     from nmea import NMEADecoder, iso
#     d = NMEADecoder()
#     if d.feed(uart.read()):       # number of new RMC fixes in this chunk
#         print(iso(d.fix), d.fix.lat, d.fix.lon)
#
# Decoded: RMC, GGA, GSA and VTG from any talker (GP, GN, GL, GA, GB, BD, GQ,
# GI, ...). Other well-formed sentences (GSV, GLL, ZDA, proprietary $P...) are
# counted in `ignored` and skipped.
#
# Framing and limits
#   A sentence runs from '$' to LF; trailing CR and blanks are dropped. A '$'
#   inside a line starts a new sentence (resynchronisation after a cut).
#   NMEADecoder(max_len) counts like the NMEA standard: '$' through CR LF. The
#   standard says 82, but real receivers go beyond it (Trimble RTK: 91-char
#   RMC), so the default is gpsd's NMEA_MAX, 102; NMEADecoder(82) is strict.
#   A longer line is counted as 'overlong' and skipped up to the next LF or
#   '$'. The line buffer is one preallocated bytearray of max_len bytes;
#   fields are found with bytearray.find and converted in place, so the
#   work per sentence is a few small objects, never one per byte.
#   Checksum: when '*hh' is present it must match (hex in either case). A
#   sentence without any '*' is taken when a line end closes it, as gpsd
#   does, and counted in `unchecked` (a '$' that cuts it counts it as
#   'truncated'); RMC still needs every field up to the date.
#
# Fix semantics
#   Only an RMC with status A (or D) and a mode indicator other than N makes a
#   fix: time, ms, lat, lon, speed, track, mode and nav_status are replaced
#   together, fix.valid becomes True, fix_status 'A', last_valid_ticks is
#   stamped (clock(), by default time.ticks_ms) and on_fix(fix) is called.
#   An RMC with status V (or mode N) sets fix_status = 'V' and leaves the last
#   valid fix untouched: coordinates are never invented or cleared. Age of
#   that fix on the device: time.ticks_diff(time.ticks_ms(), d.last_valid_ticks).
#   Two-digit years pivot like gpsd: 80..99 -> 1980..1999, 00..79 -> 20xx.
#   Fractional seconds are rounded to the millisecond, as gpsd does. Epoch
#   seconds come from the date (days-from-civil), never from time.mktime,
#   whose epoch differs between MicroPython ports.
#   An RMC without speed or track takes them from the VTG of its cycle: a VTG
#   just before it is used when the fix is made; a VTG just after it fills
#   them in place (after on_fix has run). Otherwise they stay None.
#   GGA sets quality, sats, hdop and alt (with quality 0 only quality and
#   sats, so the last fix keeps its figures). GSA sets fix_type (1/2/3) and,
#   with a 2D/3D fix, pdop/hdop/vdop. Missing trailing fields read as empty.
#
# Errors never leave feed(): malformed input is counted in `errors` by kind
# and skipped: 'checksum' (mismatch, or a malformed '*hh'), 'overlong',
# 'truncated' (cut short by the next '$' before any checksum), 'fields' (a bad
# address, too few fields, or a missing or malformed one that is needed),
# 'noise' (a run of bytes between sentences that is not blank, or binary
# bytes inside one). Exceptions raised by the on_fix callback do propagate;
# the decoder stays consistent, the rest of that chunk is dropped.
#
# Precision: doubles on CPython and the unix port (far below 1e-6 degree);
# ports with single-precision floats (ESP32) hold lat/lon to about 1e-5 degree.
#
# Memory: the module is kept small on purpose, so that it and a test module
# compile from source inside a 64 KB heap on the 64-bit unix port (the parse
# tree costs about 15 bytes per token there). Docs live in comments, which
# cost nothing at compile time.

try:
    from time import ticks_ms

    from micropython import const
except ImportError:  # CPython

    def ticks_ms():
        from time import monotonic

        return int(monotonic() * 1000)

    def const(value):
        return value


KNOT = 1852 / 3600  # m/s per knot

# Sentence types as the 24-bit int of their three letters: compared without
# slicing or allocating. (const: in MicroPython they cost the heap no global, no qstr.)
_RMC = const(0x524D43)
_GGA = const(0x474741)
_GSA = const(0x475341)
_VTG = const(0x565447)
_KEYS = const((_RMC, _GGA, _GSA, _VTG))


def days_from_civil(y, m, d):
    # Days since 1970-01-01 of a Gregorian date (H. Hinnant's algorithm).
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def civil_from_days(z):
    # (year, month, day) of a day count since 1970-01-01.
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, doy - (153 * mp + 2) // 5 + 1


def iso(fix):
    # ISO 8601 UTC time of a fix: '2010-06-03T14:52:43.000Z'.
    t = fix.time
    y, m, d = civil_from_days(t // 86400)
    t %= 86400
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (y, m, d, t // 3600, t // 60 % 60, t % 60, fix.ms)


class Fix:
    # Last valid position plus receiver figures; None means unknown.
    valid = False  # True once a valid RMC was decoded
    time = 0  # unix epoch seconds, UTC
    ms = 0  # 0..999
    lat = lon = None  # degrees, south and west negative
    speed = track = None  # m/s over ground; degrees true
    mode = nav_status = None  # RMC mode (NMEA 2.3+: A, D, E, ...), nav status (4.1: S, C, U, V)
    quality = 0  # GGA fix quality
    sats = hdop = alt = None  # GGA satellites used, HDOP, altitude above MSL in m
    pdop = vdop = fix_type = None  # GSA; fix_type 1 none, 2 2D, 3 3D


class NMEADecoder:
    MAX_LEN = 102  # gpsd's NMEA_MAX, counted '$' .. CR LF

    def __init__(self, max_len=0, clock=ticks_ms):
        self._buf = bytearray(max_len or self.MAX_LEN)  # '$' .. CR; LF is not stored
        self._mv = memoryview(self._buf)
        self._pos = [0] * 19  # field k is buf[pos[k]:pos[k + 1] - 1]; missing ones are empty
        self._n = 0  # bytes collected; 0: hunting for '$'; -1: skipping an overlong line
        self._noisy = False
        self._clock = clock
        self._pending = None  # (speed, track) of a VTG waiting for its RMC
        self._open = False  # the last fix may still take the next VTG's values
        self.fix = Fix()
        self.on_fix = None
        self.fix_status = ""  # '' before any RMC, then 'A' (fix) or 'V' (no fix)
        self.last_valid_ticks = None
        # RMC, GGA, GSA and VTG decoded; well-formed ones of other types; taken without checksum
        self.sentences = self.ignored = self.unchecked = 0
        self.errors = {"checksum": 0, "overlong": 0, "truncated": 0, "fields": 0, "noise": 0}

    def feed(self, data):
        # Decode a chunk of bytes; return the number of new RMC fixes.
        if isinstance(data, memoryview):
            data = bytes(data)  # MicroPython's memoryview has no find()
        src = memoryview(data)
        buf = self._buf
        n = len(data)
        got = i = 0
        while i < n:
            fill = self._n
            if not fill:
                j = data.find(b"$", i)
                # Bytes between sentences: blanks are fine, anything else is noise,
                # counted once per run whatever the chunking.
                if j != i and not self._noisy and bytes(src[i : j if j > 0 else n]).strip():
                    self._noisy = True
                    self.errors["noise"] += 1
                if j < 0:
                    break
                buf[0] = 36
                fill = 1
                self._noisy = False
                i = j + 1
            e = data.find(b"\n", i)
            if e < 0:
                e = n
            j = data.find(b"$", i, e)
            if j >= 0:
                e = j
            if fill > 0:
                k = fill + e - i
                if k > len(buf):
                    self.errors["overlong"] += 1
                    k = -1
                else:
                    buf[fill:k] = src[i:e]
                fill = k
            if e == n:
                self._n = fill
                break
            self._n = 0
            nl = data[e] == 10
            i = e + nl
            if fill > 0 and self._line(fill, nl):
                got += 1
        return got

    def _line(self, n, nl):
        buf = self._buf
        err = self.errors
        while n > 1 and buf[n - 1] <= 32:
            n -= 1
        end = n - 3
        if n > len(buf) - 2:
            kind = "overlong"
        elif end > 0 and buf[end] == 42:
            x = 0
            for c in self._mv[1:end]:
                x ^= c
            kind = ""
            if x != _hex(buf[end + 1]) * 16 + _hex(buf[end + 2]):
                kind = "noise" if _junk(self._mv[1:end]) else "checksum"
        else:
            end = n
            kind = "truncated" if not nl else "checksum" if buf.find(b"*", 1, n) >= 0 else ""
            if not kind:
                kind = "noise" if _junk(self._mv[1:n]) else ""
                self.unchecked += not kind
        if not kind and (end < 6 or end > 6 and buf[6] != 44 and buf[1] != 80):
            kind = "fields"
        if kind:
            err[kind] += 1
        else:
            return self._decode(end)

    def _decode(self, end):
        # A framed, checked sentence in buf[0:end]: split its fields and decode it.
        buf = self._buf
        key = buf[3] << 16 | buf[4] << 8 | buf[5] if buf[1] != 80 else 0  # 'P': proprietary
        if key not in _KEYS:
            self.ignored += 1
            return
        pos = self._pos
        p = 7
        for k in range(1, 19 if key == _GSA else 15):  # fields 1..17 (GSA), else 1..13
            pos[k] = p
            q = buf.find(b",", p, end)
            p = end + 1 if q < 0 else q + 1
        try:
            if pos[17 if key == _GSA else 4 if key == _VTG else 9] > end:
                raise ValueError  # too few fields
            made = (
                self._rmc()
                if key == _RMC
                else self._gga()
                if key == _GGA
                else self._gsa()
                if key == _GSA
                else self._vtg()
            )
        except ValueError:
            self.errors["fields"] += 1
            return
        self.sentences += 1
        if made and self.on_fix:
            self.on_fix(self.fix)
        return made

    def _f(self, k, conv=float):
        # Field k as a float (or int), None when empty.
        s = self._pos[k]
        e = self._pos[k + 1] - 1
        return conv(self._mv[s:e]) if e > s else None

    def _c(self, k):
        # One-character field k as a str, None when empty or longer.
        s = self._pos[k]
        return chr(self._buf[s]) if self._pos[k + 1] - s == 2 else None

    def _deg(self, k, limit, plus, minus):
        # (d)ddmm.mmmm in field k, hemisphere in field k + 1 -> signed degrees.
        buf = self._buf
        s = self._pos[k]
        e = self._pos[k + 1] - 1
        dot = buf.find(b".", s, e)
        m = max(s, (e if dot < 0 else dot) - 2)
        minutes = float(self._mv[m:e])
        v = _digits(buf, s, m) + minutes / 60
        h = self._c(k + 1)
        if not (0 <= minutes < 60 and v <= limit and (h == plus or h == minus)):
            raise ValueError
        return -v if h == minus else v

    def _fill(self, speed, track):
        # A VTG's values where the fix has none.
        f = self.fix
        if f.speed is None:
            f.speed = speed
        if f.track is None:
            f.track = track

    def _rmc(self):
        mode = self._c(12)
        if self._c(2) not in ("A", "D") or mode == "N":
            self.fix_status = "V"
            self._open = self._pending = None
            return False
        pos = self._pos
        sod = _hms(self._buf, pos[1], pos[2] - 1)
        day = _dmy(self._buf, pos[9], pos[10] - 1)
        lat = self._deg(3, 90, "N", "S")
        lon = self._deg(5, 180, "E", "W")
        speed = self._f(7)
        track = self._f(8)
        f = self.fix
        f.time = day * 86400 + sod // 1000
        f.ms = sod % 1000
        f.lat = lat
        f.lon = lon
        f.speed = None if speed is None else speed * KNOT
        f.track = track
        f.mode = mode
        f.nav_status = self._c(13)
        f.valid = True
        if self._pending:
            self._fill(*self._pending)
        self._open = not self._pending
        self._pending = None
        self.fix_status = "A"
        self.last_valid_ticks = self._clock()
        return True

    def _gga(self):
        q = self._f(6, int) or 0
        sats = self._f(7, int)
        hdop = self._f(8)
        alt = self._f(9)
        f = self.fix
        f.quality = q
        f.sats = sats
        if q:
            f.hdop = hdop
            f.alt = alt

    def _gsa(self):
        ft = self._f(2, int)
        f = self.fix
        if ft and ft > 1:
            f.pdop, f.hdop, f.vdop = self._f(15), self._f(16), self._f(17)
        f.fix_type = ft

    def _vtg(self):
        # NMEA 2.3+: track,T,mag,M,kn,N,kmh,K,mode (units may be blank when empty); 1.5: track,mag,kn,kmh
        new = self._c(2) == "T" or self._c(6) == "N"
        if new and self._c(9) == "N":
            return
        kn = self._f(5 if new else 3)
        kmh = self._f(7 if new else 4)
        speed = kn * KNOT if kn is not None else None if kmh is None else kmh / 3.6
        if self._open:
            self._open = False
            self._fill(speed, self._f(1))
        else:
            self._pending = (speed, self._f(1))


def _hex(c):
    # Value of a hex digit; 256 (never a checksum) for anything else.
    if 48 <= c <= 57:
        return c - 48
    c |= 32
    return c - 87 if 97 <= c <= 102 else 256


def _digits(buf, s, e):
    # Unsigned decimal integer in buf[s:e] (0 when empty); ValueError otherwise.
    v = 0
    while s < e:
        c = buf[s] - 48
        if not 0 <= c <= 9:
            raise ValueError
        v = v * 10 + c
        s += 1
    return v


def _junk(mv):
    # True when mv holds a byte that is not printable ASCII.
    for c in mv:
        if c < 32 or c > 126:
            return True
    return False


def _hms(buf, s, e):
    # hhmmss[.ffff] -> milliseconds of the day, rounded like gpsd (may reach 86400000).
    if e - s < 6 or e > s + 6 and buf[s + 6] != 46:
        raise ValueError
    v = _digits(buf, s, s + 6)
    if v // 10000 > 23 or v // 100 % 100 > 59 or v % 100 > 60:
        raise ValueError
    f = min(e, s + 11)  # up to four fraction digits
    ms = (_digits(buf, s + 7, f) * 2000 // 10 ** (f - s - 7) + 1) // 2 if f > s + 7 else 0
    return ((v // 10000 * 60 + v // 100 % 100) * 60 + v % 100) * 1000 + ms


def _dmy(buf, s, e):
    # ddmmyy -> days since 1970-01-01; yy pivots at 80 like gpsd.
    if e - s != 6:
        raise ValueError
    v = _digits(buf, s, e)
    ymd = (v % 100 + (1900 if v % 100 >= 80 else 2000), v // 100 % 100, v // 10000)
    z = days_from_civil(*ymd)
    if civil_from_days(z) != ymd:  # 31 June, month 13, day 0 ...
        raise ValueError
    return z
