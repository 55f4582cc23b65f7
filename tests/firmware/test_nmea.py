# Tests of firmware/lib/nmea.py under MicroPython. Standalone, from the repo root:
#     MICROPYPATH=firmware/lib .venv/bin/micropython -X heapsize=64K tests/firmware/test_nmea.py
# This module and the decoder must both compile from source in that 64 KB heap, and source
# costs far more than data there: most cases therefore live in tests/data/nmea/edge-cases.log
# (every talker, 77..102-char sentences, two-digit years, fractional seconds, S/W, status V,
# checksums, noise, truncation, missing fields), each followed by the fix it must give.
import gc
import json

gc.collect()  # this module's parse tree goes before the decoder's is built
from nmea import KNOT, NMEADecoder, civil_from_days, days_from_civil, iso  # noqa: E402

_here = globals().get("__file__", "")
CASES = _here[: _here.rfind("/") + 1] + "../data/nmea/edge-cases.log"


def load(sentences_only=True):
    # The lines of the capture, without its '#' comments and expectations by default.
    # Lines, not one buffer: after compiling, the small heap is too fragmented for 5 KB blocks.
    with open(CASES, "rb") as f:
        return [line for line in f if not sentences_only or line[:1] != b"#"]


def pieces(lines, size):
    # The stream of `lines` in chunks of `size` bytes.
    rest = b""
    for line in lines:
        rest += line
        while len(rest) >= size:
            yield rest[:size]
            rest = rest[size:]
    yield rest


def fed(data, max_len=0, keep=False):
    # A new decoder fed with `data`: .got is what feed() returned; .n counts the fixes it
    # reported, .sig sums them up (memory is short), .out keeps them if asked to.
    d = NMEADecoder(max_len)
    d.out = []
    d.n = d.sig = 0

    def on_fix(f):
        if keep:
            d.out.append((iso(f), f.lat, f.lon, f.speed, f.track))
        for v in (f.time, f.ms, f.lat, f.lon, f.speed, f.track):
            d.sig = (d.sig * 1000003 + (7 if v is None else int(v * 1e9))) & 0x3FFFFFFF
        d.n += 1

    d.on_fix = on_fix
    d.got = d.feed(data)
    return d


def sentence(body):
    x = 0
    for c in body:
        x ^= ord(c)
    return ("$%s*%02X\r\n" % (body, x)).encode()


def rmc(t="145243.000", st="A", latlon="3401.9764,N,11744.8274,W", sp="0.00,119.27", tail=",,,D"):
    return sentence("GPRMC,%s,%s,%s,%s,030610%s" % (t, st, latlon, sp, tail))


def test_edge_cases_capture():
    # Each '#>' line is the fix the sentence before it must give; '#=' the counters at the end.
    d = fed(b"", keep=True)
    for line in load(False):
        if line[:2] == b"#>":
            w = json.loads(line[2:])
            assert len(d.out) == 1, (line, d.out)
            got = d.out.pop()
            for k, b in enumerate((w["time"], w["lat"], w["lon"], w["speed"], w["track"])):
                assert got[k] == b or abs(got[k] - b) < 1e-9, (got, w)
        elif line[:2] == b"#=":
            seen = dict(d.errors, sentences=d.sentences, ignored=d.ignored, unchecked=d.unchecked)
            assert seen == json.loads(line[2:]), seen
        elif line[:1] != b"#":
            assert not d.out, (line, d.out)
            d.feed(line)
    assert not d.out


def test_same_fixes_at_every_chunking():
    lines = load()
    want = fed(b"")
    for line in lines:
        want.feed(line)
    want = (want.n, want.sig, want.errors)
    assert want[0] == 35
    for n, line in enumerate(lines):  # the stream cut at every byte offset (and at line ends)
        for cut in range(1, len(line)):
            d = fed(b"")
            for i, piece in enumerate(lines):
                if i == n:
                    d.feed(line[:cut])
                    piece = line[cut:]
                d.feed(piece)
            assert (d.n, d.sig, d.errors) == want, (line, cut)
    for size in (1, 2, 3, 7, 64):
        d = fed(b"")
        for piece in pieces(lines, size):
            d.feed(memoryview(piece))
        assert (d.n, d.sig, d.errors) == want, size


def test_standard_82_char_limit_when_strict():
    base = len(rmc())
    for n in range(base, 86):
        s = rmc(latlon="3401.9764" + "0" * (n - base) + ",N,11744.8274,W")
        d = fed(s, 82)
        assert len(s) == n and d.got == (n <= 82) and d.errors["overlong"] == (n > 82), n


def test_status_v_keeps_last_valid_fix():
    ticks = [1000]
    d = NMEADecoder(clock=lambda: ticks[0])
    assert d.fix_status == "" and d.feed(rmc()) == 1 and d.fix_status == "A"
    f = d.fix
    last = (f.time, f.lat, f.lon, f.speed, f.track)
    ticks[0] = 4500
    for s in (
        rmc("145300.000", "V", "1111.1111,N,02222.2222,E"),
        rmc("145301.000", "V", ",,,"),
        sentence("GPRMC,,V,,,,,,,,,,N"),
        rmc("145302.000", tail=",,,N"),  # status A, but mode N: no fix
    ):
        assert d.feed(s) == 0 and d.fix_status == "V"
    assert f.valid and (f.time, f.lat, f.lon, f.speed, f.track) == last
    assert d.last_valid_ticks == 1000 and sum(d.errors.values()) == 0
    assert d.feed(rmc("145303.000")) == 1 and d.fix_status == "A" and d.last_valid_ticks == 4500


def test_gga_gsa_vtg_fill_the_fix():
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


def test_epoch_from_the_date():
    assert fed(rmc()).fix.time == 1275576763 and days_from_civil(2000, 3, 1) == 11017
    for z in range(3652, 40000, 97):  # 1980 .. 2079
        assert days_from_civil(*civil_from_days(z)) == z


def test_mangled_input_never_raises():
    lines = load()
    seed = 12345
    d = NMEADecoder()
    for _ in range(20):
        for line in lines:
            buf = bytearray(line)
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            if seed % 3 == 0:  # change, drop or insert a byte in a third of the lines
                i = (seed >> 2) % len(buf)
                buf[i : i + (seed >> 9) % 2] = bytes((seed >> 16 & 255,)) * (seed >> 10 & 1)
            d.feed(buf)
    assert d.sentences > 400 and d.errors["checksum"] > 100


def test_memory_stays_bounded():
    lines = load()
    d = NMEADecoder()
    for line in lines:
        d.feed(line)
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(20):
        for line in lines:
            d.feed(line)
    gc.collect()
    assert gc.mem_alloc() - before < 256


if __name__ == "__main__":
    for name in sorted(dir()):
        if name.startswith("test_"):
            globals()[name]()
            print("ok", name)
