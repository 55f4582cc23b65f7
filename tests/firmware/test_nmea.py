# Tests of firmware/lib/nmea.py under MicroPython. Standalone, from the repo root:
#     MICROPYPATH=firmware/lib .venv/bin/micropython -X heapsize=64K tests/firmware/test_nmea.py
# Kept lean on purpose: this module and the decoder must both compile in that 64 KB heap
# (tables are text, parsed at run time, because source costs far more memory to compile).
import gc

from nmea import KNOT, NMEADecoder, civil_from_days, days_from_civil, iso


def sentence(body):
    # '$' body '*hh' CR LF, with a correct checksum.
    x = 0
    for c in body:
        x ^= ord(c)
    return ("$%s*%02X\r\n" % (body, x)).encode()


def rmc(
    t="145243.000",
    st="A",
    lat="3401.9764,N",
    lon="11744.8274,W",
    sp="0.00,119.27",
    date="030610",
    tail=",,,D",
):
    return sentence("GPRMC,%s,%s,%s,%s,%s,%s%s" % (t, st, lat, lon, sp, date, tail))


def fed(data, max_len=0):
    # A new decoder fed with `data`; .got is what feed() returned, .out the fixes it reported.
    d = NMEADecoder(max_len)
    d.out = []
    d.on_fix = lambda f: d.out.append((iso(f), f.lat, f.lon, f.speed, f.track))
    d.got = d.feed(data)
    return d


def lcg(seed):
    # Pseudo-random bytes, the same on every runtime.
    while True:
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        yield seed >> 16 & 255


SAMPLE = b"".join(
    (
        b"\xb5b\x01\x07 junk\r\n",
        sentence("GPGGA,145243.000,3401.9764,N,11744.8274,W,2,9,0.92,186.9,M,-32.4,M,0.8,0000"),
        rmc(),
        sentence("GPGSV,3,1,12,17,75,301,26,28,68,070,36,06,46,301,20,01,40,155,32"),
        b"$GPRMC,145244.000,A,3401.97",  # cut short by the next '$'
        rmc("145244.000", lat="3401.9765,N", sp="1.50,90.00"),
        rmc("145245.000", "V", ",", ","),
        sentence("GNRMC,145246.500,A,3401.9764,N,11744.8274,W,0.00,119.27,030610,,,D"),
        rmc("145247.000")[:-4] + b"00\r\n",  # bad checksum
        rmc("145248.000", sp=","),
    )
)


def test_sample_stream_at_every_chunking():
    want = fed(SAMPLE)
    assert [f[0][11:] for f in want.out] == [
        "14:52:43.000Z",
        "14:52:44.000Z",
        "14:52:46.500Z",
        "14:52:48.000Z",
    ]
    assert want.out[1][1:] == (34 + 1.9765 / 60, -(117 + 44.8274 / 60), 1.5 * KNOT, 90.0)
    assert want.got == 4 and want.out[3][3:] == (None, None)
    assert (want.sentences, want.ignored, want.errors) == (
        6,
        1,
        {"noise": 1, "truncated": 1, "checksum": 1, "fields": 0, "overlong": 0},
    )
    for cut in range(len(SAMPLE) + 1):
        d = fed(SAMPLE[:cut])
        d.feed(SAMPLE[cut:])
        assert d.out == want.out and d.errors == want.errors, cut
    for size in (1, 2, 3, 7, 64):
        d = fed(b"")
        for i in range(0, len(SAMPLE), size):
            d.feed(memoryview(SAMPLE)[i : i + size])
        assert d.out == want.out, size


def test_every_talker():
    for tk in ("GP", "GN", "GL", "GA", "GB", "BD", "GQ", "GI"):
        d = fed(sentence(tk + rmc()[3:-5].decode()))
        d.feed(sentence(tk + "GGA,145243,3401.9,N,11744.8,W,1,07,1.2,10.5,M,,M,,"))
        assert d.got == 1 and d.sentences == 2 and d.fix.quality == 1, tk
    d = fed(sentence("PMTK001,604,1") + sentence("PSRFEPE,053229.438,V,,,,,") + sentence("GNZDA,1"))
    assert d.ignored == 3 and sum(d.errors.values()) == 0


def test_length_limits():
    # Counted like the standard: '$' to CR LF. Strict 82, or gpsd's 102 by default.
    base = len(rmc())
    for limit, top in ((82, 82), (0, 102)):
        for n in range(base, top + 3):
            s = rmc(lat="3401.9764" + "0" * (n - base) + ",N")
            assert len(s) == n and fed(s, limit).got == (n <= top), n
        assert fed(s, limit).errors["overlong"] == 1
    d = fed(b"$" + b"7" * 3000 + b"\r\n" + rmc())
    assert d.got == 1 and d.errors["overlong"] == 1


def test_checksums():
    assert fed(rmc(lat="3401.9765,N")[:-4] + b"70\r\n").errors["checksum"] == 1
    assert fed(rmc()[:-4] + b"7\r\n").errors["checksum"] == 1
    s = rmc("145248.000")
    assert s[-4:-2] == b"7B" and fed(s[:-4] + b"7b\r\n").got == 1  # lower-case hex is fine
    d = fed(s[:-5] + b"\r\n")  # no checksum at all: taken, like gpsd
    assert d.got == 1 and d.unchecked == 1


def test_noise_and_truncation():
    rnd = lcg(7)
    noise = bytes(next(rnd) for _ in range(500)).replace(b"$", b"#")
    d = fed(b"")
    for s in (noise, rmc(), b"# a comment\r\n", rmc("145244.000"), noise, noise):
        d.feed(s)
    assert len(d.out) == 2 and d.errors["noise"] == 3
    s = rmc()
    assert fed(s[:30] + b"\x00\xff\x13" + s[33:]).errors["noise"] == 1
    d = fed(s[:40] + s)
    assert d.got == 1 and d.errors["truncated"] == 1
    assert d.feed(s[:40]) == 0 and d.feed(b"\r\n") == 0 and d.errors["fields"] == 1


BAD = """lat=,
lon=11744.8274,
date=
t=
date=310610
t=256000
lat=34x1.9764,N
lat=9101.0000,N
lat=3461.0000,N
sp=fast,1"""


def test_missing_or_malformed_fields():
    bad = [rmc(**{row[: row.find("=")]: row[row.find("=") + 1 :]}) for row in BAD.split("\n")]
    bad += [sentence(s) for s in ("GPRMC,145243.000,A,3401.9764,N", "GPGGA,1,2", "GPGSA,A,3", "GP")]
    for s in bad:
        d = fed(s)
        assert d.got == 0 and d.errors["fields"] == 1 and d.fix.lat is None, s


DATES = """235959 311299 1999-12-31T23:59:59.000
000000 010180 1980-01-01T00:00:00.000
120000.5 311279 2079-12-31T12:00:00.500
120000.05 290200 2000-02-29T12:00:00.050
053229.438 290224 2024-02-29T05:32:29.438
132820.60 180320 2020-03-18T13:28:20.600
145243.4385 030610 2010-06-03T14:52:43.439
145243.12345 030610 2010-06-03T14:52:43.123
235959.9999 311299 2000-01-01T00:00:00.000"""


def test_two_digit_years_and_fractional_seconds():
    for row in DATES.split("\n"):
        t, date, want = row.split()
        d = fed(rmc(t, date=date))
        assert d.got == 1 and iso(d.fix) == want + "Z", row
    assert fed(rmc(date="290223")).errors["fields"] == 1
    assert fed(rmc()).fix.time == 1275576763 and days_from_civil(2000, 3, 1) == 11017
    for z in range(3652, 40000, 97):  # 1980 .. 2079
        assert days_from_civil(*civil_from_days(z)) == z


def test_south_west():
    f = fed(rmc(lat="3747.0873,S", lon="17518.8938,E")).fix
    assert abs(f.lat + 37.784788333) < 1e-8 and abs(f.lon - 175.31489667) < 1e-8
    f = fed(rmc(lat="4134.49821229,N", lon="09345.03351845,W")).fix
    assert abs(f.lat - 41.574970205) < 1e-8 and abs(f.lon + 93.750558641) < 1e-8


def test_status_v_keeps_last_valid_fix():
    ticks = [1000]
    d = NMEADecoder(clock=lambda: ticks[0])
    assert d.fix_status == "" and d.feed(rmc()) == 1 and d.fix_status == "A"
    f = d.fix
    last = (f.time, f.lat, f.lon, f.speed, f.track)
    ticks[0] = 4500
    for s in (
        rmc("145300.000", "V", "1111.1111,N", "02222.2222,E"),
        rmc("145301.000", "V", ",", ",", date=""),
        sentence("GPRMC,,V,,,,,,,,,,N"),
        rmc("145302.000", tail=",,,N"),  # status A, but mode N: no fix
    ):
        assert d.feed(s) == 0 and d.fix_status == "V"
    assert f.valid and (f.time, f.lat, f.lon, f.speed, f.track) == last
    assert d.last_valid_ticks == 1000 and sum(d.errors.values()) == 0
    assert d.feed(rmc("145303.000")) == 1 and d.fix_status == "A" and d.last_valid_ticks == 4500


def test_nmea41_gga_gsa_vtg():
    f = fed(sentence("GNRMC,223745.00,A,3806.62964,N,12237.61382,W,0.040,,110720,,,D,V")).fix
    assert (f.mode, f.nav_status, f.track) == ("D", "V", None)
    d = fed(sentence("GNGGA,223745.00,3806.6,N,12237.6,W,2,09,1.0,278.020,M,-31.442,M,7.6,0133"))
    d.feed(sentence("GNGSA,A,3,29,20,18,16,51,13,44,26,,,,,0.99,0.54,0.83,1"))
    f = d.fix
    assert (f.quality, f.sats, f.alt, f.fix_type, f.pdop, f.hdop, f.vdop) == (
        2,
        9,
        278.02,
        3,
        0.99,
        0.54,
        0.83,
    )
    d.feed(sentence("GPGGA,223746.00,,,,,0,03,,,,,,,") + sentence("GPGSA,A,1,,,,,,,,,,,,,,,"))
    assert (f.quality, f.sats, f.alt, f.fix_type, f.pdop, f.lat) == (0, 3, 278.02, 1, 0.99, None)
    # A VTG fills what its RMC lacks, after it (in place) or before it; never the next cycle.
    d.feed(rmc(sp=",") + sentence("GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A"))
    assert (f.speed, f.track) == (5.5 * KNOT, 54.7)
    d.feed(sentence("GPVTG,,T,,M,,N,036.0,K,A") + rmc("145244.000", sp=","))
    assert (f.speed, f.track) == (10.0, None)
    d.feed(rmc("145245.000", sp=",") + rmc("145246.000", sp=","))
    assert (f.speed, f.track) == (None, None)
    d.feed(rmc("145247.000", sp="2.0,") + sentence("GPVTG,054.7,034.4,005.5,010.2"))  # NMEA 1.5 layout
    assert (f.speed, f.track) == (2 * KNOT, 54.7) and sum(d.errors.values()) == 0


def test_mangled_input_never_raises():
    rnd = lcg(12345)
    d = NMEADecoder()
    for _ in range(300):
        data = bytearray(SAMPLE)
        for _ in range(next(rnd) % 8):  # change, drop or insert a few bytes
            i = (next(rnd) << 8 | next(rnd)) % len(data)
            data[i : i + next(rnd) % 2] = bytes((next(rnd),)) * (next(rnd) % 2)
        d.feed(data)
    assert d.sentences > 1000 and d.errors["checksum"] > 0


def test_memory_stays_bounded():
    d = NMEADecoder()
    d.feed(SAMPLE)
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(50):
        d.feed(SAMPLE)
    gc.collect()
    assert gc.mem_alloc() - before < 256


if __name__ == "__main__":
    for name in sorted(dir()):
        if name.startswith("test_"):
            globals()[name]()
            print("ok", name)
