# Which GNSS fixes the unit trusts. A fix is used only with enough satellites, a small
# enough HDOP, and a plausible distance from the last trusted fix (no jump a road
# vehicle cannot make). Without a trusted fix the last one is kept, with its age;
# coordinates are never invented. Rejections are counted by reason.
import math

EARTH_M = 6371000.0
RAD = math.pi / 180


def distance_m(lat1, lon1, lat2, lon2):
    """Equirectangular distance: exact enough for the metres between two fixes."""
    x = (lon2 - lon1) * RAD * math.cos((lat1 + lat2) * RAD / 2)
    y = (lat2 - lat1) * RAD
    return EARTH_M * math.sqrt(x * x + y * y)


# config key, attribute, default (one flat tuple: no
# dict or tuple per entry in the unit's heap)
# fmt: off
TUNABLES = (
    "gnss_min_sats", "min_sats", 4,  # a fix needs at least this many satellites
    "gnss_max_hdop", "max_hdop", 5.0,  # a fix needs at most this HDOP
    "gnss_max_speed", "max_speed", 70.0,  # m/s implied between two fixes: more is a jump
)
# fmt: on


class FixFilter:
    max_jumps = 10  # after this many jumps in a row the new place is trusted

    def __init__(self, cfg=None):
        self.configure(cfg)
        self.valid = False
        self.t = 0.0  # fix time, Unix seconds (with milliseconds)
        self.lat = self.lon = 0.0
        self.speed = self.track = self.sats = self.hdop = None
        self.rejected = {"sats": 0, "hdop": 0, "jump": 0, "stale": 0}
        self._jumps = 0

    def configure(self, cfg):
        for i in range(0, len(TUNABLES), 3):
            key, attr, default = TUNABLES[i : i + 3]
            setattr(self, attr, cfg.get(key, default) if cfg else default)

    def _reject(self, why):
        self.rejected[why] += 1
        return False

    def accept(self, fix):
        """Trust `fix` (an nmea.Fix) or not; a trusted one is copied here."""
        if fix.sats is not None and fix.sats < self.min_sats:
            return self._reject("sats")
        if fix.hdop is not None and fix.hdop > self.max_hdop:
            return self._reject("hdop")
        t = fix.time + fix.ms / 1000
        if self.valid:
            dt = t - self.t
            if dt <= 0:
                return self._reject("stale")
            if (
                distance_m(self.lat, self.lon, fix.lat, fix.lon) > self.max_speed * dt
                and self._jumps < self.max_jumps
            ):
                self._jumps += 1
                return self._reject("jump")
        self._jumps = 0
        self.valid = True
        self.t = t
        self.lat, self.lon = fix.lat, fix.lon
        self.speed, self.track = fix.speed, fix.track
        self.sats, self.hdop = fix.sats, fix.hdop
        return True
