# Fix quality: satellites, HDOP, impossible jumps; the last trusted fix is kept.
from fixfilter import FixFilter, distance_m


class Fix:
    def __init__(self, t, lat=-2.21, lon=113.92, sats=9, hdop=0.9, ms=0):
        self.time, self.ms, self.lat, self.lon = t, ms, lat, lon
        self.sats, self.hdop, self.speed, self.track = sats, hdop, 10.0, 90.0


T = 1795862700


def test_distance_is_right_for_a_few_hundred_metres():
    d = distance_m(-2.21, 113.92, -2.21, 113.925)
    assert 550 < d < 560


def test_too_few_satellites_or_a_large_hdop_is_not_trusted():
    f = FixFilter()
    assert not f.accept(Fix(T, sats=3)) and not f.valid
    assert not f.accept(Fix(T, hdop=7.5))
    assert f.accept(Fix(T + 1)) and f.valid
    assert f.rejected["sats"] == 1 and f.rejected["hdop"] == 1


def test_an_impossible_jump_is_rejected_and_the_last_fix_kept():
    f = FixFilter()
    f.accept(Fix(T))
    assert not f.accept(Fix(T + 1, lat=-2.10))  # 12 km in a second
    assert f.lat == -2.21 and f.rejected["jump"] == 1
    assert f.accept(Fix(T + 2, lat=-2.2099))  # 11 m in two seconds: fine


def test_after_many_jumps_in_a_row_the_new_place_is_trusted():
    f = FixFilter()
    f.accept(Fix(T, lat=0.0))  # a wrong first fix
    for i in range(1, f.max_jumps + 1):
        assert not f.accept(Fix(T + i))
    assert f.accept(Fix(T + f.max_jumps + 1)) and f.lat == -2.21


def test_a_repeated_or_older_fix_is_stale():
    f = FixFilter()
    f.accept(Fix(T, ms=500))
    assert not f.accept(Fix(T, ms=500)) and not f.accept(Fix(T - 5))
    assert f.rejected["stale"] == 2


def test_limits_from_config():
    f = FixFilter({"gnss_min_sats": 6, "gnss_max_hdop": 2.0})
    assert not f.accept(Fix(T, sats=5)) and not f.accept(Fix(T, hdop=2.5)) and f.accept(Fix(T))
