"""Turn true positions into the bytes a GNSS receiver sends: RMC, GGA, GSA and VTG
sentences (rendered and checksummed by pynmea2), with optional receiver noise."""

import random
import time

import pynmea2

KNOTS_PER_MS = 1 / 0.514444


def _latlon_fields(lat, lon):
    la, lo = abs(lat), abs(lon)
    lat_s = "%02d%09.6f" % (int(la), (la - int(la)) * 60)
    lon_s = "%03d%09.6f" % (int(lo), (lo - int(lo)) * 60)
    return lat_s, "N" if lat >= 0 else "S", lon_s, "E" if lon >= 0 else "W"


class Receiver:
    """A simulated multi-constellation receiver (talker GN), 1 Hz."""

    def __init__(self, seed=None, noise_m=0.0, sats=9, hdop=0.9):
        self.rng = random.Random(seed)
        self.noise_m = noise_m
        self.sats = sats
        self.hdop = hdop
        self.fix = True

    def sentences(self, sample):
        tm = time.gmtime(int(sample.t))
        hhmmss = "%02d%02d%02d.%02d" % (tm.tm_hour, tm.tm_min, tm.tm_sec, int(sample.t % 1 * 100))
        ddmmyy = "%02d%02d%02d" % (tm.tm_mday, tm.tm_mon, tm.tm_year % 100)
        jitter = self.noise_m / 111320.0
        lat = sample.lat + self.rng.gauss(0, jitter) if jitter else sample.lat
        lon = sample.lon + self.rng.gauss(0, jitter) if jitter else sample.lon
        la, ns, lo, ew = _latlon_fields(lat, lon)
        knots = "%.2f" % (sample.speed * KNOTS_PER_MS)
        track = "%.1f" % sample.heading
        status, quality, mode = ("A", "1", "A") if self.fix else ("V", "0", "N")
        if not self.fix:
            la = ns = lo = ew = knots = track = ""
        yield pynmea2.RMC(
            "GN", "RMC", (hhmmss, status, la, ns, lo, ew, knots, track, ddmmyy, "", "", mode, "V")
        )
        yield pynmea2.GGA(
            "GN",
            "GGA",
            (
                hhmmss,
                la,
                ns,
                lo,
                ew,
                quality,
                "%02d" % self.sats,
                "%.1f" % self.hdop,
                "45.0",
                "M",
                "38.0",
                "M",
                "",
                "",
            ),
        )
        yield pynmea2.GSA(
            "GN",
            "GSA",
            (
                "A",
                "3" if self.fix else "1",
                "05",
                "12",
                "14",
                "21",
                "25",
                "29",
                "31",
                "",
                "",
                "",
                "",
                "",
                "1.6",
                "%.1f" % self.hdop,
                "1.3",
                "1",
            ),
        )
        yield pynmea2.VTG(
            "GN", "VTG", (track, "T", "", "M", knots, "N", "%.2f" % (sample.speed * 3.6), "K", mode)
        )

    def encode(self, sample):
        return b"".join(str(s).encode() + b"\r\n" for s in self.sentences(sample))
