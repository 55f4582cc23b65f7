"""Local flat-earth coordinates around Palangka Raya: metres east/north of a centre."""

import math

CENTRE = (-2.2100, 113.9150)  # Bundaran Besar, Palangka Raya (approximate)
M_PER_DEG_LAT = 111_320.0


def to_latlon(x, y, centre=CENTRE):
    lat0, lon0 = centre
    return lat0 + y / M_PER_DEG_LAT, lon0 + x / (M_PER_DEG_LAT * math.cos(math.radians(lat0)))


def to_xy(lat, lon, centre=CENTRE):
    lat0, lon0 = centre
    return (lon - lon0) * M_PER_DEG_LAT * math.cos(math.radians(lat0)), (lat - lat0) * M_PER_DEG_LAT


def distance_m(a, b):
    """Great-circle distance between two (lat, lon) points, metres."""
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))
