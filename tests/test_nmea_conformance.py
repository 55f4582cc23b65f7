"""The firmware's NMEA decoder (firmware/lib/nmea.py) against references.

- gpsd: the shared conformance tool replays real receiver captures through
  firmware/tools/nmea_dump.py in the MicroPython unix port (64 KB heap) and compares every
  fix with gpsd's decoding of the same capture.
- pynmea2: sentences it renders and parses are decoded by the firmware module, both here
  (CPython, with Hypothesis) and in MicroPython through nmea_dump.
- tests/data/nmea/edge-cases.log: the hand-made cases the MicroPython tests use, checked
  here against pynmea2 so that their expectations do not come from the decoder itself.
"""

import datetime
import importlib.util
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pynmea2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.vunit import micropython_bin

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
CASES = REPO / "tests" / "data" / "nmea" / "edge-cases.log"
KNOT = 1852 / 3600


def _load_decoder():
    spec = importlib.util.spec_from_file_location("firmware_nmea", REPO / "firmware" / "lib" / "nmea.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nmea = _load_decoder()


def dump(data):
    """Fixes printed by nmea_dump in the MicroPython unix port for `data`, capped heap."""
    run = subprocess.run(
        [micropython_bin(), "-X", "heapsize=64K", "firmware/tools/nmea_dump.py"],
        input=data,
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    return [json.loads(line) for line in run.stdout.decode().splitlines()]


def expected_from_pynmea2(sentence):
    """The fix pynmea2 reads from an RMC, in nmea_dump's terms."""
    msg = pynmea2.parse(sentence, check="*" in sentence)
    when = datetime.datetime.combine(msg.datestamp, msg.timestamp).replace(microsecond=0)
    frac = msg.data[0][7:11]  # pynmea2 truncates float seconds; gpsd rounds half up to the ms
    when += datetime.timedelta(milliseconds=(int(frac.ljust(4, "0")) + 5) // 10 if frac else 0)
    return {
        "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (when.microsecond // 1000),
        "lat": msg.latitude,
        "lon": msg.longitude,
        "speed": None if msg.spd_over_grnd is None else msg.spd_over_grnd * KNOT,
        "track": msg.true_course,
    }


def same_fix(got, want):
    if got["time"] != want["time"]:
        return False
    for key in ("lat", "lon", "speed", "track"):
        a, b = got[key], want[key]
        if (a is None) != (b is None) or (a is not None and abs(a - b) > 1e-9):
            return False
    return True


# gpsd ------------------------------------------------------------------------------------


def test_gpsd_corpus_conformance():
    if not SHARED.is_dir():
        pytest.skip(f"no shared corpus at {SHARED} (the gpsd captures live outside this repository)")
    logs = sorted(str(p) for p in (SHARED / "corpus" / "nmea").glob("*.log"))
    assert logs
    cmd = f"{micropython_bin()} -X heapsize=64K firmware/tools/nmea_dump.py"
    run = subprocess.run(
        [sys.executable, str(SHARED / "tools" / "nmea_conformance.py"), "--cmd", cmd, *logs],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # The tool judges the total; every capture must reach 99.5 % on its own too.
    rows = re.findall(r"^(\S+\.log)[ \t]+(\d+)/(\d+)[ \t]*(.*)$", run.stdout, re.M)
    assert len(rows) == len(logs), run.stdout
    for name, good, total, note in rows:
        assert not note, (name, note)  # "(decoder exited N)"
        assert int(good) >= 0.995 * int(total), run.stdout


# the hand-made edge cases ----------------------------------------------------------------


def _edge_cases():
    """(sentence line, expected fix) for each '#>' line of edge-cases.log."""
    lines = CASES.read_bytes().decode("latin-1").splitlines()
    return [(lines[i - 1], json.loads(line[2:])) for i, line in enumerate(lines) if line.startswith("#>")]


def test_edge_case_expectations_agree_with_pynmea2():
    cases = _edge_cases()
    assert len(cases) > 30
    for sentence, want in cases:
        sentence = sentence[sentence.rfind("$") :].strip()  # the one after a cut
        got = expected_from_pynmea2(sentence)
        yy = int(sentence.split(",")[9][4:6])
        if 69 <= yy < 80:  # pynmea2 pivots two-digit years at 69 (strptime), gpsd and we at 80
            got["time"] = want["time"][:2] + got["time"][2:]
        assert same_fix(got, want), (sentence, got, want)


def test_edge_cases_through_nmea_dump_in_micropython():
    got = dump(CASES.read_bytes())
    want = [fix for _, fix in _edge_cases()]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert same_fix(g, w), (g, w)


# pynmea2 ---------------------------------------------------------------------------------


def rmc_fields(pick):
    """Fields of an RMC with a valid fix, numbers from pick(lo, hi) (random.randint or
    Hypothesis); the date stays where pynmea2's year pivot agrees with gpsd's."""
    when = datetime.datetime(1980, 1, 1) + datetime.timedelta(seconds=pick(0, 89 * 365 * 86400))
    decimals = pick(0, 3)
    t = when.strftime("%H%M%S") + ("." + "%0*d" % (decimals, pick(0, 10**decimals - 1)) if decimals else "")
    lat = "%02d%02d.%0*d" % (pick(0, 89), pick(0, 59), pick(1, 8), pick(0, 9999))
    lon = "%03d%02d.%0*d" % (pick(0, 179), pick(0, 59), pick(1, 8), pick(0, 9999))
    speed = "" if pick(0, 9) == 0 else "%d.%03d" % (pick(0, 200), pick(0, 999))
    track = "" if pick(0, 4) == 0 else "%d.%02d" % (pick(0, 359), pick(0, 99))
    ns, ew, mode = "NS"[pick(0, 1)], "EW"[pick(0, 1)], "ADE"[pick(0, 2)]
    return (t, "A", lat, ns, lon, ew, speed, track, when.strftime("%d%m%y"), "", "", mode)


def render(fields, talker="GP"):
    return str(pynmea2.RMC(talker, "RMC", fields))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_rmc_decodes_like_pynmea2(data):
    fields = rmc_fields(lambda lo, hi: data.draw(st.integers(lo, hi)))
    talker = data.draw(st.sampled_from(["GP", "GN", "GL", "GA", "GB", "BD", "GQ", "GI"]))
    sentence = render(fields, talker)
    stream = (sentence + "\r\n").encode()
    cut = data.draw(st.integers(0, len(stream)))
    d = nmea.NMEADecoder()
    got = []
    d.on_fix = lambda f: got.append(
        {"time": nmea.iso(f), "lat": f.lat, "lon": f.lon, "speed": f.speed, "track": f.track}
    )
    assert d.feed(stream[:cut]) + d.feed(stream[cut:]) == 1
    assert len(got) == 1 and same_fix(got[0], expected_from_pynmea2(sentence)), (sentence, got)
    assert d.fix.mode == fields[11] and sum(d.errors.values()) == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(a, b):
    d = nmea.NMEADecoder()
    d.feed(a)
    d.feed(b"$" + a + b"*\r\n" + b)
    assert all(n >= 0 for n in d.errors.values())


def test_pynmea2_sentences_through_nmea_dump_in_micropython():
    rng = random.Random(2010)
    sentences = [render(rmc_fields(rng.randint), talker) for talker in ["GP", "GN", "BD", "GA"] * 50]
    got = dump("".join(s + "\r\n" for s in sentences).encode())
    assert len(got) == len(sentences)
    for g, s in zip(got, sentences, strict=True):
        assert same_fix(g, expected_from_pynmea2(s)), (s, g)
