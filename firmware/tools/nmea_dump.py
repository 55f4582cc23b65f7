"""Print one JSON object per valid RMC fix found in NMEA bytes on stdin.

usage (from the repo root):
    .venv/bin/micropython firmware/tools/nmea_dump.py < CAPTURE
    python3 firmware/tools/nmea_dump.py < CAPTURE

Output, one line per fix (speed in m/s, track in degrees true or null):
    {"time": "2010-06-03T14:52:43.000Z", "lat": 34.03294, "lon": -117.747123, "speed": 0.0, "track": 119.27}
At the end a summary goes to stderr: sentences decoded, ignored, errors by kind.
"""

import sys


def _lib_dir():
    """firmware/lib next to this script's folder; 'firmware/lib' if unknown."""
    script = sys.argv[0] if sys.argv and sys.argv[0] else globals().get("__file__", "")
    if not script:
        return "firmware/lib"
    cut = script.rfind("/")
    return (script[:cut] if cut >= 0 else ".") + "/../lib"


sys.path.insert(0, _lib_dir())
sys.path.append("firmware/lib")

from nmea import NMEADecoder, iso  # noqa: E402


def _num(v):
    return "null" if v is None else repr(v)


def _print_fix(fix):
    sys.stdout.write(
        '{"time": "%s", "lat": %s, "lon": %s, "speed": %s, "track": %s}\n'
        % (iso(fix), repr(fix.lat), repr(fix.lon), _num(fix.speed), _num(fix.track))
    )


def main():
    d = NMEADecoder()
    d.on_fix = _print_fix
    stdin = sys.stdin.buffer
    while True:
        chunk = stdin.read(512)
        if not chunk:
            break
        d.feed(chunk)
    sys.stderr.write(
        "sentences %d ignored %d unchecked %d errors %s\n"
        % (
            d.sentences,
            d.ignored,
            d.unchecked,
            " ".join("%s=%d" % (k, d.errors[k]) for k in sorted(d.errors)),
        )
    )


main()
